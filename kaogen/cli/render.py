"""`kaogen render PAINTING.json -o OUT`."""

from __future__ import annotations

import click

from kaogen.cli.common import common_options, force_option, refuse_overwrite


@click.command()
@common_options
@click.argument("painting", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(),
              help="Output: .gif .mp4 .webp .png .jpg .svg, or a folder (numbered frames).")
@click.option("--size", type=int, default=512, show_default=True, help="Longer side of the output in pixels.")
@click.option("--fps", type=float, default=12.0, show_default=True, help="Frames per second of animations.")
@click.option("--strokes-per-frame", type=int, default=None, help="Strokes added per frame [default: about 60 frames].")
@click.option("--hold", type=float, default=2.0, show_default=True, help="Seconds the finished painting is held.")
@click.option("--side-by-side", type=click.Path(dir_okay=False), default=None,
              help="Show this image (the target) left of every frame.")
@click.option("--contact-sheet", is_flag=True, default=False, help="For .png/.jpg: a grid of stages.")
@force_option
def render(painting, out, size, fps, strokes_per_frame, hold, side_by_side, contact_sheet, force, device, seed):
    """Render a painting file (JSON) to an animation, image, SVG or frame folder."""
    import kaogen.ist.brush_kind  # noqa: F401  (registers the neural painter loader: neural-brush paintings)
    from kaogen.device import resolve_device
    from kaogen.render.export import ExportOptions, export
    from kaogen.render.painting import Painting

    refuse_overwrite(out, force)
    p = Painting.load(painting)
    opts = ExportOptions(size=size, fps=fps, strokes_per_frame=strokes_per_frame, hold=hold,
                         side_by_side=side_by_side, contact_sheet=contact_sheet, device=resolve_device(device))
    path = export(p, out, opts)
    click.echo(f"wrote {path} ({len(p)} strokes)")
