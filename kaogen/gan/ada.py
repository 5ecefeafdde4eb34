"""The ADA augmentation pipeline (Karras et al. 2020, 'bgc'): pixel blitting, geometric, colour.

    y = augment(x, p, ops="bgc", generator=None)      x (B, 3, H, W) in [-1, 1] (any values: no
                                                      clamping) -> y float32 (B, 3, H, W), differentiable in x
    params = sample_params(B, p, ops, generator, device)   the per-image draws, for tests and inspection

Every op fires independently per image with probability p (the official multipliers are all 1);
the two rotations each fire with 1 - sqrt(1 - p), so that "some rotation" fires with p. The official
distributions:

    group  op           parameter (per image)                          as a transform
    b      xflip        i ~ U{0, 1}                                    x -> -x
    b      rotate90     i ~ U{0, 1, 2, 3}                              rotation by i * 90 degrees
    b      xint         t ~ U(-0.125, 0.125)^2, rounded to whole px    translation by (t_x W, t_y H)
    g      scale        s = 2^N(0, 0.2^2)                              isotropic scale s
    g      rotate       theta ~ U(-180, 180) degrees (before aniso)    rotation
    g      aniso        s = 2^N(0, 0.2^2)                              scale (s, 1 / s)
    g      rotate       theta ~ U(-180, 180) degrees (after aniso)     rotation
    g      xfrac        t ~ N(0, 0.125^2)^2                            translation by (t_x W, t_y H)
    c      brightness   b ~ N(0, 0.2^2)                                rgb + b
    c      contrast     c = 2^N(0, 0.5^2)                              rgb * c (about mid-grey)
    c      lumaflip     i ~ U{0, 1}                                    reflect rgb through the grey plane
    c      hue          theta ~ U(-180, 180) degrees                   rotate rgb about the grey axis
    c      saturation   s = 2^N(0, 1)                                  scale rgb away from the grey axis

How it is executed (pure PyTorch; kornia is not used here: it has no composed single-resample
warp with a band-limited intermediate, and its per-op augmentations synchronise with the host
hundreds of times per call):

  * b, exactly: flips, quarter turns and whole-pixel shifts are an index map (reflection at the
    borders), applied with one gather: no resampling, no blur.
  * g, once: the five geometric ops are composed into one 3 x 3 matrix per image; the image is
    padded by reflection as far as the transform reaches, upsampled 2x with a 16-tap Kaiser-windowed
    (beta 6) half-band low-pass, sampled bilinearly on a 2x grid a few pixels larger than the output
    on every side, downsampled 2x with the same filter and cropped (so the filter never reads zeros
    at the output's edge: a flat image stays flat). The 2x intermediate keeps bilinear interpolation
    from blurring the band below half Nyquist. Images none of whose geometric ops fired keep their
    pixels exactly. (Filter chosen by measurement on the sample faces at 256 px, turned by any angle
    and shifted by a fraction of a pixel: energy between half Nyquist and Nyquist kept, against the
    input, under a Hann window: 16 taps beta 6 0.72, beta 8 0.68, 12 taps 0.62, 24 taps 0.75 at 1.5x
    the cost; one bilinear resample at 1x 0.51; the identity round trip alone keeps 0.93 at 16 taps.)
  * c: the colour ops are composed into one 3 x 3 matrix and offset per image, applied once.

Host synchronisation: one read-back per call with g (how far to pad), none otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from kaogen.errors import KaogenError
from kaogen.gan.resample import downsample2d, upsample2d

OPS = {"b": ("xflip", "rotate90", "xint"), "g": ("scale", "rotate", "aniso", "xfrac"),
       "c": ("brightness", "contrast", "lumaflip", "hue", "saturation")}
XINT_MAX, SCALE_STD, ROTATE_MAX, ANISO_STD, XFRAC_STD = 0.125, 0.2, 1.0, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, HUE_MAX, SATURATION_STD = 0.2, 0.5, 1.0, 1.0
LOWPASS_TAPS = 16


def lowpass(taps: int = LOWPASS_TAPS, beta: float = 6.0) -> torch.Tensor:
    """Half-band low-pass for a 2x grid (cutoff at the original Nyquist): windowed sinc, sum 1."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(n / 2) * np.kaiser(taps, beta)
    return torch.from_numpy(h / h.sum()).float()


