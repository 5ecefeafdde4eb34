"""Sample-quality metrics: FID, KID, precision and recall, over any feature extractor.

    feats = InceptionFeatures()            # the standard FID Inception (pytorch-fid's port of the TF graph)
    real = features(feats, real_images)    # (N, 2048)
    fid(real, fake); kid(real, fake); precision_recall(real, fake)

Standard features need the weights file `pt_inception-2015-12-05-6726825d.pth` (the one every FID
paper uses, ported by pytorch-fid) in $TORCH_HOME/hub/checkpoints, or `--inception FILE`; kaogen
never downloads it at run time. Any callable (B, 3, H, W) in [0, 1] -> (B, D) can stand in (the
tests use a fixed random projection). FID: Frechet distance of Gaussians fitted to the features,
the matrix square root through a symmetric eigendecomposition in float64. KID: unbiased MMD^2 with
the cubic polynomial kernel, averaged over subsets. Precision / recall: Kynkaanniemi et al. 2019,
k-nearest-neighbour balls (k = 3) around each set's features.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from kaogen.errors import KaogenError

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


def inception_path(given: str | None = None) -> Path | None:
    if given:
        return Path(given) if Path(given).is_file() else None
    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    p = home / "hub" / "checkpoints" / INCEPTION_FILE
    return p if p.is_file() else None


class InceptionFeatures(torch.nn.Module):
    """The 2048-d pool features of the FID Inception network: (B, 3, H, W) in [0, 1] -> (B, 2048)."""

    def __init__(self, weights: str | None = None):
        super().__init__()
        path = inception_path(weights)
        if path is None:
            raise KaogenError(f"FID needs the Inception weights {INCEPTION_FILE} (pass --inception FILE or put it in "
                              "$TORCH_HOME/hub/checkpoints)")
        try:
            from pytorch_fid.inception import fid_inception_v3
        except ImportError:
            raise KaogenError("FID needs the pytorch-fid package: pip install pytorch-fid") from None
        import unittest.mock

        with unittest.mock.patch("pytorch_fid.inception.load_state_dict_from_url", lambda *a, **k: torch.load(path, weights_only=True)):
            self.net = fid_inception_v3().eval().requires_grad_(False)
        self.net.fc = torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(x * 2 - 1)


@torch.no_grad()
def features(extractor: Callable[[torch.Tensor], torch.Tensor], images, batch: int = 64) -> torch.Tensor:
    """Features of an iterable of image batches or a tensor (N, 3, H, W) in [0, 1]; (N, D) float64 on CPU."""
    if isinstance(images, torch.Tensor):
        images = [images[i:i + batch] for i in range(0, len(images), batch)]
    return torch.cat([extractor(x).double().cpu() for x in images])


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = torch.cov(real.T), torch.cov(fake.T)
    r1 = _sqrtm_psd(s1)
    cross = _sqrtm_psd(r1 @ s2 @ r1)
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * cross.trace())


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    d = real.shape[1]
    m = min(len(real), len(fake), subset_size)
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(subsets):
        x = real[torch.randperm(len(real), generator=g)[:m]]
        y = fake[torch.randperm(len(fake), generator=g)[:m]]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        total += float((kxx.sum() - kxx.diag().sum() + kyy.sum() - kyy.diag().sum()) / (m * (m - 1)) - 2 * kxy.mean())
    return total / subsets


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    def radii(x):
        d = torch.cdist(x, x)
        return d.kthvalue(k + 1, dim=1).values          # the point itself is the first neighbour

    def coverage(a, ra, b):
        return float((torch.cdist(b, a) <= ra[None]).any(1).double().mean())

    rr, rf = radii(real), radii(fake)
    return coverage(real, rr, fake), coverage(fake, rf, real)
