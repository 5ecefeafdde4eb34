"""`kaogen train-detector`, `kaogen detect`, `kaogen evaluate-detector`: faces on whole pages."""

from __future__ import annotations

import click

from kaogen.cli.common import device_option, force_option, seed_option


def _size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    from kaogen.errors import KaogenError

    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise KaogenError(f"a patch size is WIDTHxHEIGHT (e.g. 1333x800), not {value!r}") from None
    if w < 32 or h < 32:
        raise KaogenError(f"a patch must be at least 32x32, not {value}")
    return w, h


@click.command("train-detector")
@click.option("--data", type=click.Path(file_okay=False), default=None, help="ROOT/pages of `kaogen data pages`.")
@click.option("--arch", default=None, help="fasterrcnn_resnet50_fpn_v2 | fasterrcnn_mobilenet_v3_large_fpn | "
              "retinanet_resnet50_fpn_v2 | fcos_resnet50_fpn | fcos_tiny [default: the config's].")
@click.option("--patch", default=None, metavar="WxH", help="Train on patches of this size [default: the config's, 1333x800].")
@click.option("--no-patch", "no_patch", is_flag=True, default=False, help="Train on whole pages resized to fit the input.")
@click.option("--pretrained", default=None, help="none | imagenet (from the torch hub cache) | FILE [default: none].")
@click.option("--split", default=None, type=click.Choice(["by-page", "by-work", "within-work", "all"]),
              help="Page split: train on its train pages, draw samples from its dev pages [default: by-page].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="TOML DetectConfig (configs/detect/).")
@click.option("--outdir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--resume", type=click.Path(file_okay=False), default=None, help="Run folder to continue exactly.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Train until this many steps in total.")
@click.option("--batch", type=click.IntRange(1), default=None, help="Inputs per step [default: the config's].")
@click.option("--amp/--no-amp", default=None, help="bfloat16 autocast on any device [default: the config's].")
@click.option("--progress/--no-progress", default=True)
@device_option
@seed_option
def train_detector(data, arch, patch, no_patch, pretrained, split, config_path, outdir, resume, steps, batch, amp,
                   progress, device, seed):
    """Train a torchvision face detector on page patches (resumable; several GPUs with torchrun)."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    from kaogen.config import from_dict, load_config
    from kaogen.detect.config import DetectConfig
    from kaogen.detect.data import PageSet
    from kaogen.detect.models import check_spec
    from kaogen.detect.train import DetectorTrainer, spec_of
    from kaogen.distributed import dist_info, setup_distributed, teardown_distributed
    from kaogen.device import resolve_device
    from kaogen.errors import KaogenError
    from kaogen.runs import next_run_dir, record_run

    setup_distributed(device)
    rank, world = dist_info()
    if resume:
        run = Path(resume)
        if not (run / "config.json").is_file() or not any(run.glob("snapshot-*.pt")):
            raise KaogenError(f"{run} is not a train-detector run folder with a snapshot")
        saved = json.loads((run / "config.json").read_text())
        cfg = from_dict(DetectConfig, {**saved["config"], **({"steps": steps} if steps else {}),
                                       **({"amp": amp} if amp is not None else {})})
        data, seed = data or saved["data"], saved["seed"]
    else:
        if not data:
            raise KaogenError("give --data ROOT/pages (or --resume RUN)")
        over = {"arch": arch, "patch": list(_size(patch)) if patch else None, "pretrained": pretrained,
                "split": split, "steps": steps, "batch": batch, "amp": amp, "use_patches": False if no_patch else None}
        over = {k: v for k, v in over.items() if v is not None}
        cfg = load_config(DetectConfig, config_path, **over) if config_path else from_dict(DetectConfig, over)
        # everything that can be refused is checked before the run folder exists (no empty folders)
        check_spec(spec_of(cfg))
        train = PageSet.load(data, cfg.split, "train")
        if not len(train):
            raise KaogenError("no training pages (check --split and pages.json)")
        run = next_run_dir(outdir, "detector") if rank == 0 else None
        if world > 1:
            import torch

            holder = [str(run) if run else None]
            torch.distributed.broadcast_object_list(holder, 0)
            run = Path(holder[0])
    train = PageSet.load(data, cfg.split, "train") if resume else train
    dev = PageSet.load(data, cfg.split, "dev") if cfg.split != "all" else train
    dev = dev if len(dev) else PageSet.load(data, cfg.split, "test") if cfg.split != "all" else train
    dev_ = resolve_device(device)
    if world > 1 and dev_.type == "cuda":
        import torch

        dev_ = torch.device("cuda", torch.cuda.current_device())
    trainer = DetectorTrainer(cfg, train, run, dev_, seed, dev)
    if resume:
        trainer.resume()
        click.echo(f"resuming {run} at step {trainer.step}")
    if rank == 0:
        record_run(run, {"config": asdict(cfg), "data": str(Path(data).resolve()), "seed": seed, "world": world,
                         "train_pages": len(train)})
    trainer.train(progress)
    teardown_distributed()
    if rank == 0:
        click.echo(f"done: {run}/detector.pt (step {trainer.step}, {len(train)} training pages)")


def _shipped_detector() -> str:
    from kaogen.checkpoint import checkpoints_dir
    from kaogen.errors import KaogenError

    path = checkpoints_dir() / "detector-smoke.pt"
    if not path.is_file():
        raise KaogenError("give --checkpoint RUNS/NNNNN-detector/detector.pt (no shipped detector found)")
    click.echo(f"using the shipped smoke detector {path} (trained on synthetic pages of the sample faces: "
               f"real scrolls differ; train your own with `kaogen train-detector`)", err=True)
    return str(path)


@click.command("detect")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="detector.pt of train-detector [default: the shipped smoke detector].")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--patch", default=None, metavar="WxH", help="Window size [default: the detector's].")
@click.option("--no-patch", "no_patch", is_flag=True, default=False, help="Whole page only, no windows.")
@click.option("--overlap", type=click.FloatRange(0, 0.9), default=None, help="Overlap of windows [default: the detector's, 0.2].")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="Score a face needs [default: the detector's].")
@click.option("--long-side", type=click.IntRange(0, 20000), default=None,
              help="Scale pages to this long side first [default: the detector's training pages'; 0: as they are].")
@click.option("--canvas", default=None, help="Canvas id for the AnnotationPage (one page; default: service URL or file URI).")
@click.option("--mirror", default=None, help="Send IIIF requests to this scheme://host instead.")
@click.option("--classifier", "classifiers", multiple=True, type=click.Path(dir_okay=False),
              help="A gender and/or status classifier.pt (train-classifier): predictions in review.csv.")
@click.option("--amp/--no-amp", default=False, show_default=True, help="bfloat16 autocast.")
@click.option("--progress/--no-progress", default=True)
@force_option
@device_option
def detect_cmd(inputs, checkpoint, out, patch, no_patch, overlap, threshold, long_side, canvas, mirror, classifiers,
               amp, progress, force, device):
    """Find faces on pages (files, folders, IIIF image URLs): COCO results, IIIF annotations, crops, review CSV."""
    from pathlib import Path

    from kaogen.cli.common import refuse_overwrite
    from kaogen.detect.bundle import Detector
    from kaogen.detect.run import DetectOptions, detect_pages
    from kaogen.device import resolve_device

    refuse_overwrite(Path(out) / "detections.json", force)
    det = Detector.load(checkpoint or _shipped_detector(), resolve_device(device))
    opts = DetectOptions(out=out, patch=_size(patch), no_patch=no_patch, overlap=overlap, threshold=threshold,
                         long_side=long_side, canvas=canvas, mirror=mirror, classifiers=tuple(classifiers), amp=amp)
    r = detect_pages(det, list(inputs), opts, progress)
    click.echo(f"{r['faces']} faces on {r['pages']} pages: {out}/detections.json, annotations/, preview/, crops/, review.csv")


@click.command("evaluate-detector")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="detector.pt [default: the shipped one].")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="ROOT/pages of `kaogen data pages`.")
@click.option("--split", default="by-page", show_default=True, type=click.Choice(["by-page", "by-work", "within-work", "all"]))
@click.option("--subset", default="test", show_default=True, type=click.Choice(["train", "dev", "test", "all"]))
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="For recall / precision [default: the detector's].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--progress/--no-progress", default=True)
@device_option
def evaluate_detector(checkpoint, data, split, subset, threshold, as_json, progress, device):
    """mAP at IoU 0.5 and 0.5:0.95, recall and precision (pycocotools), with and without patching."""
    import json

    from kaogen.detect.bundle import Detector
    from kaogen.detect.data import PageSet
    from kaogen.detect.evaluate import evaluate, format_table
    from kaogen.device import resolve_device
    from kaogen.errors import KaogenError

    det = Detector.load(checkpoint or _shipped_detector(), resolve_device(device))
    pages = PageSet.load(data, split, subset)
    if not len(pages):
        raise KaogenError(f"no {subset} pages under the {split} split of {data}")
    rows = [evaluate(det, pages, patched=p, threshold=threshold, progress=progress) for p in (True, False)]
    click.echo(json.dumps(rows, indent=2) if as_json else format_table(rows))
