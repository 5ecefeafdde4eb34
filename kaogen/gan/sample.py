"""Using a trained generator: seeds -> images, latent walks, style mixing.

    g = GeneratorBundle.load()                       # shipped checkpoints/gan-kaokore.pt, or a path
    imgs = g.generate([0, 1, 2], truncation=0.7, label="warrior")   # (3, 3, R, R) in [0, 1]

A seed's latent is drawn from its own generator (numpy RandomState(seed), as the reference), and
noise inputs are the network's fixed buffers, so a seed gives the same image whatever the batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kaogen.checkpoint import Checkpoint, checkpoints_dir, load_checkpoint, save_checkpoint
from kaogen.config import from_dict
from kaogen.errors import KaogenError
from kaogen.gan.config import NetworkConfig
from kaogen.gan.networks import Generator

KIND = "gan"
SHIPPED = "gan-kaokore.pt"


def seed_latents(seeds: list[int], z_dim: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).float()


SEED_MAX = 2 ** 32 - 1       # numpy's RandomState takes 0 .. 2**32 - 1


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]. Seeds are 0 .. 2**32 - 1; a range runs upward."""
    out = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)  # pragma: no mutate (a second '-' fails int() or the order check either way)
                if int(b) < int(a) or int(a) < 0 or int(b) > SEED_MAX:   # checked before the range is built
                    raise ValueError
                out += list(range(int(a), int(b) + 1))
            elif part.strip():
                out.append(int(part))
    except ValueError:
        raise KaogenError(f"seeds must look like 0-63 or 1,5,9, not {text!r}") from None
    if not out:
        raise KaogenError("no seeds given")
    if min(out) < 0 or max(out) > SEED_MAX:
        raise KaogenError(f"seeds are 0 .. {SEED_MAX}, not {text!r}")
    return out


class GeneratorBundle:
    def __init__(self, G: Generator, cond: str = "none", class_names: list[str] | None = None, source: str = ""):
        self.G, self.cond, self.class_names, self.source = G.eval(), cond, list(class_names or []), source

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    def label(self, name: str | None, n: int) -> torch.Tensor | None:
        if not self.class_names:
            if name:
                raise KaogenError("this generator is unconditional: drop --class")
            return None
        if name is None:
            raise KaogenError(f"this generator is conditional on {self.cond}: pass --class {self.cond}=" + "|".join(self.class_names))
        if name not in self.class_names:
            raise KaogenError(f"unknown class {name!r}: one of {', '.join(self.class_names)}")
        c = torch.zeros(n, len(self.class_names), device=self.device)
        c[:, self.class_names.index(name)] = 1
        return c

    # no_grad inside the bodies, not as decorators: mutmut 3 skips decorated functions
    def ws(self, seeds: list[int], truncation: float = 1.0, label: str | None = None) -> torch.Tensor:
        """The (N, num_ws, w_dim) latents of `seeds`, truncated towards the mean w (1.0: none)."""
        with torch.no_grad():
            z = seed_latents(seeds, self.G.cfg.z_dim).to(self.device)
            return self.G.mapping(z, self.label(label, len(seeds)), truncation)

    def synthesize(self, ws: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """ws (N, num_ws, w_dim) -> images (N, 3, R, R) in [0, 1], on the CPU."""
        with torch.no_grad():
            out = [self.G.synthesis(ws[i:i + batch], noise="const") for i in range(0, len(ws), batch)]
            return ((torch.cat(out) + 1) / 2).clamp(0, 1).cpu()

    def generate(self, seeds: list[int], truncation: float = 1.0, label: str | None = None, device=None,
                 batch: int = 16) -> torch.Tensor:
        if device is not None and torch.device(device) != self.device:
            self.G.to(device)
        return self.synthesize(self.ws(seeds, truncation, label), batch)

    def save(self, path, meta: dict | None = None, half: bool = False) -> Path:
        from dataclasses import asdict

        cfg = {"net": asdict(self.G.cfg), "cond": self.cond, "class_names": self.class_names}
        return save_checkpoint(path, Checkpoint(KIND, cfg, {"G_ema": self.G.state_dict()}, meta or {}), half=half)

    @classmethod
    def load(cls, path: str | Path | None = None, device="cpu") -> "GeneratorBundle":
        if path is None:
            path = checkpoints_dir() / SHIPPED
            if not path.is_file():
                raise KaogenError(f"no shipped generator at {path}: pass --checkpoint (train one with `kaogen train-gan`)")
        ck = load_checkpoint(path, kind=KIND)
        # generators saved before the aligned resampling say nothing of it: they sample as trained
        G = Generator(from_dict(NetworkConfig, {"resample": "legacy", **ck.config["net"]}))
        try:
            G.load_state_dict(ck.state["G_ema"])
        except (KeyError, RuntimeError) as e:
            raise KaogenError(f"{path}: the generator's weights do not fit its config ({str(e).splitlines()[0][:120]})") from None
        return cls(G.to(device), ck.config["cond"], ck.config["class_names"], str(path))
