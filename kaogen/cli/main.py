"""`kaogen`: entry point. Sub-commands live in one module per part; heavy imports happen inside them."""

from __future__ import annotations

import click

from kaogen import __version__
from kaogen.cli.common import KaogenGroup
from kaogen.cli.classify import classify, evaluate_classifier, similar, train_classifier
from kaogen.cli.data import data
from kaogen.cli.demo import demo
from kaogen.cli.detect import detect_cmd, evaluate_detector, train_detector
from kaogen.cli.gan import interpolate, metrics, project, sample, style_mix, train_gan
from kaogen.cli.ist import make_strokes_cmd, train_painter_cmd
from kaogen.cli.l2p import train_l2p, train_renderer_cmd
from kaogen.cli.paint import paint
from kaogen.cli.render import render
from kaogen.runtime import tune_allocator


@click.group(cls=KaogenGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="kaogen")
def cli():
    """kaogen: generative art for pre-modern Japanese painting (KaoKore).

    \b
    Data:      kaogen data download | verify | info | pages | add
    Renderer:  kaogen render PAINTING.json -o OUT.gif|mp4|webp|png|svg|DIR
    Painting:  kaogen paint --method l2p|ist IMAGE -o OUT.gif
               (train: kaogen train-l2p, train-renderer, make-strokes, train-painter)
    StyleGAN2: kaogen train-gan | sample | interpolate | style-mix | project | metrics
    Classify:  kaogen train-classifier | evaluate-classifier | classify | similar
    Detect:    kaogen train-detector | detect | evaluate-detector   (faces on whole pages)
    Demo:      kaogen demo -o kaogen-demo   (offline)
    """
    tune_allocator()


cli.add_command(data)
cli.add_command(demo)
cli.add_command(render)
cli.add_command(train_l2p)
cli.add_command(paint)
cli.add_command(train_gan)
cli.add_command(sample)
cli.add_command(interpolate)
cli.add_command(style_mix)
cli.add_command(project)
cli.add_command(metrics)
cli.add_command(make_strokes_cmd)
cli.add_command(train_painter_cmd)
cli.add_command(train_renderer_cmd)
cli.add_command(train_classifier)
cli.add_command(evaluate_classifier)
cli.add_command(classify)
cli.add_command(similar)
cli.add_command(train_detector)
cli.add_command(detect_cmd)
cli.add_command(evaluate_detector)


def main() -> None:
    try:
        cli(prog_name="kaogen")
    except SystemExit as e:             # click ends every command with sys.exit(code)
        _leave(e.code)
        raise
    _leave(0)


def _leave(code) -> None:
    """A torchrun worker that has left its process group exits here, without the interpreter's C++
    teardown (kaogen.distributed.exit_now); any other process returns. kaogen.distributed (and torch)
    are loaded only by the commands that can join a group, so `kaogen --help` stays light."""
    import sys

    dist = sys.modules.get("kaogen.distributed")
    if dist is not None and dist.left_process_group():
        dist.exit_now(code)


if __name__ == "__main__":
    main()