_LOWPASS: dict[torch.device, torch.Tensor] = {}


def _lowpass_on(device) -> torch.Tensor:
    """The filter, copied to each device once (a host-to-device copy per call would synchronise)."""
    device = torch.device(device)
    if device not in _LOWPASS:
        _LOWPASS[device] = lowpass().to(device)
    return _LOWPASS[device]


def check_ops(ops: str) -> str:
    bad = sorted(set(ops) - set(OPS))
    if bad or not ops:
        raise KaogenError(f"augmentation ops {ops!r}: use any of the groups 'b' (pixel blitting), 'g' (geometric), "
                          f"'c' (colour), e.g. 'bgc'; {''.join(bad) or 'nothing'} is not one")
    return ops


# ----------------------------------------------------------------------------------------- draws
def sample_params(batch: int, p: float, ops: str = "bgc", generator: torch.Generator | None = None,
                  device="cpu") -> dict[str, torch.Tensor]:
    """Every op's parameter per image (B,) or (B, 2), already set to the identity where the op does
    not fire. Drawn in two calls (uniforms, normals) on the generator's device, moved once."""
    check_ops(ops)
    gdev = generator.device if generator is not None else torch.device(device)
    u = torch.rand(batch, 24, generator=generator, device=gdev).to(device)
    n = torch.randn(batch, 9, generator=generator, device=gdev).to(device)
    p_rot = 1 - math.sqrt(max(1 - p, 0.0))
    on = lambda j, prob=p: u[:, j] < prob                 # noqa: E731  (op j fires)
    out: dict[str, torch.Tensor] = {}
    if "b" in ops:
        out["xflip"] = torch.where(on(0), (u[:, 12] * 2).floor(), 0.0)
        out["rotate90"] = torch.where(on(1), (u[:, 13] * 4).floor(), 0.0)
        out["xint"] = torch.where(on(2)[:, None], (u[:, 14:16] * 2 - 1) * XINT_MAX, 0.0)
    if "g" in ops:
        out["scale"] = torch.where(on(3), torch.exp2(n[:, 0] * SCALE_STD), 1.0)
        out["rotate_pre"] = torch.where(on(4, p_rot), (u[:, 16] * 2 - 1) * math.pi * ROTATE_MAX, 0.0)
        out["aniso"] = torch.where(on(5), torch.exp2(n[:, 1] * ANISO_STD), 1.0)
        out["rotate_post"] = torch.where(on(6, p_rot), (u[:, 17] * 2 - 1) * math.pi * ROTATE_MAX, 0.0)
        out["xfrac"] = torch.where(on(7)[:, None], n[:, 2:4] * XFRAC_STD, 0.0)
    if "c" in ops:
        out["brightness"] = torch.where(on(8), n[:, 4] * BRIGHTNESS_STD, 0.0)
        out["contrast"] = torch.where(on(9), torch.exp2(n[:, 5] * CONTRAST_STD), 1.0)
        out["lumaflip"] = torch.where(on(10), (u[:, 18] * 2).floor(), 0.0)
        out["hue"] = torch.where(on(11), (u[:, 19] * 2 - 1) * math.pi * HUE_MAX, 0.0)
        out["saturation"] = torch.where(on(20), torch.exp2(n[:, 6] * SATURATION_STD), 1.0)
    return out


