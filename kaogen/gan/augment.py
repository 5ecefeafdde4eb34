"""Data-efficient GAN training: the run's augmentation (ADA's adaptive p, or DiffAugment).

Images are (B, 3, H, W) in [-1, 1]; every transform is differentiable, so the generator learns
through the augmentation of its fakes, and the same pipeline is applied to reals and fakes (which is
what keeps augmentations from leaking into the generated images, Karras et al. 2020).

ADA (the pipeline: kaogen/gan/ada.py): each transform fires with probability p. Every `interval`
steps, r_t = E[sign(D(augmented reals))] is compared to the target (0.6): p goes up when the
discriminator is too sure of the reals (overfitting) and down otherwise, by
batch * interval / (ada_kimg * 1000) (official defaults: target 0.6, interval 4, ada_kimg 500).
"""

from __future__ import annotations

import math

import torch

from kaogen.gan.ada import augment, check_ops


def diffaugment(x: torch.Tensor) -> torch.Tensor:
    """DiffAugment 'color,translation,cutout' (Zhao et al. 2020), always on."""
    B = x.shape[0]
    dev = x.device
    x = x + (torch.rand(B, 1, 1, 1, device=dev) - 0.5)
    mean = x.mean(1, keepdim=True)
    x = (x - mean) * (torch.rand(B, 1, 1, 1, device=dev) * 2) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * (torch.rand(B, 1, 1, 1, device=dev) + 0.5) + mean
    H, W = x.shape[2:]
    sx, sy = int(W * 0.125 + 0.5), int(H * 0.125 + 0.5)
    tx = torch.randint(-sx, sx + 1, (B, 1, 1), device=dev)
    ty = torch.randint(-sy, sy + 1, (B, 1, 1), device=dev)
    gy, gx = torch.meshgrid(torch.arange(H, device=dev), torch.arange(W, device=dev), indexing="ij")
    gx = (gx[None] + tx).clamp(0, W - 1)
    gy = (gy[None] + ty).clamp(0, H - 1)
    idx = (gy * W + gx).view(B, 1, -1).expand(-1, 3, -1)
    x = x.flatten(2).gather(2, idx).view(B, 3, H, W)
    cx = torch.randint(0, W, (B, 1, 1), device=dev)
    cy = torch.randint(0, H, (B, 1, 1), device=dev)
    keep = ((torch.arange(W, device=dev)[None, None, :] - cx).abs() >= W // 4) | \
           ((torch.arange(H, device=dev)[None, :, None] - cy).abs() >= H // 4)
    return x * keep[:, None].to(x.dtype)


class Augment:
    """The augmentation of a run: kind 'ada' (adaptive p), 'diffaugment' or 'none'; p is part of the state."""

    def __init__(self, kind: str, target: float = 0.6, interval: int = 4, ada_kimg: float = 500.0, ops: str = "bgc"):
        self.kind, self.target, self.interval, self.ada_kimg, self.ops = kind, target, interval, ada_kimg, check_ops(ops)
        self.p = 0.0
        self._stat: torch.Tensor | None = None      # (sum of signs, count) since the last adjustment
        self._calls = 0
        self.rt = float("nan")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) in [-1, 1], any dtype -> float32 (B, 3, H, W).

        Always float32, outside any autocast region: sampling grids and colour matrices built in
        bfloat16 are off by up to 0.66 px at 256 px."""
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if self.kind == "ada":
                return augment(x, self.p, self.ops)
            if self.kind == "diffaugment":
                return diffaugment(x)
            return x

    def observe(self, real_logits: torch.Tensor, batch: int) -> None:
        """Accumulate sign(D(real)) over every process; every `interval` calls, move p toward r_t = target.

        The sums stay on the logits' device (no host synchronisation but the one per interval) and,
        under torchrun, are summed over ranks at every call, so every replica holds the same
        statistics and the same p."""
        if self.kind != "ada":
            return
        signs = real_logits.detach().float().sign()
        stat = torch.stack([signs.sum(), torch.full((), signs.numel(), dtype=torch.float32, device=signs.device)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stat)
        self._stat = stat if self._stat is None else self._stat.to(stat.device) + stat
        self._calls += 1
        if self._calls >= self.interval:
            total, count = self._stat.tolist()
            self.rt = total / max(count, 1.0)
            step = batch * self.interval / (self.ada_kimg * 1000)
            self.p = float(min(1.0, max(0.0, self.p + math.copysign(step, self.rt - self.target))))
            self._stat, self._calls = None, 0

    def state(self) -> dict:
        total, count = self._stat.tolist() if self._stat is not None else (0.0, 0.0)
        return {"p": self.p, "rt": self.rt, "sign_sum": total, "sign_count": count, "calls": self._calls}

    def load(self, d: dict) -> None:
        self.p, self.rt = float(d["p"]), float(d["rt"])
        self._stat, self._calls = None, int(d.get("calls", 0))
        if self._calls:
            self._stat = torch.tensor([float(d["sign_sum"]), float(d["sign_count"])])
