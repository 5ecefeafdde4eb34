"""Scores of a classifier on one side of a split: `kaogen evaluate-classifier`.

    ev = evaluate(Classifier.load("classifier.pt"), "kaokore", side="test")
    ev.scores.accuracy, ev.scores.macro_f1, ev.scores.precision, ev.scores.recall, ev.scores.confusion
    print(ev.report())          # per-class table, confusion, and the run beside the published numbers

The split defaults to the one the classifier was trained with (strategy, seed and fractions from
its checkpoint), so its test side is the faces it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from kaogen.classify.anchors import comparison_table
from kaogen.classify.bundle import Classifier
from kaogen.classify.data import load_faces
from kaogen.distributed import all_reduce_sum, dist_info
from kaogen.classify.scores import Scores, confusion_matrix, scores
from kaogen.device import autocast


@torch.no_grad()
def confusion_on(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 device, amp: bool = False, batch: int = 128) -> torch.Tensor:
    """Confusion (C, C) int64 on `device` of `net` over uint8 images (N, 3, R, R) with labels (N,).

    Under torchrun each rank scores every world-th face and the matrices are summed over ranks.
    Nothing is read back to the host here."""
    rank, world = dist_info()
    device = torch.device(device)
    was_training = net.training
    net.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    mine = torch.arange(rank, len(images), world)
    for i in range(0, len(mine), batch):
        idx = mine[i:i + batch]
        x = images[idx].to(device, non_blocking=True).float() / 255
        with autocast(device, amp):
            pred = net(x).float().argmax(1)
        cm += confusion_matrix(pred, labels[idx].to(device, non_blocking=True), num_classes)
    net.train(was_training)
    return all_reduce_sum(cm)


@dataclass
class Evaluation:
    scores: Scores
    arch: str
    label: str
    strategy: str
    side: str
    checkpoint: str

    def report(self) -> str:
        head = (f"{self.checkpoint}: {self.arch}, {self.label}, {self.strategy} split, {self.side} side "
                f"({self.scores.total:,} faces)")
        return "\n".join([head, self.scores.table(), "",
                          comparison_table(self.arch, self.label, self.scores.accuracy, self.strategy, self.side,
                                           self.scores.total)])

    def to_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "arch": self.arch, "label": self.label, "strategy": self.strategy,
                "side": self.side, **self.scores.to_dict()}


def evaluate(clf: Classifier, root: str | Path, strategy: str | None = None, side: str = "test",
             batch: int = 128, amp: bool = False) -> Evaluation:
    """Score `clf` on `side` of `strategy` (default: its own training split) of the KaoKore root `root`."""
    cfg = clf.config
    strategy = strategy or cfg.get("split", "official")
    same = strategy == cfg.get("split", "official")
    faces = load_faces(root, clf.label, side, strategy, seed=cfg.get("split_seed", 0) if same else 0,
                       fractions=cfg.get("split_fractions", (0.8, 0.1, 0.1)) if same else (0.8, 0.1, 0.1),
                       resolution=clf.resolution, size=cfg.get("size", 256))
    cm = confusion_on(clf.net, faces.images, faces.labels, len(clf.classes), clf.device, amp, batch)
    return Evaluation(scores(cm, clf.classes), clf.arch, clf.label, strategy, side,
                      str(getattr(clf, "path", "classifier")))
