"""`kaogen demo`: the offline demo of the renderer and its exports."""

from __future__ import annotations

import click

from kaogen.cli.common import common_options, force_option, refuse_overwrite


@click.command()
@common_options
@click.option("-o", "--out", default="kaogen-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder to write the demo into (painting.json, .gif, .mp4, .svg, contact sheet).")
@click.option("--strokes", type=click.IntRange(1, 100000), default=200, show_default=True, help="Strokes in the painting.")
@click.option("--size", type=int, default=256, show_default=True, help="Longer side of the outputs in pixels.")
@force_option
def demo(out, strokes, size, force, device, seed):
    """Paint a procedural painting and export it to every format (offline, a few seconds)."""
    from pathlib import Path

    from kaogen.device import resolve_device
    from kaogen.render.demo import demo_painting
    from kaogen.render.export import ExportOptions, export

    refuse_overwrite(out, force)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    p = demo_painting(strokes, seed)
    p.save(folder / "painting.json")
    dev = resolve_device(device)
    for name in ("painting.gif", "painting.mp4", "painting.svg", "painting.png"):
        export(p, folder / name, ExportOptions(size=size, device=dev))
    export(p, folder / "stages.png", ExportOptions(size=size, contact_sheet=True, device=dev))
    click.echo(f"wrote {folder}/: painting.json .gif .mp4 .svg .png and stages.png "
               f"(re-render with: kaogen render {folder}/painting.json -o big.png --size 2048)")