# ----------------------------------------------------------------------------------------- b: exact
def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices reflected into [0, n - 1] without repeating the edge (..., 2, 1, 0, 1, 2, ...)."""
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i.remainder(period)
    return torch.where(i > n - 1, period - i, i)


def blit(x: torch.Tensor, prm: dict[str, torch.Tensor]) -> torch.Tensor:
    """x-flip, quarter turns and whole-pixel translation as one gather. Output pixel p reads input
    pixel F R (p - t) in centred coordinates (translation undone first, then the turn, then the flip:
    the official order of the inverse transform), reflected at the borders."""
    B, C, H, W = x.shape
    dev = x.device
    X = (torch.arange(W, device=dev, dtype=torch.float32) - (W - 1) / 2).expand(H, W)
    Y = (torch.arange(H, device=dev, dtype=torch.float32) - (H - 1) / 2)[:, None].expand(H, W)
    tx, ty = torch.round(prm["xint"][:, 0] * W), torch.round(prm["xint"][:, 1] * H)   # whole pixels
    X, Y = X[None] - tx[:, None, None], Y[None] - ty[:, None, None]
    k = prm["rotate90"][:, None, None]                   # rotation by +k * 90 degrees of the coordinates
    cos, sin = torch.cos(k * (math.pi / 2)).round(), torch.sin(k * (math.pi / 2)).round()   # exactly 0, +-1
    X, Y = cos * X - sin * Y, sin * X + cos * Y
    X = X * (1 - 2 * prm["xflip"])[:, None, None]
    sx = _reflect(torch.round(X + (W - 1) / 2).long(), W)
    sy = _reflect(torch.round(Y + (H - 1) / 2).long(), H)
    idx = (sy * W + sx).view(B, 1, H * W).expand(B, C, H * W)
    return x.reshape(B, C, H * W).gather(2, idx).view(B, C, H, W)


# ----------------------------------------------------------------------------------------- g: one resample
def _rot(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    z, o = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).view(-1, 3, 3)


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    z, o = torch.zeros_like(sx), torch.ones_like(sx)
    return torch.stack([sx, z, z, z, sy, z, z, z, o], -1).view(-1, 3, 3)


def _shift(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    z, o = torch.zeros_like(tx), torch.ones_like(tx)
    return torch.stack([o, z, tx, z, o, ty, z, z, o], -1).view(-1, 3, 3)


def geometric_matrix(prm: dict[str, torch.Tensor], H: int, W: int) -> torch.Tensor:
    """(B, 3, 3): output -> input pixel coordinates, centred on the image (the inverse transform),
    composed in the official order: scale, pre-rotation, anisotropic scale, post-rotation, fraction."""
    G = _scale(1 / prm["scale"], 1 / prm["scale"])
    G = G @ _rot(prm["rotate_pre"])
    G = G @ _scale(1 / prm["aniso"], prm["aniso"])
    G = G @ _rot(prm["rotate_post"])
    return G @ _shift(-prm["xfrac"][:, 0] * W, -prm["xfrac"][:, 1] * H)


def warp(x: torch.Tensor, G: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) resampled at G @ p for every output pixel p (centred pixel coordinates), once.

    The 2x output grid is sampled q = len(f) // 4 px beyond the image on every side and cropped after
    the downsampling filter, so that the filter's reach past the output's edge reads resampled image,
    not zeros (what the official pipeline does: without the margin a flat image came out with its
    border rows 5 % darker and its corners 11 %)."""
    B, C, H, W = x.shape
    q = len(f) // 4                                        # output margin, px: the 2x filter's half length
    cx, cy = (W - 1) / 2 + q, (H - 1) / 2 + q              # the sampled region's corners, centred px
    # how far outside the image the sampled region's corners read: |G00| cx + |G01| cy + |G02| (and for y)
    A = G[:, :2, :].abs()
    reach = torch.stack([(A[:, 0, 0] * cx + A[:, 0, 1] * cy + A[:, 0, 2]).amax() - (W - 1) / 2,
                         (A[:, 1, 0] * cx + A[:, 1, 1] * cy + A[:, 1, 2]).amax() - (H - 1) / 2])
    support = len(f) // 4 + 1                              # the 2x filter's reach, in input pixels
    mx, my = (reach.clamp(min=0) + support).ceil().long().tolist()   # the call's one read-back
    mx, my = min(mx, W - 1), min(my, H - 1)
    x = F.pad(x, (mx, mx, my, my), mode="reflect")
    x = upsample2d(x, f)                                   # (B, C, 2 (H + 2 my), 2 (W + 2 mx))
    # normalised output coordinates g_out (align_corners=False, on the 2x grid of the sampled region)
    # are centred pixels X = g_out * (W + 2 q) / 2; the input's normalised coordinates are 2 X_in / (W + 2 mx)
    rows = torch.stack([G[:, 0] * (2 / (W + 2 * mx)), G[:, 1] * (2 / (H + 2 * my))], 1)     # S_in G
    theta = torch.stack([rows[..., 0] * ((W + 2 * q) / 2), rows[..., 1] * ((H + 2 * q) / 2), rows[..., 2]], -1)
    grid = F.affine_grid(theta, [B, C, 2 * (H + 2 * q), 2 * (W + 2 * q)], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return downsample2d(x, f)[:, :, q:q + H, q:q + W]


# ----------------------------------------------------------------------------------------- c: one matrix
def colour(x: torch.Tensor, prm: dict[str, torch.Tensor]) -> torch.Tensor:
    """Brightness, contrast, luma flip, hue rotation, saturation as one affine map of rgb."""
    B = x.shape[0]
    dev = x.device
    a = 1 / math.sqrt(3)
    v = torch.full((3,), a, device=dev)                                # the grey axis
    vv = torch.outer(v, v)
    eye = torch.eye(3, device=dev)
    M = eye.expand(B, 3, 3) * prm["contrast"][:, None, None]
    b = (prm["brightness"] * prm["contrast"])[:, None].expand(B, 3)
    P = eye - 2 * vv * prm["lumaflip"][:, None, None]                  # reflection through the grey plane
    th = prm["hue"][:, None, None]
    K = (torch.ones(3, 3, device=dev) - eye) * a * (torch.arange(3, device=dev)[None] - torch.arange(3, device=dev)[:, None]
                                                    ).remainder(3).sub(1.5).sign()          # the cross-product matrix [v]x
    R = eye * torch.cos(th) + K * torch.sin(th) + vv * (1 - torch.cos(th))   # Rodrigues, about the grey axis
    S = vv + (eye - vv) * prm["saturation"][:, None, None]
    T = S @ R @ P
    M, b = T @ M, (T @ b[:, :, None])[:, :, 0]
    y = M @ x.reshape(B, 3, -1) + b[:, :, None]
    return y.view_as(x)


# ----------------------------------------------------------------------------------------- all
def augment(images: torch.Tensor, p: float, ops: str = "bgc", generator: torch.Generator | None = None,
            params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The pipeline: b (exact), then g (one resample), then c. p = 0 returns `images` unchanged."""
    check_ops(ops)
    if p <= 0 and params is None:
        return images
    x = images.float()
    B, _, H, W = x.shape
    prm = params if params is not None else sample_params(B, p, ops, generator, x.device)
    if "b" in ops:
        x = blit(x, prm)
    if "g" in ops:
        # images none of whose geometric ops fired keep their pixels exactly (no round-trip blur)
        moved = (prm["scale"] != 1) | (prm["rotate_pre"] != 0) | (prm["aniso"] != 1) | (prm["rotate_post"] != 0) \
            | (prm["xfrac"] != 0).any(1)
        x = torch.where(moved[:, None, None, None], warp(x, geometric_matrix(prm, H, W), _lowpass_on(x.device)), x)
    if "c" in ops:
        x = colour(x, prm)
    return x
