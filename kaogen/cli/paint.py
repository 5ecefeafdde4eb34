"""`kaogen paint --method l2p|ist IMAGE|FOLDER -o OUT`: paint pictures and export the painting sequence."""

from __future__ import annotations

import click

from kaogen.cli.common import common_options, force_option, refuse_overwrite


@click.command()
@common_options
@click.argument("image", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(),
              help="Output (.gif .mp4 .webp .png .jpg .svg, or a folder of frames); for a folder IMAGE, a folder.")
@click.option("--method", type=click.Choice(["l2p", "ist"]), default="l2p", show_default=True,
              help="l2p: the Learning to Paint agent; ist: intrinsic style transfer with a neural painter.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Agent (l2p) or neural painter (ist) checkpoint [default: the shipped one].")
@click.option("--steps", type=click.IntRange(1, 100000), default=None,
              help="l2p: actions per pass, 5 strokes each [default: the agent's, 40]; ist: optimisation steps [150].")
@click.option("--brush", default="classic/kabura", show_default=True,
              help="ist: the MyPaint brush whose shipped painter is used.")
@click.option("--strokes", type=click.IntRange(1, 100000), default=294, show_default=True,
              help="ist: at least this many strokes (every block of the canvas gets the same number).")
@click.option("--loss", type=click.Choice(["auto", "lpips", "offline"]), default="auto", show_default=True,
              help="ist: content loss (auto: LPIPS when its weights are on disk, else the offline loss).")
@click.option("--optimisation-video", type=click.Path(dir_okay=False), default=None,
              help="ist: also write the canvas every few optimisation steps as a .gif/.mp4.")
@click.option("--divide", type=click.IntRange(1, 16), default=1, show_default=True,
              help="After the whole image, paint a K x K grid of patches for detail.")
@click.option("--plan", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="l2p: gradient steps on each action's strokes before they are laid (cheap; never worse).")
@click.option("--refine", type=click.IntRange(0, 100000), default=0, show_default=True,
              help="Gradient steps on all strokes through the differentiable rasteriser.")
@click.option("--keep-layout", is_flag=True, default=False,
              help="l2p --refine: only adjust strokes; do not move the hidden ones to where the painting is wrong.")
@click.option("--size", type=int, default=512, show_default=True, help="Longer side of the output in pixels.")
@click.option("--save-strokes", type=click.Path(), default=None,
              help="Write the painting (JSON) here; for a folder IMAGE, a folder of JSON files.")
@click.option("--side-by-side", is_flag=True, default=False, help="Show the input left of every frame.")
@click.option("--fps", type=float, default=12.0, show_default=True)
@click.option("--hold", type=float, default=2.0, show_default=True, help="Seconds the finished painting is held.")
@click.option("--strokes-per-frame", type=int, default=None, help="[default: about 60 frames].")
@click.option("--format", "fmt", type=click.Choice(["gif", "mp4", "webp", "png", "svg"]), default="gif",
              show_default=True, help="Output type per image when IMAGE is a folder.")
@click.option("--batch", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Images painted together when IMAGE is a folder.")
@force_option
def paint(image, out, method, checkpoint, steps, brush, strokes, loss, optimisation_video, divide, plan, refine, keep_layout,
          size, save_strokes, side_by_side, fps, hold, strokes_per_frame, fmt, batch, force, device, seed):
    """Paint IMAGE (any picture; or a folder of them) stroke by stroke and export the painting sequence."""
    from pathlib import Path

    import torch

    from kaogen.device import resolve_device
    from kaogen.errors import KaogenError
    from kaogen.images import list_images, load_rgb
    from kaogen.l2p import Agent, PaintOptions
    from kaogen.l2p import paint as paint_images
    from kaogen.render.export import ExportOptions, export

    src, dst = Path(image), Path(out)
    if not src.exists():
        raise KaogenError(f"{src} does not exist")
    if src.is_dir():
        inputs = list_images(src)
        if not inputs:
            raise KaogenError(f"no images in {src}")
        outs = [dst / f"{p.stem}.{fmt}" for p in inputs]
        jsons = [Path(save_strokes) / f"{p.stem}.json" for p in inputs] if save_strokes else [None] * len(inputs)
    else:
        inputs, outs, jsons = [src], [dst], [Path(save_strokes) if save_strokes else None]
    for o in outs + [j for j in jsons if j]:
        refuse_overwrite(o, force)
    images = [load_rgb(p) for p in inputs]            # every input decodes before anything is written
    torch.manual_seed(seed)
    dev = resolve_device(device)
    export_opts = lambda path_in: ExportOptions(  # noqa: E731
        size=size, fps=fps, hold=hold, strokes_per_frame=strokes_per_frame,
        side_by_side=str(path_in) if side_by_side else None, device=dev)

    def finish(p, path_in, o, j):
        if j:
            p.save(j)
        export(p, o, export_opts(path_in))
        click.echo(f"wrote {o} ({len(p)} strokes)")

    if method == "ist":
        from kaogen.ist.painter import NeuralPainter, shipped_painter
        from kaogen.ist.transfer import ISTOptions, transfer

        if divide != 1 or refine or plan:
            raise KaogenError("--divide, --plan and --refine belong to --method l2p")
        if optimisation_video and len(inputs) > 1:
            raise KaogenError("--optimisation-video takes one IMAGE, not a folder")
        painter = NeuralPainter.load(checkpoint, dev) if checkpoint else shipped_painter(brush, dev)
        for folder in {o.parent for o in outs} | {j.parent for j in jsons if j}:
            folder.mkdir(parents=True, exist_ok=True)
        for img, path_in, o, j in zip(images, inputs, outs, jsons):
            opts = ISTOptions(strokes=strokes, steps=steps or 150, loss=loss, seed=seed,
                              video_every=5 if optimisation_video else 0)
            p, frames = transfer(painter, img, opts, progress=True, source=str(path_in))
            finish(p, path_in, o, j)
            if optimisation_video:
                from kaogen.render.export import write_video

                write_video(frames, optimisation_video, fps, hold)
                click.echo(f"wrote {optimisation_video} ({len(frames)} frames of the optimisation)")
        return
    agent = Agent.load(checkpoint, device=dev)
    opts = PaintOptions(steps=steps, divide=divide, plan=plan, refine=refine, refine_relocate=not keep_layout)
    for folder in {o.parent for o in outs} | {j.parent for j in jsons if j}:
        folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(images), batch):
        chunk = slice(start, start + batch)
        paintings = paint_images(agent, images[chunk], opts, sources=[str(p) for p in inputs[chunk]])
        for p, path_in, o, j in zip(paintings, inputs[chunk], outs[chunk], jsons[chunk]):
            finish(p, path_in, o, j)
