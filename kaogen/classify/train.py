"""`kaogen train-classifier`: the KaoKore paper's benchmark recipe, resumable, on one or several processes.

Each epoch:
  order:    a permutation of the training faces drawn from (seed, epoch) (with balance = "sampler":
            N draws with replacement, each face weighted 1 / its class's count); cut into global
            batches of `batch`, of which each torchrun process takes every world-th face
  step:     augmentation (random resized crop, horizontal flip; float32), the network under bfloat16
            autocast when `amp`, cross-entropy in float32 (class-weighted with balance = "loss"), Adam
  dev:      accuracy and macro-F1 on the dev side; the best dev accuracy's weights are classifier.pt
  stop:     after `epochs`, or `patience` epochs without a better dev accuracy
At the end the best epoch's classifier is scored on the test side: the paper's reported number.

Run folder (RUNS/NNNNN-classifier/): config.json, command.txt, last.pt (everything to resume
exactly: weights, Adam's moments, epoch, best dev accuracy, every rank's RNG states as CPU bytes),
classifier.pt (the best dev epoch: what evaluate-classifier, classify and similar load),
metrics.jsonl (one row per epoch), curves.png, confusion-dev.png, confusion-test.png, result.json.

Exactness: a run resumed from last.pt continues as the uninterrupted run does, bit for bit on the
CPU (epoch orders come from (seed, epoch), augmentation draws from the restored RNG states). On
CUDA some backward kernels are nondeterministic, so a resumed run is the same up to their
rounding unless torch.use_deterministic_algorithms(True) is set.
Host reads: the losses and counts stay on the device and are read back once per epoch.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from kaogen.atomic import atomic_write_text
from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.classify.bundle import Classifier
from kaogen.classify.config import ClassifierConfig
from kaogen.classify.confusion_plot import confusion_png
from kaogen.classify.data import Faces, class_names
from kaogen.distributed import all_gather_objects, all_reduce_sum, dist_info
from kaogen.classify.evaluate import confusion_on
from kaogen.classify.models import build_network, check_resolution
from kaogen.classify.scores import scores
from kaogen.device import autocast, restore_rng, rng_state
from kaogen.errors import KaogenError
from kaogen.plot import line_plot

SNAPSHOT_KIND = "classifier-train"


def epoch_order(labels: torch.Tensor, epoch: int, seed: int, balance: str, num_classes: int) -> torch.Tensor:
    """Indices (N,) int64 of one epoch's faces, from (seed, epoch) alone (the same on every rank)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    n = len(labels)
    if balance == "sampler":
        counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).double()
        return torch.multinomial((1.0 / counts)[labels], n, replacement=True, generator=g)
    return torch.randperm(n, generator=g)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """N / (C * count_c) per class (1 for a balanced set), float32 (C,); absent classes weigh 0."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    w = torch.where(counts > 0, len(labels) / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return w.float()


def initial_network(cfg: ClassifierConfig, seed: int):
    """The network a run starts from: `cfg.pretrained` weights and a head seeded by `seed` (the same on every rank)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_network(cfg.arch, len(class_names(cfg.label)), cfg.pretrained)


