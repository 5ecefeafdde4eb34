"""A trained face detector as one object: the torchvision model and how it reads pages.

    det = Detector.load("runs/00000-detector/detector.pt", device="cpu")
    boxes, scores = det.detect(page)       # page float32 (3, H, W) in [0, 1] at det.long_side
                                           # -> (N, 4) x0 y0 x1 y1 in its pixels, (N,) above det.threshold

File: a kaogen checkpoint of kind "detector" (state dicts + JSON, weights_only=True):
    config  {"spec": DetectorSpec fields, "patch": [w, h], "use_patches", "overlap", "threshold",
             "long_side": the long side of the pages it was trained on (pages are scaled to it)}
    state   {"model": the torchvision model's state dict}
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.detect.models import DetectorSpec, build_detector
from kaogen.detect.slicing import sliced_detect
from kaogen.errors import KaogenError

KIND = "detector"


class Detector:
    def __init__(self, model, spec: DetectorSpec, patch: tuple[int, int], use_patches: bool = True,
                 overlap: float = 0.2, threshold: float = 0.5, long_side: int | None = None, meta: dict | None = None):
        self.model, self.spec = model, spec
        self.patch, self.use_patches = (int(patch[0]), int(patch[1])), bool(use_patches)
        self.overlap, self.threshold, self.long_side = float(overlap), float(threshold), long_side
        self.meta = dict(meta or {})

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def config(self) -> dict:
        return {"spec": asdict(self.spec), "patch": list(self.patch), "use_patches": self.use_patches,
                "overlap": self.overlap, "threshold": self.threshold, "long_side": self.long_side}

    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        return save_checkpoint(path, Checkpoint(KIND, self.config(), {"model": self.model.state_dict()},
                                                {**self.meta, **(meta or {})}))

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> "Detector":
        ck = load_checkpoint(path, kind=KIND)
        cfg = ck.config
        try:
            spec = DetectorSpec(**{**cfg["spec"], "pretrained": "none"})
            model = build_detector(spec)
            model.load_state_dict(ck.state["model"])
        except KaogenError:
            raise
        except (KeyError, TypeError, RuntimeError) as e:
            raise KaogenError(f"{path} is a damaged detector checkpoint: {str(e).splitlines()[0][:160]}") from None
        return cls(model.to(device).eval(), spec, tuple(cfg["patch"]), cfg["use_patches"], cfg["overlap"],
                   cfg["threshold"], cfg.get("long_side"), ck.meta)

    @torch.no_grad()
    def detect(self, page: torch.Tensor, patched: bool | None = None, overlap: float | None = None,
               threshold: float | None = None, patch: tuple[int, int] | None = None, amp: bool = False):
        """Boxes (N, 4) and scores (N,) on `page` (see slicing.sliced_detect); `patched=False`: the whole
        page only (what the seed compares patching against)."""
        patched = self.use_patches if patched is None else patched
        boxes, scores = sliced_detect(self.model, page, (patch or self.patch) if patched else None,
                                      self.overlap if overlap is None else overlap, amp=amp)
        keep = scores >= (self.threshold if threshold is None else threshold)
        return boxes[keep], scores[keep]
