"""Projection: find the latent whose image matches a picture (Karras et al. 2020, section 5).

W: one w for every layer (start at the mean w); W+: one w per layer (more faithful, less editable).
Adam on the content loss (LPIPS when its weights are on disk, else the offline pixel + SSIM + edge
loss of kaogen.ist.losses), noise inputs fixed, with a learning-rate ramp and a decaying Gaussian
perturbation of the latent early on (to leave poor local minima).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm import tqdm

from kaogen.gan.sample import GeneratorBundle
from kaogen.ist.losses import content_loss


def project(g: GeneratorBundle, image: torch.Tensor, steps: int = 300, space: str = "w", loss: str = "auto",
            label: str | None = None, lr: float = 0.05, video_every: int = 0, progress: bool = False, seed: int = 0):
    """image (3, H, W) in [0, 1] -> (ws (num_ws, w_dim), result (3, R, R) in [0, 1], frames, loss name)."""
    R = g.G.cfg.resolution
    dev = g.device
    target = F.interpolate(image[None].to(dev), size=(R, R), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    name, fn = content_loss(loss, dev)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(1000, g.G.cfg.z_dim, generator=gen).to(dev)
        ws_samples = g.G.mapping(z, g.label(label, 1000) if g.class_names else None)[:, 0]
        w_avg, w_std = ws_samples.mean(0), ws_samples.std(0).mean()
    n = g.G.num_ws
    if space not in ("w", "w+"):
        raise ValueError(f"space must be w or w+, not {space!r}")
    w = (w_avg[None] if space == "w" else w_avg[None].repeat(n, 1)).clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
    g.G.requires_grad_(False)
    frames = []
    for step in tqdm(range(steps), desc="project", disable=not progress):
        t = step / max(steps, 1)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, t / 0.05) * min(1.0, (1 - t) / 0.25) if steps > 1 else lr
        noise_scale = w_std * 0.05 * max(0.0, 1 - t / 0.75) ** 2
        wn = w + torch.randn(w.shape, generator=gen).to(dev) * noise_scale
        ws = wn[None].expand(1, n, -1) if space == "w" else wn[None]
        img = (g.G.synthesis(ws, noise="const") + 1) / 2
        value = fn(img.clamp(0, 1), target)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        if video_every and step % video_every == 0:
            frames.append(torch.cat([target[0], img[0].detach().clamp(0, 1)], 2).cpu())
    final = (w[None].expand(1, n, -1) if space == "w" else w[None]).detach()
    with torch.no_grad():
        result = ((g.G.synthesis(final, noise="const") + 1) / 2).clamp(0, 1)[0].cpu()
    return final[0].cpu(), result, frames, name
