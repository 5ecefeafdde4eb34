"""StyleGAN2 networks in pure PyTorch (Karras et al. 2020, config F with skip generator / residual D).

    G = Generator(cfg);  img = G(z, c)            z (B, z_dim) ~ N(0, 1), c (B, num_classes) one-hot or (B, 0)
                                                  -> img (B, 3, R, R), roughly in [-1, 1]
    w = G.mapping(z, c, truncation=0.7)           (B, num_ws, w_dim): one w per synthesis layer (+ toRGB)
    img = G.synthesis(w, noise="const")           styles can be mixed per layer
    D = Discriminator(cfg);  logits = D(img, c)   (B,)

Equalised learning rate: weights are stored N(0, 1) and scaled by 1/sqrt(fan_in) at run time, so
Adam's step is the same for every layer (as the reference). Modulated convolution: weights scaled
per sample by the style, then demodulated to unit output variance, run as one grouped convolution.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from kaogen.gan.config import NetworkConfig
from kaogen.gan.resample import downsample2d, legacy_upsample2d, setup_filter, upfirdn2d, upsample2d


def channels(cfg: NetworkConfig, res: int) -> int:
    return int(min(cfg.channel_base // res, cfg.channel_max))


class EqLinear(nn.Module):
    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(cin), lr_mul, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.act else x


class EqConv2d(nn.Module):
    """Equalised convolution; `down=True` halves the size, aligned: a 1 x 1 kernel downsamples first
    (FIR, decimate) then convolves; a k x k kernel filters (FIR, pad k // 2 + 1) then convolves with
    stride 2 and no padding (StyleGAN2's conv2d_resample)."""

    def __init__(self, cin: int, cout: int, k: int, act: bool = True, down: bool = False, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.act, self.down, self.k = 1 / math.sqrt(cin * k * k), act, down, k
        self.register_buffer("fir", setup_filter(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, p = self.weight * self.scale, self.k // 2
        if not self.down:
            x = F.conv2d(x, w, self.bias, padding=p)
        elif self.k == 1:
            x = F.conv2d(downsample2d(x, self.fir), w, self.bias)
        else:
            x = F.conv2d(upfirdn2d(x, self.fir, pad=(p + 1,) * 4), w, self.bias, stride=2)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.act else x


class MappingNetwork(nn.Module):
    def __init__(self, cfg: NetworkConfig, num_ws: int):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_classes = cfg.z_dim, cfg.w_dim, num_ws, cfg.num_classes
        self.embed = EqLinear(cfg.num_classes, cfg.w_dim) if cfg.num_classes else None
        cin = cfg.z_dim + (cfg.w_dim if cfg.num_classes else 0)
        layers = []
        for i in range(cfg.mapping_layers):
            layers.append(EqLinear(cin if i == 0 else cfg.w_dim, cfg.w_dim, lr_mul=0.01, act=True))
        self.net = nn.Sequential(*layers)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    @staticmethod
    def _norm(x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation: float = 1.0,
                track_w_avg: bool = False) -> torch.Tensor:
        """z (B, z_dim), c (B, num_classes) -> ws (B, num_ws, w_dim), always float32.

        The mapping runs in float32 even inside an autocast region (W is where truncation, the
        latent average and the path-length penalty live; the official networks keep it float32 too)."""
        with torch.autocast(z.device.type, enabled=False):
            x = self._norm(z.float())
            if self.embed is not None:
                x = torch.cat([x, self._norm(self.embed(c.float()))], 1)
            w = self.net(x)
            if track_w_avg:
                self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, 0.995))
            if truncation != 1:
                w = self.w_avg.lerp(w, truncation)
        return w[:, None].expand(-1, self.num_ws, -1)


class ModulatedConv(nn.Module):
    """Style-modulated 3x3 (or 1x1) convolution with optional demodulation and 2x upsampling."""

    def __init__(self, cin: int, cout: int, w_dim: int, k: int = 3, demod: bool = True, up: bool = False,
                 legacy: bool = False):
        super().__init__()
        self.legacy = legacy
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.affine = EqLinear(w_dim, cin, bias_init=1.0)
        self.scale, self.demod, self.up, self.pad = 1 / math.sqrt(cin * k * k), demod, up, k // 2
        self.register_buffer("fir", setup_filter(), persistent=False)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
        """weight (groups * cout, cin, k, k). up: transposed convolution with stride 2 (zero insertion
        and the kernel in one), then the [1, 3, 3, 1] FIR with gain 4: aligned, as StyleGAN2."""
        if not self.up:
            return F.conv2d(x, weight, padding=self.pad, groups=groups)
        if self.legacy:
            return F.conv2d(legacy_upsample2d(x), weight, padding=self.pad, groups=groups)
        co, ci, k, _ = weight.shape
        wt = weight.reshape(groups, co // groups, ci, k, k).transpose(1, 2).reshape(groups * ci, co // groups, k, k)
        x = F.conv_transpose2d(x, wt.flip(2, 3), stride=2, groups=groups)
        return upfirdn2d(x, self.fir, pad=(self.pad,) * 4, gain=4)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """x (B, cin, H, W), w (B, w_dim) -> (B, cout, H', W').

        fused=False (default) scales the activations by the style, convolves with the shared weight
        and scales the output by the demodulation coefficients: one large convolution, much faster
        on CPUs. fused=True builds per-sample weights and runs one grouped convolution (the
        formulation of the paper); both give the same result (tested).
        """
        B, C, H, W = x.shape
        style = self.affine(w)                                                  # (B, cin)
        if not fused:
            weight = self.weight * self.scale
            x = x * style[:, :, None, None].to(x.dtype)
            out = self._conv(x, weight)
            if self.demod:
                d = torch.rsqrt((weight[None] * style[:, None, :, None, None]).square().sum((2, 3, 4)) + 1e-8)
                out = out * d[:, :, None, None].to(out.dtype)     # bf16 activations stay bf16 under amp
            return out
        weight = self.weight[None] * self.scale * style[:, None, :, None, None]  # (B, cout, cin, k, k)
        if self.demod:
            weight = weight * torch.rsqrt(weight.square().sum((2, 3, 4), keepdim=True) + 1e-8)
        out = self._conv(x.reshape(1, B * C, *x.shape[2:]), weight.reshape(-1, C, *weight.shape[3:]), groups=B)
        return out.reshape(B, -1, *out.shape[2:])


class SynthesisLayer(nn.Module):
    def __init__(self, cin: int, cout: int, w_dim: int, res: int, up: bool = False, legacy: bool = False):
        super().__init__()
        self.conv = ModulatedConv(cin, cout, w_dim, up=up, legacy=legacy)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("noise_const", torch.randn(1, 1, res, res))
        self.res = res

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: str = "random") -> torch.Tensor:
        x = self.conv(x, w)
        if noise == "random":
            x = x + torch.randn(x.shape[0], 1, self.res, self.res, device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return F.leaky_relu(x + self.bias[None, :, None, None].to(x.dtype), 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    def __init__(self, cin: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv(cin, 3, w_dim, k=1, demod=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # the skip image accumulates in float32 (as the official networks), features may be bf16
        return self.conv(x, w).float() + self.bias[None, :, None, None]


class Generator(nn.Module):
    """Mapping network + skip-architecture synthesis network from 4 x 4 up to cfg.resolution."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        if cfg.resolution < 8 or 2 ** int(round(math.log2(cfg.resolution))) != cfg.resolution:
            raise ValueError(f"resolution must be a power of 2 >= 8, not {cfg.resolution}")
        self.cfg = cfg
        self.resolutions = [2 ** i for i in range(2, int(math.log2(cfg.resolution)) + 1)]
        c4 = channels(cfg, 4)
        self.const = nn.Parameter(torch.randn(c4, 4, 4))
        self.layers, self.torgbs = nn.ModuleList(), nn.ModuleList()
        self.layers.append(SynthesisLayer(c4, c4, cfg.w_dim, 4))
        self.torgbs.append(ToRGB(c4, cfg.w_dim))
        for res in self.resolutions[1:]:
            cin, cout = channels(cfg, res // 2), channels(cfg, res)
            self.layers.append(SynthesisLayer(cin, cout, cfg.w_dim, res, up=True, legacy=cfg.resample == "legacy"))
            self.layers.append(SynthesisLayer(cout, cout, cfg.w_dim, res))
            self.torgbs.append(ToRGB(cout, cfg.w_dim))
        # w index of each layer: conv layers use 0, 1, 2, ...; a block's toRGB shares the next index
        self.num_ws = len(self.layers) + 1
        self.mapping = MappingNetwork(cfg, self.num_ws)
        self.register_buffer("fir", setup_filter(), persistent=False)

    def synthesis(self, ws: torch.Tensor, noise: str = "random") -> torch.Tensor:
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], noise)
        img = self.torgbs[0](x, ws[:, 1])
        li = 1
        for b in range(1, len(self.resolutions)):
            x = self.layers[li](x, ws[:, li], noise)
            x = self.layers[li + 1](x, ws[:, li + 1], noise)
            up = legacy_upsample2d(img) if self.cfg.resample == "legacy" else upsample2d(img, self.fir)
            img = up + self.torgbs[b](x, ws[:, li + 2])
            li += 2
        return img

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation: float = 1.0,
                noise: str = "random") -> torch.Tensor:
        return self.synthesis(self.mapping(z, c, truncation), noise)


class MinibatchStd(nn.Module):
    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        G = min(self.group, B)
        while B % G:
            G -= 1
        y = x.float().reshape(G, -1, C, H, W)                                    # statistics in float32
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))             # (B / G,)
        y = y.repeat(G)[:, None, None, None].expand(B, 1, H, W)
        return torch.cat([x, y.to(x.dtype)], 1)


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = EqConv2d(cin, cin, 3)
        self.conv1 = EqConv2d(cin, cout, 3, down=True)
        self.skip = EqConv2d(cin, cout, 1, act=False, down=True, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) / math.sqrt(2)


class LabelMapping(nn.Module):
    """The conditional discriminator's label mapping (StyleGAN2-ADA): embed the one-hot label,
    normalise its second moment, then 8 equalised layers (learning rate x 0.01) to cmap_dim.

    c (B, num_classes) -> cmap (B, cmap_dim)."""

    def __init__(self, num_classes: int, cmap_dim: int, layers: int = 8):
        super().__init__()
        self.embed = EqLinear(num_classes, cmap_dim)
        self.net = nn.Sequential(*[EqLinear(cmap_dim, cmap_dim, lr_mul=0.01, act=True) for _ in range(layers)])

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.net(MappingNetwork._norm(self.embed(c)))


class Discriminator(nn.Module):
    """Residual discriminator: fromRGB, blocks down to 4 x 4, minibatch std, conv, fc, output.
    Conditional: the output has cmap_dim channels, projected onto the label's mapping and
    normalised by sqrt(cmap_dim) (the official conditioning)."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg
        R = cfg.resolution
        self.fromrgb = EqConv2d(3, channels(cfg, R), 1)
        blocks, res = [], R
        while res > 4:
            blocks.append(DBlock(channels(cfg, res), channels(cfg, res // 2)))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = channels(cfg, 4)
        self.mbstd = MinibatchStd(cfg.mbstd_group)
        self.conv = EqConv2d(c4 + 1, c4, 3)
        self.fc = EqLinear(c4 * 16, c4, act=True)
        cmap = (cfg.cmap_dim or c4) if cfg.num_classes else 1
        self.out = EqLinear(c4, cmap)
        self.embed = LabelMapping(cfg.num_classes, cmap) if cfg.num_classes else None

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.blocks(self.fromrgb(img))
        x = self.fc(self.conv(self.mbstd(x)).flatten(1))
        x = self.out(x)
        if self.embed is not None:
            return (x * self.embed(c)).sum(1) / np.sqrt(x.shape[1])
        return x.squeeze(1)
