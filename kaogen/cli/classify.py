"""`kaogen train-classifier`, `evaluate-classifier`, `classify`, `similar`: the KaoKore classification
benchmark, Grad-CAM explanations and faces that look alike (kaogen.classify)."""

from __future__ import annotations

import click

from kaogen.cli.common import device_option, force_option, refuse_overwrite, seed_option

SPLITS = ["official", "by-work", "within-work"]


@click.command("train-classifier")
@click.option("--data", type=click.Path(file_okay=False), default=None, help="KaoKore root.")
@click.option("--label", type=click.Choice(["gender", "status"]), default=None, help="[default: the config's, status]")
@click.option("--arch", default=None, help="vgg11 alexnet resnet18 resnet34 mobilenet_v2 densenet121 inception_v3 "
              "resnext50_32x4d convnext_tiny efficientnet_b0 [default: the config's, resnet18]")
@click.option("--pretrained", default=None, metavar="none|imagenet|FILE",
              help="Initial weights: none, imagenet (torch hub cache; downloaded only on this request) or a state dict.")
@click.option("--split", type=click.Choice(SPLITS), default=None, help="[default: the config's, official]")
@click.option("--resolution", type=int, default=None, help="Faces resized to R x R [default: the config's, 256].")
@click.option("--epochs", type=int, default=None, help="At most this many epochs in total (early stopping may end sooner).")
@click.option("--batch", type=int, default=None, help="Global batch (split over torchrun processes).")
@click.option("--lr", type=float, default=None, help="Adam's learning rate.")
@click.option("--balance", type=click.Choice(["none", "sampler", "loss"]), default=None,
              help="Class balancing: sample classes evenly or weight the loss [default: none].")
