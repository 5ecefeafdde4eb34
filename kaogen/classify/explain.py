"""What a classifier looks at: Grad-CAM and Guided Grad-CAM (Guided Backpropagation x Grad-CAM), via captum.

    ex = explain(clf, x)                # x float32 (B, 3, R, R) in [0, 1]
    ex.cam      (B, R, R) float32 in [0, 1]: Grad-CAM of the target class (the predicted one by default),
                ReLU'd, bilinearly upsampled from the network's Grad-CAM layer, divided by its maximum
                (all zeros where nothing speaks for the class)
    ex.guided   (B, 3, R, R) float32, signed: Guided Backpropagation times the upsampled Grad-CAM
                (Mermet et al.'s picture of which pixels trigger a status decision)
    ex.target   (B,) int64

    to_picture(ex.cam[i], (W, H))       the map on the picture's own pixels: the network reads the
                                        centred square of side min(W, H); outside it the map is 0

Grad-CAM (Selvaraju et al.): weights a_k = mean over positions of d y_c / d A_k, map = ReLU(sum_k a_k A_k).
captum's Guided Backpropagation hooks ReLU modules (kaogen's networks have no in-place ReLU, see
models.py); ReLU6 (MobileNet-v2) and functional ReLUs pass gradients unguided.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kaogen.classify.bundle import Classifier


@dataclass
class Explanation:
    cam: torch.Tensor          # (B, R, R) float32 in [0, 1]
    guided: torch.Tensor       # (B, 3, R, R) float32
    target: torch.Tensor       # (B,) int64
    probabilities: torch.Tensor  # (B, C) float32


def explain(clf: Classifier, x: torch.Tensor, target: torch.Tensor | None = None, layer: str | None = None) -> Explanation:
    """Grad-CAM and Guided Grad-CAM of `target` (default: the predicted class) for images x (B, 3, R, R) in [0, 1].

    `layer`: a dotted path inside the torchvision backbone (e.g. "layer4"); by default the deepest
    of the architecture's candidates whose map is at least 7 cells wide at R (models.Arch.cam_layer:
    a ResNet's layer4 at 224-256 px, whose map would be 2 x 2 at 64 px, where layer2 is read)."""
    from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam

    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, R, R) in [0, 1], got {tuple(x.shape)}")
    net, R = clf.net.eval(), x.shape[-1]
    x = x.to(clf.device).float()
    probs = clf.predict(x)
    target = probs.argmax(1) if target is None else torch.as_tensor(target, dtype=torch.long).view(-1)
    tgt = target.to(clf.device)
    layer = net.cam_layer(R, layer)
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")       # captum warns that it sets (and removes) backward hooks on ReLUs
        raw = LayerGradCam(net, layer).attribute(x, target=tgt, relu_attributions=True)       # (B, 1, h, w)
        cam = LayerAttribution.interpolate(raw.float(), (R, R), interpolate_mode="bilinear")[:, 0]
        guided = GuidedGradCam(net, layer).attribute(x, target=tgt, interpolate_mode="bilinear")
    cam = cam.detach().clamp(min=0)
    top = cam.flatten(1).amax(1).view(-1, 1, 1)
    cam = torch.where(top > 0, cam / top.clamp(min=1e-12), torch.zeros_like(cam)).clamp(0, 1)
    return Explanation(cam.float().cpu(), guided.detach().float().cpu(), target.cpu(), probs)


def to_picture(m: torch.Tensor, size: tuple[int, int], fill: float = 0.0) -> torch.Tensor:
    """A map (R, R) or (K, R, R) of the network's input -> (H, W) or (K, H, W) on the picture of
    size (W, H): the input was the centred square of side min(W, H), resized; outside it `fill`."""
    W, H = size
    s = min(W, H)
    left, top = (W - s) // 2, (H - s) // 2
    m3 = m[None] if m.dim() == 2 else m
    sq = F.interpolate(m3[None].float(), size=(s, s), mode="bilinear", align_corners=False)[0]
    out = torch.full((m3.shape[0], H, W), float(fill))
    out[:, top:top + s, left:left + s] = sq
    return out[0] if m.dim() == 2 else out


def cam_overlay(picture: torch.Tensor, cam: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """picture (3, H, W) in [0, 1], cam (H, W) in [0, 1] -> (3, H, W) in [0, 1]: the map in the jet colours over the picture."""
    from matplotlib import colormaps

    heat = torch.from_numpy(colormaps["jet"](cam.clamp(0, 1).numpy())[..., :3]).permute(2, 0, 1).float()
    return ((1 - alpha) * picture + alpha * heat).clamp(0, 1)


def guided_picture(g: torch.Tensor) -> torch.Tensor:
    """Guided Grad-CAM (3, H, W), signed -> (3, H, W) in [0, 1]: centred on grey, scaled by its spread."""
    g = g - g.mean()
    return (g / (3 * g.std().clamp(min=1e-12)) * 0.5 + 0.5).clamp(0, 1)


def corner_mass(cam: torch.Tensor, frac: float = 0.5, corner: str = "top-left") -> torch.Tensor:
    """Share of each map's mass (B, H, W) -> (B,) that lies in the `frac` x `frac` corner square."""
    H, W = cam.shape[-2:]
    h, w = max(1, round(H * frac)), max(1, round(W * frac))
    rows = slice(0, h) if corner.startswith("top") else slice(H - h, H)
    cols = slice(0, w) if corner.endswith("left") else slice(W - w, W)
    total = cam.flatten(-2).sum(-1).clamp(min=1e-12)
    return cam[..., rows, cols].flatten(-2).sum(-1) / total
