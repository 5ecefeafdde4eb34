"""Typed configs of the StyleGAN2 trainer (`configs/gan/*.toml` override any field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class NetworkConfig:
    resolution: int = 256             # 32 .. 1024, a power of 2
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 16384         # channels at resolution r: min(channel_base / r, channel_max)
    channel_max: int = 512
    num_classes: int = 0              # 0: unconditional; else one-hot labels embedded into the mapping
    mbstd_group: int = 4
    cmap_dim: int = 0                 # conditional D: projection size (0: channels at 4 x 4, the official default)
    resample: Literal["aligned", "legacy"] = "aligned"   # legacy: kaogen <= 0.1's shifted upsampler (old checkpoints)


@dataclass
class GANConfig:
    """Training settings. Lazy regularisation as the official trainer: every r1_every (pl_every)
    steps a separate optimiser step on the regulariser alone, weighted by the interval, with Adam's
    learning rate and betas scaled by k / (k + 1) to keep the total step budget."""

    net: NetworkConfig = field(default_factory=NetworkConfig)
    cond: Literal["none", "gender", "status"] = "none"
    batch: int = 32
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float | Literal["auto"] = "auto"   # R1 weight; auto: 0.0002 res^2 / batch (the official `auto`)
    r1_every: int = 16
    pl_weight: float = 2.0            # path length regularisation (lazy: every pl_every steps)
    pl_every: int = 4
    pl_decay: float = 0.01
    style_mixing: float = 0.9
    ema_kimg: float = 10.0            # generator EMA half-life in thousands of images (official auto: batch * 10 / 32)
    ema_rampup: float = 0.05          # half-life at most this fraction of the images shown so far (0: no ramp-up)
    augment: Literal["ada", "diffaugment", "none"] = "ada"
    ada_target: float = 0.6           # target of E[sign(D(real))]
    ada_interval: int = 4             # steps between adjustments of p
    ada_kimg: float = 500.0           # p can go from 0 to 1 in this many thousand images (official: 500)
    ada_ops: str = "bgc"              # pipeline groups: b pixel blitting, g geometric, c colour (kaogen/gan/ada.py)
    xflip: bool = True
    kimg: float = 1000.0              # training length in thousands of real images shown
    snapshot_kimg: float = 10.0       # checkpoint + sample grid every this many kimg
    keep: int = 3                     # snapshots kept
    amp: bool = True                  # mixed precision: bfloat16 autocast on any device (CPU too)
    workers: int = 2

    def r1(self) -> float:
        """The R1 weight in use: the number, or the official `auto` formula 0.0002 * res^2 / batch."""
        if self.r1_gamma == "auto":
            return 0.0002 * self.net.resolution ** 2 / self.batch
        return float(self.r1_gamma)