@click.option("--patience", type=int, default=None, help="Early stopping: epochs without a better dev accuracy (0: never).")
@click.option("--amp/--no-amp", default=None, help="bfloat16 autocast on any device, the CPU too [default: on].")
@click.option("--outdir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--resume", type=click.Path(file_okay=False), default=None, help="Run folder to continue exactly.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML ClassifierConfig (configs/classify/); flags override it.")
@click.option("--progress/--no-progress", default=True)
@device_option
@seed_option
def train_classifier(data, label, arch, pretrained, split, resolution, epochs, batch, lr, balance, patience, amp,
                     outdir, resume, config_path, progress, device, seed):
    """Train a gender or status classifier (the KaoKore paper's recipe; resumable; torchrun)."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    import torch

    from kaogen.classify.config import ClassifierConfig
    from kaogen.classify.data import format_split_sizes, load_faces, split_sizes
    from kaogen.distributed import broadcast_object, dist_info, setup_distributed, teardown_distributed
    from kaogen.classify.models import check_resolution, get_arch
    from kaogen.classify.train import ClassifierTrainer, initial_network
    from kaogen.config import from_dict, load_config
    from kaogen.device import resolve_device
    from kaogen.errors import KaogenError
    from kaogen.runs import next_run_dir, record_run

    over = {k: v for k, v in (("label", label), ("arch", arch), ("pretrained", pretrained), ("split", split),
                              ("resolution", resolution), ("epochs", epochs), ("batch", batch), ("lr", lr),
                              ("balance", balance), ("patience", patience), ("amp", amp)) if v is not None}
    if resume:
        run = Path(resume)
        if not (run / "config.json").is_file() or not (run / "last.pt").is_file():
            raise KaogenError(f"{run} is not a train-classifier run folder with last.pt")
        saved = json.loads((run / "config.json").read_text())
        changed = sorted(set(over) - {"epochs", "patience", "amp"})
        if changed:
            raise KaogenError(f"--resume continues a run as it was: only --epochs, --patience and --amp may change "
                              f"(not --{changed[0]})")
        cfg = from_dict(ClassifierConfig, {**saved["config"], **over})
        data, seed = data or saved["data"], saved["seed"]         # --data: the root moved
    else:
        if not data:
            raise KaogenError("give --data KAOKORE_ROOT (or --resume RUN)")
        cfg = load_config(ClassifierConfig, config_path, **over) if config_path else from_dict(ClassifierConfig, over)
    get_arch(cfg.arch)
    check_resolution(cfg.arch, cfg.resolution)
    dev = resolve_device(device)
    setup_distributed(device)
    rank, world = dist_info()
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device())     # each rank its own GPU (LOCAL_RANK)
    # everything that can fail on the user's input fails before the run folder exists
    split_args = dict(strategy=cfg.split, seed=cfg.split_seed, fractions=cfg.split_fractions,
                      resolution=cfg.resolution, size=cfg.size)
    train, dev_faces, test = (load_faces(data, cfg.label, side, **split_args) for side in ("train", "dev", "test"))
    net = initial_network(cfg, seed)              # a missing weights file fails here, before the run folder
    if rank == 0:
        click.echo(f"{cfg.split} split, {cfg.label} (faces per class):\n"
                   + format_split_sizes(split_sizes(data, cfg.label, cfg.split, cfg.split_seed, cfg.split_fractions), cfg.label))
    if not resume:
        run = next_run_dir(outdir, "classifier") if rank == 0 else None
        run = Path(broadcast_object(str(run) if run else None))
    trainer = ClassifierTrainer(cfg, train, dev_faces, run, dev, seed, net)
    if resume and trainer.resume() and rank == 0:
        click.echo(f"resuming {run} after epoch {trainer.epoch} (best dev {100 * trainer.best_dev:.2f} % at epoch "
                   f"{trainer.best_epoch})")
    if rank == 0:
        record_run(run, {"config": asdict(cfg), "data": str(Path(data).resolve()), "seed": seed, "world": world})
    trainer.train(progress)
    result = trainer.finish(test)
    teardown_distributed()
    if rank == 0:
        click.echo(f"done: {run}/classifier.pt: best dev accuracy {100 * result['dev_accuracy']:.2f} % (epoch "
                   f"{result['best_epoch']}), test accuracy {100 * result['test_accuracy']:.2f} %")


@click.command("evaluate-classifier")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="classifier.pt of a run.")
@click.option("--data", type=click.Path(file_okay=False), required=True, help="KaoKore root.")
@click.option("--split", type=click.Choice(SPLITS), default=None, help="[default: the classifier's training split]")
@click.option("--side", type=click.Choice(["train", "dev", "test"]), default="test", show_default=True)
@click.option("--confusion", type=click.Path(dir_okay=False), default=None,
              help="Confusion-matrix PNG [default: beside the checkpoint, confusion-SPLIT-SIDE.png].")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@force_option
@device_option
def evaluate_classifier(checkpoint, data, split, side, confusion, as_json, force, device):
    """Accuracy, macro-F1, per-class precision and recall, confusion matrix; beside the published numbers."""
    import json
    from pathlib import Path

    from kaogen.classify.bundle import Classifier
    from kaogen.classify.confusion_plot import confusion_png
    from kaogen.classify.evaluate import evaluate
    from kaogen.device import resolve_device

    clf = Classifier.load(checkpoint, resolve_device(device))
    if confusion:
        refuse_overwrite(confusion, force)
    ev = evaluate(clf, data, split, side)
    out = Path(confusion) if confusion else Path(checkpoint).parent / f"confusion-{ev.strategy}-{side}.png"
    confusion_png(ev.scores, out, f"{clf.arch} {clf.label}, {ev.strategy} {side}: accuracy "
                                  f"{100 * ev.scores.accuracy:.2f} %, macro-F1 {100 * ev.scores.macro_f1:.2f} %")
    if as_json:
        click.echo(json.dumps({**ev.to_dict(), "confusion_png": str(out)}, indent=2))
    else:
        click.echo(ev.report())
        click.echo(f"confusion matrix: {out}")


@click.command("classify")
@click.argument("source", type=click.Path(exists=True))
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="classifier.pt of a run.")
@click.option("--explain", "explain_dir", type=click.Path(file_okay=False), default=None,
              help="Write NAME.cam.png (Grad-CAM overlay), NAME.guided.png (Guided Grad-CAM), NAME.cam.npy here.")
@click.option("--cam-layer", default=None, help="Backbone layer Grad-CAM reads, e.g. layer3 [default: the deepest "
              "whose map is at least 7 cells wide].")
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as JSON.")
@force_option
@device_option
def classify(source, checkpoint, explain_dir, cam_layer, as_json, force, device):
    """Label and class probabilities of IMAGE (or every image in DIR); optional Grad-CAM explanations."""
    import json

    from kaogen.classify.bundle import Classifier
    from kaogen.classify.predict import classify_paths, source_paths
    from kaogen.device import resolve_device

    clf = Classifier.load(checkpoint, resolve_device(device))
    paths = source_paths(source)
    results = classify_paths(clf, paths, explain_dir, force, cam_layer=cam_layer)
    if as_json:
        click.echo(json.dumps(results, indent=2, ensure_ascii=False))
        return
    for r in results:
        probs = "  ".join(f"{c} {100 * p:5.1f}%" for c, p in r["probabilities"].items())
        click.echo(f"{r['image']}: {r['label']}   ({probs})")
    if explain_dir:
        click.echo(f"explanations: {explain_dir}")


@click.command("similar")
@click.argument("image")
@click.option("--data", type=click.Path(file_okay=False), required=True, help="KaoKore root to search.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="classifier.pt of a run.")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=12, show_default=True)
@click.option("--other-works", is_flag=True, help="Leave out faces of the query's own work.")
@click.option("--work", default=None, help="The query's work, for an image from outside the root (--other-works).")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None, help="Contact sheet PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the neighbours as JSON.")
@force_option
@device_option
def similar(image, data, checkpoint, k, other_works, work, out, as_json, force, device):
    """The k faces of a root nearest to IMAGE (a file, or a face's name in the root) by the classifier's embedding."""
    import json

    from kaogen.classify.bundle import Classifier
    from kaogen.classify.similar import contact_sheet, find_similar
    from kaogen.device import resolve_device
    from kaogen.errors import KaogenError

    if not out and not as_json:
        raise KaogenError("give -o SHEET.png and/or --json")
    if out:
        refuse_overwrite(out, force)
    clf = Classifier.load(checkpoint, resolve_device(device))
    res = find_similar(clf, data, image, k=k, other_works=other_works, work=work)
    if out:
        contact_sheet(res, out)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"wrote {out}: {len(res.neighbours)} faces nearest to {res.query_name}"
                   f"{' from other works than ' + res.query_work if other_works else ''} "
                   f"(embeddings {'reused from' if res.cache_hit else 'cached in'} {res.cache})")
