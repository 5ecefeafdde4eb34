"""Classification scores from a confusion matrix.

    cm[i, j] = number of faces of true class i predicted as class j          (C, C) int64

    accuracy          = trace(cm) / sum(cm)
    precision[j]      = cm[j, j] / sum_i cm[i, j]      (0 when class j is never predicted)
    recall[i]         = cm[i, i] / sum_j cm[i, j]      (0 when class i has no face)
    f1[c]             = 2 precision recall / (precision + recall)   (0 when both are 0)
    macro_f1          = mean of f1 over the classes that have faces
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """pred, target int64 (N,) in [0, C) on any device -> (C, C) int64 on that device (no host sync)."""
    return torch.bincount(target * num_classes + pred, minlength=num_classes ** 2).view(num_classes, num_classes)


@dataclass
class Scores:
    classes: tuple[str, ...]
    confusion: list[list[int]]
    accuracy: float
    macro_f1: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]

    @property
    def total(self) -> int:
        return sum(self.support)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "confusion": self.confusion, "accuracy": self.accuracy,
                "macro_f1": self.macro_f1, "total": self.total,
                "per_class": {c: {"precision": p, "recall": r, "f1": f, "support": s}
                              for c, p, r, f, s in zip(self.classes, self.precision, self.recall, self.f1, self.support)}}

    def table(self) -> str:
        w = max(len(c) for c in self.classes + ("class",))
        lines = [f"accuracy {100 * self.accuracy:.2f} %   macro-F1 {100 * self.macro_f1:.2f} %   ({self.total:,} faces)",
                 f"{'class':{w}}  precision  recall     F1  support"]
        for c, p, r, f, s in zip(self.classes, self.precision, self.recall, self.f1, self.support):
            lines.append(f"{c:{w}}  {100 * p:8.2f}  {100 * r:6.2f}  {100 * f:5.2f}  {s:7,}")
        lines.append("confusion (rows: true, columns: predicted)")
        lines.append(f"{'':{w}}  " + "  ".join(f"{c[:8]:>8}" for c in self.classes))
        for c, row in zip(self.classes, self.confusion):
            lines.append(f"{c:{w}}  " + "  ".join(f"{v:>8,}" for v in row))
        return "\n".join(lines)


def scores(cm, classes: tuple[str, ...]) -> Scores:
    """Scores of a (C, C) confusion matrix (tensor or nested lists)."""
    cm = torch.as_tensor(cm, dtype=torch.float64).cpu()
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise ValueError(f"confusion matrix {tuple(cm.shape)} does not match {len(classes)} classes")
    tp = cm.diagonal()
    predicted, actual = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(tp))
    present = actual > 0
    total = float(cm.sum())
    return Scores(
        classes=tuple(classes),
        confusion=cm.long().tolist(),
        accuracy=float(tp.sum()) / total if total else 0.0,
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        precision=precision.tolist(), recall=recall.tolist(), f1=f1.tolist(), support=actual.long().tolist(),
    )