class ClassifierTrainer:
    """`net`: the network from `initial_network(cfg, seed)` when already built (the CLI builds it
    before the run folder exists, so that a missing weights file leaves nothing behind)."""

    def __init__(self, cfg: ClassifierConfig, train: Faces, dev: Faces, run: str | Path, device="cpu", seed: int = 0,
                 net=None):
        self.cfg, self.train_faces, self.dev_faces = cfg, train, dev
        self.run, self.device, self.seed = Path(run), torch.device(device), seed
        self.rank, self.world = dist_info()
        self.classes = class_names(cfg.label)
        C = len(self.classes)
        check_resolution(cfg.arch, cfg.resolution)
        if train.images.shape[-1] != cfg.resolution or dev.images.shape[-1] != cfg.resolution:
            raise KaogenError(f"faces are {train.images.shape[-1]} px, the config says {cfg.resolution}")
        self.global_batch = min(cfg.batch, len(train))
        self.local_batch = self.global_batch // self.world
        if self.local_batch < 2:
            raise KaogenError(f"batch {cfg.batch} over {self.world} processes leaves fewer than 2 faces per "
                              f"process (BatchNorm needs 2); {len(train)} training faces")
        self.steps_per_epoch = max(1, len(train) // self.global_batch)
        # --- construct: the same initial weights on every rank (seeded, and broadcast by DDP)
        self.net = (net if net is not None else initial_network(cfg, seed)).to(self.device)
        self.model = self.net
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                                    weight_decay=cfg.weight_decay)
        self.augment = self._augmentation() if cfg.augment else None
        weights = class_weights(train.labels, C) if cfg.balance == "loss" else torch.ones(C)
        self.loss_weight = weights.to(self.device)
        self.train_labels_dev = train.labels.to(self.device)
        torch.manual_seed(seed * 7919 + self.rank)     # augmentation and dropout draws: each rank its own
        self.epoch, self.best_dev, self.best_epoch, self.bad_epochs = 0, -1.0, -1, 0
        self.metrics = self.run / "metrics.jsonl"

    def _augmentation(self):
        import kornia.augmentation as K

        R = self.cfg.resolution
        return torch.nn.Sequential(
            K.RandomResizedCrop((R, R), scale=tuple(self.cfg.crop_scale), ratio=(3 / 4, 4 / 3)),
            K.RandomHorizontalFlip(),
        ).to(self.device)

    def classifier(self) -> Classifier:
        cfg = self.cfg
        return Classifier(self.net, {"arch": cfg.arch, "label": cfg.label, "classes": list(self.classes),
                                     "resolution": cfg.resolution, "size": cfg.size, "split": cfg.split,
                                     "split_seed": cfg.split_seed, "split_fractions": list(cfg.split_fractions)},
                          {"seed": self.seed, "data": str(self.train_faces.root.resolve())})

    # ------------------------------------------------------------------------------- state
    def snapshot(self) -> None:
        """Every rank's RNG state into last.pt (all ranks call this; rank 0 writes)."""
        rngs = all_gather_objects(rng_state(None, self.device))
        if self.rank != 0:
            return
        state = {"net": self.net.state_dict(), "opt": self.opt.state_dict(),
                 "rng": {str(r): st for r, st in enumerate(rngs)}}
        meta = {"epoch": self.epoch, "best_dev": self.best_dev, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "world": self.world, "seed": self.seed}
        save_checkpoint(self.run / "last.pt", Checkpoint(SNAPSHOT_KIND, asdict(self.cfg), state, meta))

    def resume(self) -> bool:
        path = self.run / "last.pt"
        if not path.is_file():
            return False
        ck = load_checkpoint(path, kind=SNAPSHOT_KIND)      # to the CPU: RNG states stay byte tensors
        for key in ("arch", "label", "resolution", "pretrained"):
            if ck.config.get(key) != getattr(self.cfg, key):
                raise KaogenError(f"{path} was trained with {key} = {ck.config.get(key)!r}, not "
                                  f"{getattr(self.cfg, key)!r}; start a new run")
        self.net.load_state_dict(ck.state["net"])
        self.opt.load_state_dict(ck.state["opt"])
        m = ck.meta
        self.epoch, self.best_dev, self.best_epoch, self.bad_epochs = m["epoch"], m["best_dev"], m["best_epoch"], m["bad_epochs"]
        rngs = ck.state["rng"]
        if m.get("world", 1) == self.world and str(self.rank) in rngs:
            restore_rng(rngs[str(self.rank)], None, self.device)
        else:   # another number of processes: each rank's state derived from (seed, rank, epoch)
            torch.manual_seed((self.seed * 7919 + self.rank) * 1_000_003 + self.epoch)
        if self.rank == 0 and self.metrics.is_file():   # rows newer than the snapshot are dropped
            keep = [ln for ln in self.metrics.read_text().splitlines() if ln.strip() and json.loads(ln)["epoch"] <= self.epoch]
            atomic_write_text(self.metrics, "".join(ln + "\n" for ln in keep))
        return True

    def replica_sums(self) -> list[float]:
        """Every rank's sum of weights and BatchNorm statistics (equal when replicas agree)."""
        total = sum(float(t.detach().double().sum()) for t in list(self.net.parameters()) + list(self.net.buffers())
                    if t.is_floating_point())
        return all_gather_objects(total)

    # ------------------------------------------------------------------------------- one epoch
    def train_epoch(self, bar=None) -> dict[str, float]:
        cfg, dev, C = self.cfg, self.device, len(self.classes)
        self.model.train()
        order = epoch_order(self.train_faces.labels, self.epoch, self.seed, cfg.balance, C)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.long, device=dev)
        seen = 0
        for step in range(self.steps_per_epoch):
            batch = order[step * self.global_batch:(step + 1) * self.global_batch]
            idx = batch[self.rank::self.world]                       # this rank's share of the global batch
            x = self.train_faces.images[idx].to(dev, non_blocking=True).float() / 255   # (b, 3, R, R) in [0, 1]
            y = self.train_labels_dev[idx.to(dev, non_blocking=True)]
            if self.augment is not None:
                x = self.augment(x)                                  # float32, outside autocast
            with autocast(dev, cfg.amp):
                logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y, weight=self.loss_weight)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(idx)
            if bar is not None:
                bar.update(1)
        if self.world > 1:
            # DDP broadcasts rank 0's BatchNorm statistics before each forward, so after the last step
            # each rank holds its own: take rank 0's now, before the dev pass and the snapshot
            for b in self.net.buffers():
                torch.distributed.broadcast(b.data, 0)
        totals = torch.stack([loss_sum, correct.to(loss_sum.dtype), torch.tensor(float(seen), device=dev)])
        train_loss, train_correct, seen = all_reduce_sum(totals).tolist()      # over ranks; the epoch's read-back
        return {"train_loss": train_loss / max(seen, 1), "train_accuracy": train_correct / max(seen, 1)}

    # ------------------------------------------------------------------------------- loop
    def train(self, progress: bool = True) -> dict:
        cfg = self.cfg
        self.run.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=cfg.epochs * self.steps_per_epoch, initial=min(self.epoch, cfg.epochs) * self.steps_per_epoch,
                   unit="step", desc=f"{cfg.arch} {cfg.label}", disable=not progress or self.rank != 0)
        while self.epoch < cfg.epochs and not (cfg.patience and self.bad_epochs >= cfg.patience):
            t0 = time.time()
            row = self.train_epoch(bar)
            cm = confusion_on(self.net, self.dev_faces.images, self.dev_faces.labels, len(self.classes), self.device,
                              cfg.amp, cfg.eval_batch)
            dev = scores(cm, self.classes)
            self.epoch += 1
            better = dev.accuracy > self.best_dev
            if better:
                self.best_dev, self.best_epoch, self.bad_epochs = dev.accuracy, self.epoch, 0
            else:
                self.bad_epochs += 1
            sums = self.replica_sums() if self.world > 1 else []
            if len(set(sums)) > 1:
                raise KaogenError(f"the training processes' networks differ after epoch {self.epoch}: {sums}")
            if self.rank == 0:
                row = {"epoch": self.epoch, **row, "dev_accuracy": dev.accuracy, "dev_macro_f1": dev.macro_f1,
                       "best": better, "sec": time.time() - t0, **({"replica_sums": sums} if sums else {})}
                with open(self.metrics, "a") as f:      # the row first: a resume drops rows newer than last.pt
                    f.write(json.dumps(row) + "\n")
                if better:
                    self.classifier().save(self.run / "classifier.pt", {"epoch": self.epoch, "dev_accuracy": dev.accuracy})
                    confusion_png(dev, self.run / "confusion-dev.png",
                                  f"dev, epoch {self.epoch}: accuracy {100 * dev.accuracy:.2f} %, macro-F1 {100 * dev.macro_f1:.2f} %")
                self.write_curves()
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", dev=f"{100 * dev.accuracy:.1f}%")
            self.snapshot()
        bar.close()
        return {"epochs": self.epoch, "best_epoch": self.best_epoch, "dev_accuracy": self.best_dev,
                "stopped_early": self.epoch < cfg.epochs}

    def write_curves(self) -> None:
        rows = [json.loads(ln) for ln in self.metrics.read_text().splitlines() if ln.strip()]
        line_plot({k: [(r["epoch"], r[k]) for r in rows] for k in ("train_loss", "train_accuracy", "dev_accuracy", "dev_macro_f1")},
                  self.run / "curves.png")

    def finish(self, test: Faces | None) -> dict:
        """Score the best dev epoch's classifier on the test side; write result.json and confusion-test.png.
        Every rank calls this (the test faces are shared out); rank 0 writes."""
        result = {"epochs": self.epoch, "best_epoch": self.best_epoch, "dev_accuracy": self.best_dev,
                  "stopped_early": self.epoch < self.cfg.epochs}
        if self.world > 1:
            torch.distributed.barrier()              # rank 0 has written classifier.pt
        clf = Classifier.load(self.run / "classifier.pt", self.device)
        if test is not None:
            cm = confusion_on(clf.net, test.images, test.labels, len(self.classes), self.device, self.cfg.amp, self.cfg.eval_batch)
            ts = scores(cm, self.classes)
            result["test"] = ts.to_dict()
            result["test_accuracy"] = ts.accuracy
            if self.rank == 0:
                confusion_png(ts, self.run / "confusion-test.png",
                              f"test (best dev epoch {self.best_epoch}): accuracy {100 * ts.accuracy:.2f} %")
                clf.save(self.run / "classifier.pt", {"test_accuracy": ts.accuracy, "test_faces": ts.total})
        if self.rank == 0:
            atomic_write_text(self.run / "result.json", json.dumps(result, indent=2) + "\n")
        return result
