"""Nakano's neural painter: a GAN generator from a brush action (+ noise) to the stroke it paints.

    G(shape (B, 9) in [0, 1], noise (B, Z)) -> alpha (B, 64, 64) in [0, 1]
    D(alpha (B, 64, 64), shape (B, 9)) -> score (B,)     action-conditioned WGAN-GP critic (projection)

The generator is trained with the critic's adversarial loss plus a pixel reconstruction loss against
libmypaint's stroke for the same action; the noise carries the brush's grain (pencil texture), which
the pixel loss alone would average away. Colour is not the painter's business (see actions.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kaogen.checkpoint import Checkpoint, checkpoints_dir, load_checkpoint, save_checkpoint
from kaogen.errors import KaogenError
from kaogen.ist import actions as A

KIND = "neural-painter"


def _with_coords(x: torch.Tensor) -> torch.Tensor:
    """Append x, y pixel-centre planes in [0, 1] (CoordConv): strokes land where their action says."""
    B, _, H, W = x.shape
    r = (torch.arange(H, device=x.device, dtype=x.dtype) + 0.5) / H
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.cat([x, torch.stack([xx, yy])[None].expand(B, 2, H, W)], 1)


class Generator(nn.Module):
    """Fully connected layers to a 16 x 16 x 16 block, then two (conv, conv, 2x pixel shuffle) stages
    and a last conv at 64 px: about 14 M multiply-adds per stroke, so that hundreds of strokes are
    optimised together on a CPU."""

    def __init__(self, noise: int = 8, width: int = 16):
        super().__init__()
        self.noise, self.width = noise, width
        self.fc = nn.Sequential(nn.Linear(len(A.SHAPE) + noise, 512), nn.ReLU(), nn.Linear(512, 1024), nn.ReLU(),
                                nn.Linear(1024, width * 16 * 16), nn.ReLU())
        w = width
        self.s16 = nn.Sequential(nn.Conv2d(w + 2, 2 * w, 3, 1, 1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.PixelShuffle(2))
        self.s32 = nn.Sequential(nn.Conv2d(w // 2 + 2, w, 3, 1, 1), nn.ReLU(), nn.Conv2d(w, w, 3, 1, 1), nn.PixelShuffle(2))
        self.s64 = nn.Sequential(nn.Conv2d(w // 4 + 2, w // 2, 3, 1, 1), nn.ReLU(), nn.Conv2d(w // 2, 1, 3, 1, 1))

    def logits(self, shape: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([shape, z], 1)).view(-1, self.width, 16, 16)
        h = F.relu(self.s16(_with_coords(h)))
        h = F.relu(self.s32(_with_coords(h)))
        return self.s64(_with_coords(h)).squeeze(1)

    def forward(self, shape: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """shape (B, 9), z (B, noise) -> alpha (B, 64, 64) in [0, 1]."""
        return torch.sigmoid(self.logits(shape, z))


class Critic(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        c = [1 + 2, width, 2 * width, 4 * width, 8 * width]
        layers = []
        for i in range(4):
            layers += [nn.Conv2d(c[i], c[i + 1], 4, 2, 1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)                      # 64 -> 4
        self.head = nn.Linear(c[-1] * 16, 1)
        self.embed = nn.Linear(len(A.SHAPE), c[-1] * 16)            # projection discriminator

    def forward(self, alpha: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        h = self.features(_with_coords(alpha[:, None])).flatten(1)
        return self.head(h).squeeze(1) + (self.embed(shape) * h).sum(1) / h.shape[1] ** 0.5


class NeuralPainter:
    """A trained generator with its brush name, as stored in a "neural-painter" checkpoint."""

    def __init__(self, gen: Generator, brush: str, source: str = ""):
        self.gen, self.brush, self.source = gen.eval(), brush, source

    def __call__(self, shape: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.gen(shape, z)

    def to(self, device) -> "NeuralPainter":
        self.gen.to(device)
        return self

    def save(self, path, meta: dict | None = None, half: bool = False):
        cfg = {"noise": self.gen.noise, "width": self.gen.width, "brush": self.brush, "canvas": A.CANVAS}
        return save_checkpoint(path, Checkpoint(KIND, cfg, {"generator": self.gen.state_dict()}, meta or {}), half=half)

    @classmethod
    def load(cls, path, device="cpu") -> "NeuralPainter":
        ck = load_checkpoint(path, kind=KIND)
        gen = Generator(ck.config["noise"], ck.config["width"])
        try:
            gen.load_state_dict(ck.state["generator"])
        except (KeyError, RuntimeError) as e:
            raise KaogenError(f"{path}: the painter's weights do not fit its config ({str(e).splitlines()[0][:120]})") from None
        return cls(gen, ck.config["brush"], str(path)).to(device)


def shipped_painter(brush: str, device="cpu") -> NeuralPainter:
    """The painter shipped in checkpoints/ for `brush` (painter-<brush with / as ->.pt)."""
    path = checkpoints_dir() / f"painter-{brush.replace('/', '-')}.pt"
    if not path.is_file():
        known = sorted(p.stem[len("painter-"):].replace("-", "/", 1) for p in checkpoints_dir().glob("painter-*.pt"))
        raise KaogenError(f"no shipped neural painter for brush {brush!r} (shipped: {', '.join(known) or 'none'}); "
                          "pass --checkpoint (train one with `kaogen train-painter`)")
    return NeuralPainter.load(path, device)
