"""`kaogen demo`: the offline demo: a picture painted by the shipped agents, exported to every format."""

from __future__ import annotations

import click

from kaogen.cli.common import common_options, force_option, refuse_overwrite


@click.command()
@common_options
@click.option("-o", "--out", default="kaogen-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder to write the demo into.")
@click.option("--image", type=click.Path(dir_okay=False), default=None,
              help="Your own picture [default: a face drawn procedurally, no download].")
@click.option("--size", type=int, default=256, show_default=True, help="Longer side of the outputs in pixels.")
@click.option("--refine", type=click.IntRange(0, 100000), default=100, show_default=True,
              help="Refinement steps on the agent's strokes (kaogen paint --refine; half a minute on a CPU; 0: none).")
@click.option("--ist/--no-ist", default=True, show_default=True,
              help="Also paint with intrinsic style transfer (about a minute on a CPU).")
@click.option("--ist-steps", type=click.IntRange(1, 100000), default=150, show_default=True,
              help="Optimisation steps of the style transfer.")
@click.option("--brush", default="classic/kabura", show_default=True,
              help="Shipped neural painter for the style transfer (classic/kabura: ink pen, classic/pencil).")
@force_option
def demo(out, image, size, refine, ist, ist_steps, brush, force, device, seed):
    """Paint a picture with the shipped Learning to Paint agent (and neural painter) and export it everywhere.

    \b
    kaogen-demo/target.png        the picture
    kaogen-demo/l2p.gif .mp4 .svg .png .json, l2p-stages.png    200 Bezier strokes, Learning to Paint
    kaogen-demo/ist.gif .png .json                               brush strokes, intrinsic style transfer
    kaogen-demo/gan-samples.png                                  16 faces of the shipped StyleGAN2 generator
    """
    from pathlib import Path

    import torch

    from kaogen.checkpoint import checkpoints_dir
    from kaogen.device import resolve_device
    from kaogen.gan.sample import SHIPPED, GeneratorBundle
    from kaogen.images import image_grid, load_rgb, save_image
    from kaogen.l2p import Agent, PaintOptions, paint
    from kaogen.render.demo import demo_picture
    from kaogen.render.export import ExportOptions, export

    refuse_overwrite(out, force)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    picture = load_rgb(image) if image else demo_picture(256)
    target = save_image(folder / "target.png", picture)
    opts = lambda **kw: ExportOptions(size=size, device=dev, side_by_side=str(target), **kw)  # noqa: E731
    p = paint(Agent.load(device=dev), [picture], PaintOptions(refine=refine), sources=[str(image or "kaogen demo picture")])[0]
    p.save(folder / "l2p.json")
    for name in ("l2p.gif", "l2p.mp4", "l2p.png"):
        export(p, folder / name, opts())
    export(p, folder / "l2p.svg", ExportOptions(size=size))
    export(p, folder / "l2p-stages.png", ExportOptions(size=size, contact_sheet=True, device=dev))
    wrote = "l2p.gif .mp4 .svg .png .json, l2p-stages.png"
    if ist and any(checkpoints_dir().glob("painter-*.pt")):
        from kaogen.ist.painter import shipped_painter
        from kaogen.ist.transfer import ISTOptions, transfer

        q, _ = transfer(shipped_painter(brush, dev), picture, ISTOptions(seed=seed, steps=ist_steps), progress=True,
                        source=str(image or "kaogen demo picture"))
        q.save(folder / "ist.json")
        for name in ("ist.gif", "ist.png"):
            export(q, folder / name, opts())
        wrote += ", ist.gif .png .json"
    if (checkpoints_dir() / SHIPPED).is_file():
        faces = GeneratorBundle.load(device=dev).generate(list(range(16)), truncation=0.7)
        save_image(folder / "gan-samples.png", image_grid(faces.cpu(), 4))
        wrote += ", gan-samples.png"
    click.echo(f"wrote {folder}/: target.png, {wrote} (re-render: kaogen render {folder}/l2p.json -o big.png --size 2048)")
