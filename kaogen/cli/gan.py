"""`kaogen train-gan`, `kaogen sample`, `kaogen interpolate`, `kaogen style-mix`: StyleGAN2."""

from __future__ import annotations

import click

from kaogen.cli.common import device_option, force_option, refuse_overwrite, seed_option


@click.command("train-gan")
@click.option("--data", type=click.Path(file_okay=False), default=None, help="KaoKore root or image folder.")
@click.option("--outdir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="TOML GANConfig (configs/gan/).")
@click.option("--resume", type=click.Path(file_okay=False), default=None, help="Run folder to continue exactly.")
@click.option("--kimg", type=float, default=None, help="Train until this many thousand real images in total.")
@click.option("--cond", type=click.Choice(["none", "gender", "status"]), default=None,
              help="Class conditioning on KaoKore labels [default: the config's, none].")
@click.option("--split", default="all", show_default=True, type=click.Choice(["train", "dev", "test", "all"]))
@click.option("--amp/--no-amp", default=None,
              help="Mixed precision: bfloat16 autocast on any device, the CPU too [default: the config's, on].")
@click.option("--progress/--no-progress", default=True)
@device_option
@seed_option
def train_gan(data, outdir, config_path, resume, kimg, cond, split, amp, progress, device, seed):
    """Train StyleGAN2 with adaptive augmentation (resumable; several GPUs with torchrun)."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    from kaogen.config import from_dict, load_config
    from kaogen.device import resolve_device
    from kaogen.errors import KaogenError
    from kaogen.gan.config import GANConfig
    from kaogen.gan.data import CLASS_NAMES, RealSampler, load_images
    from kaogen.distributed import dist_info, setup_distributed, teardown_distributed
    from kaogen.gan.train import GANTrainer
    from kaogen.runs import next_run_dir, record_run

    setup_distributed(device)
    rank, world = dist_info()
    if resume:
        run = Path(resume)
        if not (run / "config.json").is_file() or not any(run.glob("snapshot-*.pt")):
            raise KaogenError(f"{run} is not a train-gan run folder with a snapshot")
        saved = json.loads((run / "config.json").read_text())
        cfg = from_dict(GANConfig, {**saved["config"], **({"kimg": kimg} if kimg else {}),
                                    **({"amp": amp} if amp is not None else {})})
        data, split, seed = data or saved["data"], saved["split"], saved["seed"]   # --data: the data moved
    else:
        if not data:
            raise KaogenError("give --data ROOT_OR_FOLDER (or --resume RUN)")
        over = {k: v for k, v in (("kimg", kimg), ("cond", cond), ("amp", amp)) if v is not None}
        cfg = load_config(GANConfig, config_path, **over) if config_path else from_dict(GANConfig, over)
        run = next_run_dir(outdir, "gan") if rank == 0 else None
        if world > 1:
            import torch

            holder = [str(run) if run else None]
            torch.distributed.broadcast_object_list(holder, 0)
            run = Path(holder[0])
    if cfg.cond != "none":
        cfg.net.num_classes = len(CLASS_NAMES[cfg.cond])
    images, labels = load_images(data, cfg.net.resolution, cfg.cond, split)
    dev = resolve_device(device)
    if world > 1 and dev.type == "cuda":
        import torch

        dev = torch.device("cuda", torch.cuda.current_device())   # each rank its own GPU (LOCAL_RANK)
    trainer = GANTrainer(cfg, RealSampler(images, labels, cfg.net.num_classes, cfg.xflip), run, dev, seed)
    if resume:
        trainer.resume()
        click.echo(f"resuming {run} at {trainer.nimg / 1000:.2f} kimg (augment p {trainer.augment.p:.3f})")
    if rank == 0:
        record_run(run, {"config": asdict(cfg), "data": str(Path(data).resolve()), "split": split, "seed": seed,
                         "world": world})
    trainer.train(progress)
    teardown_distributed()
    if rank == 0:
        click.echo(f"done: {run}/generator.pt ({trainer.nimg / 1000:.2f} kimg)")


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="[default: the shipped generator]")
@click.option("--seeds", default="0-15", show_default=True, help="e.g. 0-63 or 1,5,9")
@click.option("--trunc", type=float, default=1.0, show_default=True, help="Truncation psi (1: none).")
@click.option("--class", "label", default=None, help="status=warrior, gender=female, ... (conditional generators)")
@click.option("-o", "--out", required=True, type=click.Path(), help="grid.png (one grid) or a folder (one PNG per seed).")
@click.option("--columns", type=int, default=8, show_default=True)
@force_option
@device_option
def sample(checkpoint, seeds, trunc, label, out, columns, force, device):
    """Generate faces from seeds (a seed gives the same image whatever the batch)."""
    from pathlib import Path

    from kaogen.device import resolve_device
    from kaogen.gan.sample import GeneratorBundle, parse_seeds
    from kaogen.images import image_grid, save_image

    refuse_overwrite(out, force)
    g = GeneratorBundle.load(checkpoint, resolve_device(device))
    seed_list = parse_seeds(seeds)
    imgs = g.generate(seed_list, trunc, _class(label, g))
    out = Path(out)
    if out.suffix:
        save_image(out, image_grid(imgs, columns))
    else:
        out.mkdir(parents=True, exist_ok=True)
        for s, im in zip(seed_list, imgs):
            save_image(out / f"seed{s:05d}.png", im)
    click.echo(f"wrote {out} ({len(imgs)} images)")


def _class(label, g):
    from kaogen.errors import KaogenError

    if label is None:
        return None
    key, _, value = label.partition("=")
    if not value or key != g.cond:
        raise KaogenError(f"--class must be {g.cond}=NAME for this generator" if g.cond != "none"
                          else "this generator is unconditional: drop --class")
    return value


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--seeds", default="1,5,9", show_default=True, help="Key seeds; the walk loops back to the first.")
@click.option("--frames", type=click.IntRange(2, 100000), default=120, show_default=True)
@click.option("--trunc", type=float, default=0.7, show_default=True)
@click.option("--class", "label", default=None)
@click.option("--fps", type=float, default=24.0, show_default=True)
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help=".gif, .mp4 or .webp")
@force_option
@device_option
def interpolate(checkpoint, seeds, frames, trunc, label, fps, out, force, device):
    """A looping latent walk through seeds (spherical in z... linear in W, eased)."""
    import torch

    from kaogen.device import resolve_device
    from kaogen.gan.sample import GeneratorBundle, parse_seeds
    from kaogen.render.export import write_video

    refuse_overwrite(out, force)
    g = GeneratorBundle.load(checkpoint, resolve_device(device))
    keys = g.ws(parse_seeds(seeds), trunc, _class(label, g))                         # (K, num_ws, w_dim)
    K = len(keys)
    t = torch.arange(frames) / frames * K
    i0 = t.floor().long() % K
    f = (t - t.floor())
    f = (f * f * (3 - 2 * f))[:, None, None].to(keys)                                  # ease in and out
    ws = keys[i0] * (1 - f) + keys[(i0 + 1) % K] * f
    imgs = g.synthesize(ws)
    write_video(list(imgs), out, fps, hold=0)
    click.echo(f"wrote {out} ({frames} frames through seeds {seeds}, looping)")


@click.command("style-mix")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--rows", default="1-4", show_default=True, help="Seeds giving the coarse / middle / fine styles.")
@click.option("--cols", default="10-14", show_default=True, help="Seeds whose styles are mixed in.")
@click.option("--trunc", type=float, default=0.7, show_default=True)
@click.option("--class", "label", default=None)
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False))
@force_option
@device_option
def style_mix(checkpoint, rows, cols, trunc, label, out, force, device):
    """A grid: row seeds keep their styles except coarse (4-8 px), middle (16-32 px) or fine (64 px+)
    layers, taken from the column seeds; top row and left column show the sources."""
    import math

    import torch

    from kaogen.device import resolve_device
    from kaogen.gan.sample import GeneratorBundle, parse_seeds
    from kaogen.images import save_image

    refuse_overwrite(out, force)
    g = GeneratorBundle.load(checkpoint, resolve_device(device))
    r, c = parse_seeds(rows), parse_seeds(cols)
    cls = _class(label, g)
    wr, wc = g.ws(r, trunc, cls), g.ws(c, trunc, cls)
    n = wr.shape[1]
    # w index of the layers at resolution 2^k: 2k-3 .. 2k-2 (4 px: 0; toRGB shares the next)
    idx = lambda lo, hi: [i for i in range(n) if lo <= max(2, (i + 3) // 2) <= hi]  # noqa: E731
    bands = {"coarse": idx(2, 3), "middle": idx(4, 5), "fine": idx(6, int(math.log2(g.G.cfg.resolution)))}
    blank = torch.ones(3, g.G.cfg.resolution, g.G.cfg.resolution)
    top = [blank] + list(g.synthesize(wc))
    grid = [torch.cat(top, 2)]
    src = g.synthesize(wr)
    for band in ("coarse", "middle", "fine"):
        for i in range(len(r)):
            mixed = wr[i:i + 1].repeat(len(c), 1, 1)
            mixed[:, bands[band]] = wc[:, bands[band]]
            grid.append(torch.cat([src[i]] + list(g.synthesize(mixed)), 2))
    save_image(out, torch.cat(grid, 1))
    click.echo(f"wrote {out}: rows {rows} x cols {cols}, coarse / middle / fine bands")


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder: latent.pt, result.png (target | result), optimisation.mp4")
@click.option("--space", type=click.Choice(["w", "w+"]), default="w", show_default=True)
@click.option("--steps", type=click.IntRange(1, 100000), default=300, show_default=True)
@click.option("--loss", type=click.Choice(["auto", "lpips", "offline"]), default="auto", show_default=True)
@click.option("--class", "label", default=None)
@force_option
@device_option
@seed_option
def project(image, checkpoint, out, space, steps, loss, label, force, device, seed):
    """Invert IMAGE into the generator's W or W+ space; write the latent, the result and a video."""
    from pathlib import Path

    import torch

    from kaogen.atomic import atomic_path
    from kaogen.device import resolve_device
    from kaogen.gan.project import project as run_project
    from kaogen.gan.sample import GeneratorBundle
    from kaogen.images import load_rgb, save_image
    from kaogen.render.export import write_video

    refuse_overwrite(out, force)
    img = load_rgb(image)
    g = GeneratorBundle.load(checkpoint, resolve_device(device))
    ws, result, frames, loss_name = run_project(g, img, steps, space,
                                                loss, _class(label, g), video_every=max(1, steps // 60),
                                                progress=True, seed=seed)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "latent.pt") as tmp:
        torch.save({"ws": ws, "space": space, "checkpoint": g.source, "loss": loss_name}, tmp)
    R = result.shape[1]
    target = torch.nn.functional.interpolate(img[None], size=(R, R), mode="bilinear", antialias=True)[0].clamp(0, 1)
    save_image(folder / "result.png", torch.cat([target, result], 2))
    write_video(frames, folder / "optimisation.mp4", fps=12, hold=1)
    click.echo(f"wrote {folder}/latent.pt, result.png, optimisation.mp4 ({loss_name} loss, {space})")


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--data", required=True, type=click.Path(file_okay=False), help="KaoKore root or image folder (the reals).")
@click.option("--num", type=click.IntRange(10, 1_000_000), default=10000, show_default=True, help="Generated images.")
@click.option("--inception", type=click.Path(dir_okay=False), default=None,
              help="pt_inception-2015-12-05-6726825d.pth [default: $TORCH_HOME/hub/checkpoints].")
@click.option("--trunc", type=float, default=1.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, default=False)
@device_option
def metrics(checkpoint, data, num, inception, trunc, as_json, device):
    """FID, KID, precision and recall of a generator against a data set (standard Inception features)."""
    import json

    from kaogen.device import resolve_device
    from kaogen.gan.data import load_images
    from kaogen.gan.metrics import InceptionFeatures, features, fid, kid, precision_recall
    from kaogen.gan.sample import GeneratorBundle

    dev = resolve_device(device)
    ext = InceptionFeatures(inception).to(dev)
    g = GeneratorBundle.load(checkpoint, dev)
    reals, _ = load_images(data, g.G.cfg.resolution)
    fr = features(lambda x: ext(x.to(dev)), [reals[i:i + 64].float() / 255 for i in range(0, len(reals), 64)])
    names = g.class_names
    batches = []
    for s in range(0, num, 64):
        seeds = list(range(s, min(num, s + 64)))
        label = names[s // 64 % len(names)] if names else None
        batches.append(g.generate(seeds, trunc, label))
    ff = features(lambda x: ext(x.to(dev)), batches)
    p, r = precision_recall(fr[:10000], ff[:10000])
    res = {"fid": fid(fr, ff), "kid": kid(fr, ff), "precision": p, "recall": r, "reals": len(fr), "fakes": len(ff)}
    click.echo(json.dumps(res) if as_json else "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()))
