"""kaogen.classify: the KaoKore classification benchmark, Grad-CAM explanations, similar faces.

Everything runs on tiny roots built here from the 30 real sample faces (../shared/kaokore/samples),
at 32-64 px, with a from-scratch ResNet-18, offline.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import torchrun as run_torchrun
from conftest import SAMPLES
from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.classify.bundle import Classifier
from kaogen.classify.config import ClassifierConfig
from kaogen.classify.data import load_faces, split_sizes
from kaogen.classify.models import ARCHS, build_network, imagenet_file
from kaogen.classify.scores import scores
from kaogen.classify.synthetic import planted_cue_root
from kaogen.classify.train import ClassifierTrainer
from kaogen.cli.main import cli
from kaogen.errors import KaogenError

CUE = 0.22            # side of the planted cue, as a share of the face's side (top-left corner)


def invoke(*args, ok=True):
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert r.exit_code == 0, r.output
    return r


def cue_root(root: Path) -> Path:
    """The planted-cue root (kaogen.classify.synthetic): the green top-left square decides gender."""
    if not (SAMPLES / "labels.csv").is_file():
        pytest.skip("../shared/kaokore/samples is not present")
    return planted_cue_root(SAMPLES, root, CUE)


@pytest.fixture(scope="module")
def cue_run(tmp_path_factory):
    """A ResNet-18 trained from scratch at 64 px on the planted cue (float32: this CPU has no fast bf16)."""
    base = tmp_path_factory.mktemp("cue")
    root = cue_root(base / "root")
    invoke("train-classifier", "--data", root, "--label", "gender", "--arch", "resnet18", "--resolution", 64,
           "--epochs", 6, "--batch", 12, "--patience", 0, "--outdir", base / "runs", "--device", "cpu", "--no-progress",
           "--no-amp")
    return root, base / "runs" / "00000-classifier"


def test_planted_cue_is_learnt_and_grad_cam_lies_on_it(cue_run, tmp_path):
    root, run = cue_run
    result = json.loads((run / "result.json").read_text())
    assert result["dev_accuracy"] >= 0.9, result
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert result["best_epoch"] == max(rows, key=lambda r: (r["dev_accuracy"], -r["epoch"]))["epoch"]
    for name in ("curves.png", "confusion-dev.png", "confusion-test.png", "last.pt", "config.json"):
        assert (run / name).is_file(), name
    ck = load_checkpoint(run / "classifier.pt", kind="classifier")
    assert ck.meta["epoch"] == result["best_epoch"] and ck.meta["test_accuracy"] == result["test_accuracy"]
    # explanations of the held-out faces with the cue, and one non-square picture
    pics = tmp_path / "pics"
    pics.mkdir()
    test = load_faces(root, "gender", "test", resolution=None)
    cued = [r.image for r, y in zip(test.records, test.labels.tolist()) if y == 1]
    for name in cued:
        shutil.copy(root / "images_256" / name, pics / name)
    Image.open(root / "images_256" / cued[0]).crop((0, 0, 256, 200)).save(pics / "wide.png")
    out = invoke("classify", pics, "--checkpoint", run / "classifier.pt", "--explain", tmp_path / "ex", "--json")
    preds = {Path(r["image"]).name: r for r in json.loads(out.output)}
    assert sum(preds[n]["label"] == "female" for n in cued) >= len(cued) - 1
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in preds.values())
    masses = []
    for name in cued:
        cam = np.load(tmp_path / "ex" / f"{Path(name).stem}.cam.npy")
        assert cam.dtype == np.float32 and cam.shape == (256, 256)
        assert cam.min() >= 0 and cam.max() <= 1 and cam.max() > 0.95   # 1 at the network's resolution
        masses.append(cam[:128, :128].sum() / cam.sum())    # the top-left quarter holds the cue
        assert (tmp_path / "ex" / f"{Path(name).stem}.cam.png").is_file()
        assert (tmp_path / "ex" / f"{Path(name).stem}.guided.png").is_file()
    assert np.mean(masses) > 0.5 and min(masses) > 0.4, masses   # a uniform map would put 0.25 there
    wide = np.load(tmp_path / "ex" / "wide.cam.npy")
    assert wide.shape == (200, 256) and wide.dtype == np.float32 and 0 <= wide.min() and wide.max() <= 1
    assert not wide[:, :28].any() and not wide[:, -28:].any()   # the network saw the centred 200 px square
    # a second run refuses to overwrite the explanations
    r = invoke("classify", pics, "--checkpoint", run / "classifier.pt", "--explain", tmp_path / "ex", ok=False)
    assert r.exit_code != 0 and "already exists" in r.output


def test_scores_by_hand():
    cm = [[5, 1, 0], [2, 3, 1], [0, 0, 0]]       # class 2 has no face and is never predicted
    s = scores(cm, ("a", "b", "c"))
    assert s.accuracy == pytest.approx(8 / 12)
    assert s.precision == pytest.approx([5 / 7, 3 / 4, 0])
    assert s.recall == pytest.approx([5 / 6, 3 / 6, 0])
    f1a, f1b = 2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6), 2 * (3 / 4) * (1 / 2) / (3 / 4 + 1 / 2)
    assert s.macro_f1 == pytest.approx((f1a + f1b) / 2)       # over the classes that have faces
    assert s.support == [6, 6, 0]


def test_every_config_loads_and_covers_the_papers_table():
    from kaogen.config import load_config

    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "classify").glob("*.toml"))
    archs = {load_config(ClassifierConfig, p).arch for p in configs}
    assert archs <= set(ARCHS) and {a for a, v in ARCHS.items() if v.paper} <= archs and len(archs) == len(configs)


def constant_classifier(path: Path, label: str, always: int, resolution: int = 32) -> Path:
    """A classifier whose head ignores the features and always says class `always`."""
    n = 2 if label == "gender" else 4
    net = build_network("resnet18", n)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.arange(n) == always)
    names = ("male", "female") if n == 2 else ("noble", "warrior", "incarnation", "commoner")
    Classifier(net, {"arch": "resnet18", "label": label, "classes": list(names), "resolution": resolution,
                     "size": 256, "split": "official", "split_seed": 0, "split_fractions": [0.8, 0.1, 0.1]}).save(path)
    return path


def test_evaluate_classifier_agrees_with_a_hand_count(sample_root, tmp_path):
    ckpt = constant_classifier(tmp_path / "c.pt", "status", always=1)          # always "warrior"
    rows = list(csv.DictReader((sample_root / "labels.csv").open()))
    truth = [int(r["status"]) for r in rows if r["set"] == "test" and r["status"] != ""]
    counts = [truth.count(c) for c in range(4)]
    out = invoke("evaluate-classifier", "--checkpoint", ckpt, "--data", sample_root, "--json")
    got = json.loads(out.output)
    assert got["confusion"] == [[0, counts[c], 0, 0] for c in range(4)]
    assert got["accuracy"] == pytest.approx(counts[1] / sum(counts))
    assert got["per_class"]["warrior"]["recall"] == 1 and got["per_class"]["noble"]["recall"] == 0
    assert got["per_class"]["warrior"]["precision"] == pytest.approx(counts[1] / sum(counts))
    assert Path(got["confusion_png"]).is_file()
    text = invoke("evaluate-classifier", "--checkpoint", ckpt, "--data", sample_root, "--confusion",
                  tmp_path / "cm.png").output
    assert "paper" in text and "ResNet-18" in text and "82.16" in text and "96.58" in text and "87.24" in text
    mine = next(line for line in text.splitlines() if line.startswith("this run"))
    assert f"{100 * counts[1] / sum(counts):.2f}" in mine and (tmp_path / "cm.png").is_file()


def test_by_work_holds_whole_works_out(sample_root):
    sides = {s: load_faces(sample_root, "status", s, strategy="by-work", resolution=32) for s in ("train", "dev", "test")}
    works = {s: {r.tags["work"] for r in f.records} for s, f in sides.items()}
    assert works["train"] and works["dev"] and works["test"]
    assert not (works["train"] & works["dev"]) and not (works["train"] & works["test"]) and not (works["dev"] & works["test"])
    official = load_faces(sample_root, "status", "test", resolution=32)
    assert len({r.tags["work"] for r in official.records}) > 1           # the official split mixes works


def test_split_sizes_of_the_real_v13_metadata(v13):
    rows = list(csv.DictReader((v13 / "labels.csv").open()))
    for label, n in (("gender", 2), ("status", 4)):
        sizes = split_sizes(v13, label)
        assert [sum(sizes[s]) for s in ("train", "dev", "test")] == [7405, 926, 926]
        for s in ("train", "dev", "test"):
            assert sizes[s] == [sum(1 for r in rows if r["set"] == s and r[label] == str(c)) for c in range(n)]
        by_work = split_sizes(v13, label, "by-work")
        assert sum(map(sum, by_work.values())) == 9257
    assert split_sizes(v13, "status")["train"] == [3641, 2392, 675, 697]


def tiny_cfg(**kw) -> ClassifierConfig:
    base = dict(arch="resnet18", label="status", resolution=32, epochs=2, batch=8, patience=0, amp=True,
                balance="sampler")
    return ClassifierConfig(**{**base, **kw})


def test_resume_is_exact_and_amp_runs_bf16_on_the_cpu(sample_root, tmp_path):
    train = load_faces(sample_root, "status", "train", resolution=32)
    dev = load_faces(sample_root, "status", "dev", resolution=32)
    straight = ClassifierTrainer(tiny_cfg(), train, dev, tmp_path / "a", "cpu", seed=3)
    dtypes = set()
    def record(module, inputs, output):
        if module.training:
            dtypes.add(output.dtype)

    hook = straight.net.backbone.layer1.register_forward_hook(record)
    straight.train(progress=False)
    hook.remove()
    assert dtypes == {torch.bfloat16}                  # training steps take the amp path CUDA runs
    first = ClassifierTrainer(tiny_cfg(epochs=1), train, dev, tmp_path / "b", "cpu", seed=3)
    first.train(progress=False)
    again = ClassifierTrainer(tiny_cfg(), train, dev, tmp_path / "b", "cpu", seed=3)
    assert again.resume() and again.epoch == 1
    assert all(st["step"].device.type == "cpu" for st in again.opt.state.values())
    again.train(progress=False)
    a, b = straight.net.state_dict(), again.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [[json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in "ab"]
    strip = [[{k: v for k, v in r.items() if k != "sec"} for r in rs] for rs in rows]
    assert strip[0] == strip[1] and all(np.isfinite(r["train_loss"]) for r in rows[0])


def test_torchrun_two_processes(sample_root, tmp_path):
    """Two gloo processes: DDP keeps replicas equal (checked every epoch), the global batch is shared
    out, and a resume restores each rank's own random state."""
    def torchrun(*args):
        return run_torchrun("train-classifier", *args, "--device", "cpu", cwd=tmp_path)

    r = torchrun("--data", sample_root, "--label", "status", "--resolution", 32, "--epochs", 1, "--batch", 8,
                 "--outdir", tmp_path / "runs")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run = tmp_path / "runs" / "00000-classifier"
    assert json.loads((run / "config.json").read_text())["world"] == 2
    r = torchrun("--resume", run, "--epochs", 2)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        assert len(row["replica_sums"]) == 2 and len(set(row["replica_sums"])) == 1
    snap = load_checkpoint(run / "last.pt", kind="classifier-train")
    assert not torch.equal(snap.state["rng"]["0"]["torch"], snap.state["rng"]["1"]["torch"])
    assert Classifier.load(run / "classifier.pt").predict(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def similar_root(sample_root: Path) -> Path:
    """sample_root plus 00000030.jpg: a near-duplicate of face 0 (slightly darker, re-encoded) in face 1's work."""
    img = Image.open(sample_root / "images_256" / "00000000.jpg").convert("RGB")
    Image.fromarray((np.asarray(img) * 0.96).astype(np.uint8)).save(sample_root / "images_256" / "00000030.jpg", quality=80)
    with (sample_root / "labels.csv").open("a", newline="") as f:
        csv.writer(f).writerow(["00000030.jpg", "0", "0", "train"])
    work1 = (sample_root / "original_tags.txt").read_text().splitlines()[1].split(":", 1)[1]
    with (sample_root / "original_tags.txt").open("a") as t:
        t.write(f"00000030.jpg:{work1}\n")
    return sample_root


def test_similar_faces_itself_first_other_works_and_the_cache(sample_root, tmp_path):
    root = similar_root(sample_root)
    torch.manual_seed(0)
    ckpt = tmp_path / "run" / "classifier.pt"
    ckpt.parent.mkdir()
    constant_classifier(ckpt, "status", 0, resolution=64)
    clf = Classifier.load(ckpt)
    from kaogen.classify.similar import find_similar

    works = {ln.split(":")[0]: ln.split("原典=")[1].split(";")[0] for ln in (root / "original_tags.txt").read_text().splitlines()}
    res = find_similar(clf, root, "00000000.jpg", k=5)
    assert not res.cache_hit and res.cache.is_file()
    assert [n.name for n in res.neighbours[:2]] == ["00000000.jpg", "00000030.jpg"]
    assert res.neighbours[0].similarity == pytest.approx(1, abs=1e-5)
    assert res.neighbours[0].similarity >= res.neighbours[1].similarity >= res.neighbours[2].similarity
    other = find_similar(clf, root, str(root / "images_256" / "00000000.jpg"), k=5, other_works=True)
    assert other.cache_hit
    assert other.neighbours[0].name == "00000030.jpg"
    assert all(works[n.name] != works["00000000.jpg"] for n in other.neighbours) and len(other.neighbours) == 5
    # changed data and a changed checkpoint invalidate the cache; an unchanged pair reuses it
    Image.open(root / "images_256" / "00000007.jpg").rotate(90).save(root / "images_256" / "00000007.jpg")
    assert not find_similar(clf, root, "00000000.jpg").cache_hit
    assert find_similar(clf, root, "00000000.jpg").cache_hit
    st = (root / "images_256" / "00000009.jpg").stat()
    os.utime(root / "images_256" / "00000009.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))   # rewritten?
    assert not find_similar(clf, root, "00000000.jpg").cache_hit
    with torch.no_grad():
        clf.net.backbone.conv1.weight.mul_(1.01)
    clf.save(ckpt)
    assert not find_similar(Classifier.load(ckpt), root, "00000000.jpg").cache_hit
    out = invoke("similar", "00000000.jpg", "--data", root, "--checkpoint", ckpt, "-k", 4, "--other-works",
                 "-o", tmp_path / "sheet.png", "--json")
    got = json.loads(out.output)
    assert got["cache_hit"] and [n["name"] for n in got["neighbours"]][0] == "00000030.jpg"
    assert Image.open(tmp_path / "sheet.png").size[0] > 4 * 128 and (tmp_path / "sheet.json").is_file()
    r = invoke("similar", SAMPLES / "sample_000.jpg",
               "--data", root, "--checkpoint", ckpt, "--other-works", "--json", ok=False)
    assert r.exit_code != 0 and "--work" in r.output


def one_line_error(r, *words):
    assert r.exit_code != 0
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_input_is_one_line_and_writes_nothing(sample_root, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    train = ["train-classifier", "--data", sample_root, "--resolution", 32, "--epochs", 1, "--outdir", runs]
    one_line_error(invoke(*train, "--arch", "resnet999", ok=False), "resnet999", "resnet18")
    one_line_error(invoke(*train, "--arch", "inception_v3", ok=False), "75")
    gan = tmp_path / "gan.pt"
    save_checkpoint(gan, Checkpoint("gan", {}, {}))
    one_line_error(invoke("evaluate-classifier", "--checkpoint", gan, "--data", sample_root, ok=False), "'gan'", "'classifier'")
    one_line_error(invoke("classify", sample_root / "images_256" / "00000000.jpg", ok=False), "train-classifier")
    # a root without the label
    nolabel = tmp_path / "nolabel"
    shutil.copytree(sample_root, nolabel)
    rows = list(csv.DictReader((nolabel / "labels.csv").open()))
    with (nolabel / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "gender", "set"])
        w.writerows([r["image"], r["gender"], r["set"]] for r in rows)
    one_line_error(invoke(*train[:2], nolabel, *train[3:], "--label", "status", ok=False), "status")
    # a root without its images
    noimg = tmp_path / "noimg"
    shutil.copytree(sample_root, noimg)
    shutil.rmtree(noimg / "images_256")
    one_line_error(invoke(*train[:2], noimg, *train[3:], ok=False), "images_256")
    # ImageNet weights asked for, offline, without the file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*a, **k):
        import urllib.error

        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    one_line_error(invoke(*train, "--pretrained", "imagenet", ok=False), "resnet18-f37072fd.pth",
                   str(tmp_path / "torch" / "hub" / "checkpoints"))
    one_line_error(invoke(*train, "--pretrained", tmp_path / "gan.pt", ok=False), "state dict")
    assert not runs.exists() or not any(runs.iterdir())


def test_imagenet_weights_come_from_the_hub_cache_and_heads_are_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import torchvision

    torch.manual_seed(5)
    ref = torchvision.models.resnet18()                    # stands in for the real ImageNet file
    path = imagenet_file("resnet18")
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("nothing may be downloaded"))
    net = build_network("resnet18", 4, "imagenet")
    assert torch.equal(net.backbone.conv1.weight, ref.conv1.weight)
    assert torch.equal(net.backbone.layer4[1].bn2.running_mean, ref.layer4[1].bn2.running_mean)
    assert net.head.out_features == 4 and isinstance(net.backbone.fc, torch.nn.Identity)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 4) and net.embed(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    # a local state dict FILE: its own 1000-class head is dropped, the rest loaded
    torch.save(ref.state_dict(), tmp_path / "mine.pth")
    assert torch.equal(build_network("resnet18", 2, str(tmp_path / "mine.pth")).backbone.conv1.weight, ref.conv1.weight)
    m = build_network("mobilenet_v2", 3)
    assert m.head.out_features == 3 and not any(getattr(x, "inplace", False) for x in m.modules())
    paper = {"vgg11", "alexnet", "resnet18", "resnet34", "mobilenet_v2", "densenet121", "inception_v3"}
    assert {a for a, v in ARCHS.items() if v.paper} == paper and len(ARCHS) > len(paper)
    with pytest.raises(KaogenError, match="unknown architecture"):
        build_network("vgg12", 2)
    assert sys.executable
