"""Typed config of the detector trainer (`configs/detect/*.toml` override any field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class DetectConfig:
    arch: str = "fasterrcnn_resnet50_fpn_v2"      # one of kaogen.detect.models.ARCHS
    pretrained: str = "none"                     # none | imagenet (torch hub cache) | PATH (detector state dict)
    patch: tuple[int, int] = (1333, 800)         # width, height of the detector's input (the seed's Faster R-CNN)
    use_patches: bool = True                     # False: whole pages, resized by torchvision to fit `patch`
    min_visible: float = 0.5                     # a face cut by a patch edge is kept when this much of it is inside
    face_bias: float = 0.5                       # chance that a training patch is drawn around a face
    hflip: bool = True                           # mirror half of the training inputs
    tiny_width: int = 32                         # fcos_tiny's channels
    batch: int = 4                               # inputs per step (over all processes)
    steps: int = 20000                           # optimiser steps in total
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9                        # SGD
    weight_decay: float = 1e-4
    warmup: int = 500                            # steps of linear learning-rate warm-up
    clip_grad: float = 10.0                      # gradient norm clip (0: off)
    amp: bool = True                             # bfloat16 autocast on any device (the CPU too)
    log_every: int = 20                          # steps per metrics.jsonl row
    snapshot_every: int = 1000                   # steps per snapshot, detector.pt and sample pages
    keep: int = 2                                # snapshots kept
    sample_pages: int = 2                        # pages drawn with predicted and true boxes at each snapshot
    overlap: float = 0.2                         # inference: overlap of neighbouring patches
    threshold: float = 0.5                       # inference: score a box needs to be reported
    split: str = "by-page"                       # by-page | by-work | within-work | all (train on every page)
