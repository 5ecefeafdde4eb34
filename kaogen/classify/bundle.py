"""A trained classifier as one object: the network, its label and classes, the resolution it reads.

    clf = Classifier.load("runs/00000-classifier/classifier.pt", device="cpu")
    probs = clf.predict(x)                 # x float32 (B, 3, R, R) in [0, 1] -> (B, C) probabilities
    clf.prepare(load_rgb_pil("face.jpg"))  # any picture -> (3, R, R), centre-cropped and resized

File: a kaogen checkpoint of kind "classifier" (state dicts + JSON, weights_only=True):
    config  {"arch", "label", "classes", "resolution", "size", "split", "split_seed", "split_fractions"}
    state   {"net": the ClassifierNet's state dict}
    meta    provenance: epoch, dev / test accuracy, data root, seed
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.classify.models import build_network, get_arch
from kaogen.errors import KaogenError

KIND = "classifier"
NO_CHECKPOINT = ("no classifier ships with kaogen (the KaoKore images are not redistributable here): train one "
                 "with `kaogen train-classifier --data KAOKORE_ROOT --label status --arch resnet18`, then pass "
                 "--checkpoint RUNS/NNNNN-classifier/classifier.pt")


class Classifier:
    def __init__(self, net, config: dict, meta: dict | None = None):
        self.net, self.config, self.meta = net, dict(config), dict(meta or {})
        self.arch, self.label = config["arch"], config["label"]
        self.classes: tuple[str, ...] = tuple(config["classes"])
        self.resolution: int = int(config["resolution"])

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @classmethod
    def load(cls, path: str | Path | None, device="cpu") -> "Classifier":
        if path is None:
            raise KaogenError(NO_CHECKPOINT)
        ck = load_checkpoint(path, kind=KIND)
        cfg = ck.config
        try:
            get_arch(cfg["arch"])
            net = build_network(cfg["arch"], len(cfg["classes"]), "none")
            net.load_state_dict(ck.state["net"])
        except KaogenError:
            raise
        except (KeyError, RuntimeError) as e:
            raise KaogenError(f"{path} is a damaged classifier checkpoint: {str(e).splitlines()[0][:160]}") from None
        clf = cls(net.to(device).eval(), cfg, ck.meta)
        clf.path = Path(path)
        return clf

    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        return save_checkpoint(path, Checkpoint(KIND, self.config, {"net": self.net.state_dict()},
                                                {**self.meta, **(meta or {})}))

    def prepare(self, img: Image.Image) -> torch.Tensor:
        """An RGB PIL image of any size -> float32 (3, R, R) in [0, 1] (centre square, resized)."""
        from kaogen.data.datasets import square_resize
        from kaogen.images import pil_to_tensor

        return pil_to_tensor(square_resize(img, self.resolution))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
        """x float (B, 3, R, R) in [0, 1] (or uint8 in [0, 255]) -> (B, C) float32 probabilities, on the CPU."""
        self.net.eval()
        out = [torch.softmax(self.net(_as_float(x[i:i + batch], self.device)).float(), 1)
               for i in range(0, len(x), batch)]
        return torch.cat(out).cpu() if out else torch.zeros(0, len(self.classes))

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
        """x (B, 3, R, R) -> (B, D) float32 unit-length embeddings (cosine similarity = dot product), on the CPU."""
        self.net.eval()
        out = [torch.nn.functional.normalize(self.net.embed(_as_float(x[i:i + batch], self.device)).float(), dim=1)
               for i in range(0, len(x), batch)]
        return torch.cat(out).cpu()


def _as_float(x: torch.Tensor, device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()
