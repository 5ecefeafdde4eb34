"""`kaogen make-strokes` and `kaogen train-painter`: the real brush's strokes and the neural painter that imitates them."""

from __future__ import annotations

import click

from kaogen.cli.common import device_option, seed_option


@click.command("make-strokes")
@click.option("--brush", default="classic/kabura", show_default=True,
              help="MyPaint brush by name (e.g. classic/pencil, deevad/2B_pencil, classic/kabura) or a .myb file.")
@click.option("--count", type=click.IntRange(1, 10_000_000), default=30000, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder (resumed if it exists).")
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option("--progress/--no-progress", default=True)
@seed_option
def make_strokes_cmd(brush, count, out, workers, progress, seed):
    """Draw (action, stroke) pairs with libmypaint, in parallel and resumable."""
    from kaogen.ist.strokes import make_strokes

    make_strokes(brush, count, out, workers, seed, progress)
    click.echo(f"{count} strokes of {brush} in {out}")


@click.command("train-painter")
@click.option("--strokes", required=True, type=click.Path(file_okay=False), help="A make-strokes folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (resumed if it exists).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="TOML PainterTrainConfig.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Total training steps.")
@click.option("--amp/--no-amp", default=None,
              help="bfloat16 autocast for the networks on any device (losses stay float32) [default: the config's amp, off].")
@click.option("--progress/--no-progress", default=True)
@device_option
@seed_option
def train_painter_cmd(strokes, out, config_path, steps, amp, progress, device, seed):
    """Train Nakano's GAN neural painter on libmypaint strokes."""
    from kaogen.config import load_config
    from kaogen.device import resolve_device
    from kaogen.ist.mypaint import MyPaint
    from kaogen.ist.train_painter import PainterTrainConfig, train_painter

    MyPaint.load()            # the painter imitates libmypaint: say so in one line when it is missing
    cfg = load_config(PainterTrainConfig, config_path, steps=steps, amp=amp)
    dev = resolve_device(device)
    fid = train_painter(cfg, strokes, out, seed, progress, device=dev)
    click.echo(f"held-out strokes vs libmypaint: alpha MAE {fid['mae']:.4f}, stroke PSNR {fid['psnr']:.2f} dB "
               f"({dev}{', bf16 autocast' if cfg.amp else ''}) -> {out}/painter.pt")
