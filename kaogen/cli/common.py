"""Options and error handling shared by every command.

Every command that computes takes `--device`, `--seed` and `--config FILE.toml`. The config file
sets defaults for the command's own options (keys are option names with '_' or '-'), flags given on
the command line override it, and an unknown key is an error.
"""

from __future__ import annotations

import sys

import click

from kaogen.errors import KaogenError


class KaogenGroup(click.Group):
    """A click group that turns KaogenError into a one-line `Error: ...` and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KaogenError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted; finished files are kept and a re-run resumes.", err=True)
            sys.exit(130)


def _load_config(ctx: click.Context, param: click.Parameter, value):
    if not value:
        return value
    from kaogen.config import read_toml

    try:
        data = read_toml(value)
    except KaogenError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    names = {p.name for p in ctx.command.params} - {"config"}
    defaults = {}
    for key, v in data.items():
        name = key.replace("-", "_")
        if name not in names:
            raise click.BadParameter(
                f"unknown key '{key}' in {value} (known: {', '.join(sorted(names))})", ctx=ctx, param=param
            )
        defaults[name] = v
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False, callback=_load_config,
    help="TOML file with defaults for this command's options (flags override; unknown keys are errors).",
)
def _check_device(ctx: click.Context, param: click.Parameter, value):
    from kaogen.device import resolve_device

    resolve_device(value)                # present, and cuda:N within the device count: else one line
    return value


device_option = click.option(
    "--device", default="auto", show_default=True, callback=_check_device, metavar="auto|cpu|cuda|cuda:N|mps",
    help="Where to compute: auto picks CUDA, then MPS, then CPU.",
)
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed (reproducible runs).")


def common_options(f):
    """--config, --device and --seed, in that order on the help page."""
    return config_option(device_option(seed_option(f)))


def refuse_overwrite(path, force: bool) -> None:
    """Outputs never overwrite anything silently: an existing path needs --force."""
    from pathlib import Path

    p = Path(path)
    if p.exists() and not force:
        raise KaogenError(f"{p} already exists: pass --force to overwrite it")


force_option = click.option("--force", is_flag=True, default=False, help="Overwrite an existing output.")
