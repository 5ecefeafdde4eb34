"""`kaogen data download | verify | info`."""

from __future__ import annotations

import sys

import click

from kaogen.cli.common import config_option


@click.group()
def data():
    """KaoKore data: download over IIIF, verify, describe."""


@data.command()
@config_option
@click.option("--root", required=True, type=click.Path(file_okay=False), help="KaoKore root folder (created if needed).")
@click.option("--version", "version", type=click.Choice(["1.0", "1.1", "1.2", "1.3"]), default="1.3", show_default=True,
              help="Dataset version (metadata folder of the official repository).")
@click.option("--size", type=click.IntRange(16, 4096), default=256, show_default=True,
              help="Ask the IIIF server for the same region at this size, into ROOT/images_SIZE/.")
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True, help="Parallel connections.")
@click.option("--metadata", type=click.Path(file_okay=False), default=None,
              help="Local folder holding labels.csv, urls.txt, ... instead of fetching them (offline).")
@click.option("--mirror", default=None, help="Replace scheme and host of every image URL (mirror, proxy, tests).")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True, help="Seconds per request.")
@click.option("--retries", type=click.IntRange(0, 50), default=5, show_default=True, help="Retries of a transient failure.")
@click.option("--backoff", type=click.FloatRange(0, 60), default=1.0, show_default=True,
              help="First retry delay in seconds (doubled each retry).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def download(**kw):
    """Download KaoKore metadata and faces (resumable; re-run to fetch what is missing)."""
    from kaogen.data.download import DownloadOptions, download as run

    report = run(DownloadOptions(**kw))
    note = report.reconciled()
    if note:
        click.echo(note)
    click.echo(report.summary())
    for f in report.failed[:20]:
        click.echo(f"  failed {f.image}: {f.reason}  {f.url}", err=True)
    if len(report.failed) > 20:
        click.echo(f"  ... and {len(report.failed) - 20} more", err=True)
    if report.failed:
        click.echo(f"report: {kw['root']}/download_report_{kw['size']}.json", err=True)
    sys.exit(0 if report.complete else 1)


@data.command()
@click.option("--root", required=True, type=click.Path(file_okay=False), help="KaoKore root folder.")
@click.option("--size", type=int, default=256, show_default=True, help="Which download to check: ROOT/images_SIZE/.")
def verify(root, size):
    """Check that every labelled image is present and decodable (exit 1 if not)."""
    from kaogen.data.inspect import verify as run

    r = run(root, size)
    if r.mixed:
        click.echo(f"mixed: {r.mixed}")
    for name in r.missing[:20]:
        click.echo(f"missing {name}")
    for name in r.corrupt[:20]:
        click.echo(f"corrupt {name}")
    for p in r.problems[:20]:
        click.echo(f"metadata: {p}")
    withdrawn = f" ({len(r.withdrawn)} more withdrawn: empty lines of urls.txt)" if r.withdrawn else ""
    version = f"KaoKore {r.version}" if r.version else "KaoKore (unstamped)"
    click.echo(f"{version}: {r.checked} labelled images: {r.checked - len(r.missing) - len(r.corrupt)} good, "
               f"{len(r.missing)} missing, {len(r.corrupt)} corrupt{withdrawn}")
    sys.exit(0 if r.ok else 1)


@data.command()
@click.option("--root", required=True, type=click.Path(file_okay=False), help="KaoKore root folder.")
@click.option("--size", type=int, default=256, show_default=True, help="Which download to describe: ROOT/images_SIZE/.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(root, size, as_json):
    """Counts per split and label, image sizes, and the experts' tag vocabularies."""
    import json

    from kaogen.data.inspect import format_info, info as run

    d = run(root, size)
    click.echo(json.dumps(d, ensure_ascii=False, indent=2) if as_json else format_info(d))


@data.command()
@config_option
@click.option("--root", required=True, type=click.Path(file_okay=False), help="KaoKore root (urls.txt, labels.csv).")
@click.option("--long-side", type=click.IntRange(32, 20000), default=1333, show_default=True,
              help="Scale every page so that its long side is this many pixels.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="Parallel connections.")
@click.option("--mirror", default=None, help="Replace scheme and host of every IIIF request (mirror, proxy, tests).")
@click.option("--metadata", type=click.Path(file_okay=False), default=None,
              help="Local folder holding urls.txt, labels.csv, ... (offline), copied into the root.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder [default: ROOT/pages].")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=60.0, show_default=True, help="Seconds per request.")
@click.option("--retries", type=click.IntRange(0, 50), default=5, show_default=True, help="Retries of a transient failure.")
@click.option("--backoff", type=click.FloatRange(0, 60), default=1.0, show_default=True, help="First retry delay (s).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the page splits.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def pages(**kw):
    """Whole pages and face boxes from the IIIF metadata: ROOT/pages/ (images, COCO pages.json; resumable)."""
    from kaogen.data.pages import PagesOptions, build_pages

    report = build_pages(PagesOptions(**kw))
    click.echo(report.summary())
    for f in report.failed[:20]:
        click.echo(f"  failed {f.page}: {f.reason}  {f.url}", err=True)
    for p in report.face_problems[:10]:
        click.echo(f"  skipped {p}", err=True)
    out = kw["out"] or f"{kw['root']}/pages"
    click.echo(f"COCO: {out}/pages.json; report: {out}/pages_report.json")
    sys.exit(0 if report.complete else 1)


@data.command()
@click.option("--root", required=True, type=click.Path(file_okay=False), help="Local KaoKore-style root (created if needed).")
@click.option("--review", required=True, type=click.Path(dir_okay=False), help="review.csv of `kaogen detect`, reviewed.")
@click.option("--set", "split", default="train", show_default=True, type=click.Choice(["train", "dev", "test"]),
              help="The `set` column of the added faces.")
@click.option("--work", default="", help="Source work (原典) tag of the added faces.")
def add(root, review, split, work):
    """Add the reviewed crops (rows kept or corrected) to a local root: labels.csv, images_256/, tags."""
    from kaogen.data.add import add_reviewed

    r = add_reviewed(root, review, split, work)
    click.echo(r.summary())
    for line in r.skipped[:20]:
        click.echo(f"  {line}", err=True)
