"""Typed config of `kaogen train-classifier` (`configs/classify/*.toml` set any field; flags override).

The defaults are the KaoKore paper's recipe: Adam, standard augmentation (random resized crop and
horizontal flip), early stopping on the dev split, the test accuracy of the best dev epoch reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ClassifierConfig:
    arch: str = "resnet18"                 # a name of kaogen.classify.models.ARCHS
    label: Literal["gender", "status"] = "status"
    pretrained: str = "none"               # none | imagenet | path of a state dict file
    split: Literal["official", "by-work", "within-work"] = "official"
    split_seed: int = 0                    # for by-work / within-work
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    resolution: int = 256                  # faces are resized to R x R (KaoKore's are 256, Keio's 200)
    size: int = 256                        # which download to read: ROOT/images_{size}/
    epochs: int = 50                       # at most this many epochs (early stopping may end sooner)
    patience: int = 10                     # stop after this many epochs without a better dev accuracy (0: never)
    batch: int = 64                        # global batch; torchrun splits it over the processes
    lr: float = 1e-3                       # Adam
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    balance: Literal["none", "sampler", "loss"] = "none"   # status is skewed: sample or weight classes evenly
    augment: bool = True                   # random resized crop (scale crop_scale) + horizontal flip
    crop_scale: tuple[float, float] = (0.8, 1.0)
    amp: bool = True                       # mixed precision: bfloat16 autocast on any device (CPU too)
    eval_batch: int = 128
