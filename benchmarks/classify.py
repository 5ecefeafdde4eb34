"""Classifier benchmarks. Prints a table (and --json FILE writes it).

    python benchmarks/classify.py [--archs resnet18,mobilenet_v2] [--resolution 256] [--steps 3] [--no-cue]

  training speed    per architecture, float32 and bf16 autocast: seconds per training step of a batch
                    of --batch random faces at --resolution (Adam, augmentation as train-classifier),
                    after one warm-up step, and the seconds per epoch this means for the official
                    split's 7,405 training faces; evaluation images per second
  planted cue       (needs ../shared/kaokore/samples) kaogen.classify.synthetic's root: a ResNet-18
                    trained from scratch at 64 px for 6 epochs (float32) with train-classifier's
                    trainer: dev and test accuracy, and the share of the Grad-CAM mass of the held-out
                    cued faces that lies in the top-left quarter (0.25 for a uniform map)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common import machine_line, parse  # noqa: E402

from kaogen.classify.config import ClassifierConfig  # noqa: E402
from kaogen.classify.data import Faces  # noqa: E402
from kaogen.classify.train import ClassifierTrainer  # noqa: E402

OFFICIAL_TRAIN = 7405
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "kaokore" / "samples"


def fake_faces(n: int, resolution: int) -> Faces:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, resolution, resolution), dtype=torch.uint8, generator=g)
    return Faces(images, torch.arange(n) % 4, [None] * n, Path("."))


def training_speed(arch: str, resolution: int, batch: int, steps: int, amp: bool, device: str) -> dict:
    faces = fake_faces(batch * (steps + 1), resolution)
    cfg = ClassifierConfig(arch=arch, label="status", resolution=resolution, batch=batch, amp=amp, epochs=1)
    with tempfile.TemporaryDirectory() as tmp:
        tr = ClassifierTrainer(cfg, faces, faces, tmp, device, 0)
        tr.steps_per_epoch = 1
        tr.train_epoch()                                     # warm-up
        tr.steps_per_epoch = steps
        t0 = time.perf_counter()
        tr.train_epoch()
        step = (time.perf_counter() - t0) / steps
        from kaogen.classify.evaluate import confusion_on

        t0 = time.perf_counter()
        confusion_on(tr.net, faces.images, faces.labels, 4, device, amp, batch).sum().item()
        ev = len(faces) / (time.perf_counter() - t0)
    return {"arch": arch, "amp": amp, "resolution": resolution, "batch": batch, "s_per_step": step,
            "s_per_epoch_official": step * OFFICIAL_TRAIN / batch, "eval_img_per_s": ev}


def planted_cue(device: str) -> dict:
    from kaogen.classify.bundle import Classifier
    from kaogen.classify.data import load_faces
    from kaogen.classify.explain import corner_mass, explain
    from kaogen.classify.synthetic import planted_cue_root

    with tempfile.TemporaryDirectory() as tmp:
        root = planted_cue_root(SAMPLES, Path(tmp) / "root")
        sides = {s: load_faces(root, "gender", s, resolution=64) for s in ("train", "dev", "test")}
        cfg = ClassifierConfig(arch="resnet18", label="gender", resolution=64, epochs=6, batch=12, patience=0, amp=False)
        t0 = time.perf_counter()
        tr = ClassifierTrainer(cfg, sides["train"], sides["dev"], Path(tmp) / "run", device, 0)
        tr.train(progress=False)
        result = tr.finish(sides["test"])
        seconds = time.perf_counter() - t0
        clf = Classifier.load(Path(tmp) / "run" / "classifier.pt", device)
        test = sides["test"]
        cued = test.images[test.labels == 1].float() / 255
        mass = corner_mass(explain(clf, cued, torch.ones(len(cued), dtype=torch.long)).cam, 0.5)
    return {"dev_accuracy": result["dev_accuracy"], "test_accuracy": result["test_accuracy"],
            "cam_mass_top_left_quarter": float(mass.mean()), "cam_mass_min": float(mass.min()), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="resnet18,mobilenet_v2")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-cue", action="store_true")
    ap.add_argument("--json", default=None)
    args = parse(ap)
    print(machine_line(args))
    rows = []
    print(f"{'arch':<16} {'amp':<5} {'px':>4} {'batch':>5} {'s/step':>8} {'s/epoch (7,405)':>16} {'eval img/s':>10}")
    for arch in args.archs.split(","):
        for amp in (False, True):
            r = training_speed(arch, args.resolution, args.batch, args.steps, amp, args.device)
            rows.append(r)
            print(f"{arch:<16} {'bf16' if amp else 'fp32':<5} {r['resolution']:>4} {r['batch']:>5} {r['s_per_step']:>8.2f} "
                  f"{r['s_per_epoch_official']:>16.0f} {r['eval_img_per_s']:>10.1f}", flush=True)
    out = {"speed": rows}
    if not args.no_cue and (SAMPLES / "labels.csv").is_file():
        c = planted_cue(args.device)
        out["planted_cue"] = c
        print(f"planted cue (resnet18, 64 px, 6 epochs, {c['seconds']:.0f} s): dev {100 * c['dev_accuracy']:.1f} %, "
              f"test {100 * c['test_accuracy']:.1f} %, Grad-CAM mass in the cue's quarter {c['cam_mass_top_left_quarter']:.2f} "
              f"(min {c['cam_mass_min']:.2f}; uniform 0.25)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
