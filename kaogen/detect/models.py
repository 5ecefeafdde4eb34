"""torchvision's detection models for one class of object (faces): builders and offline weights.

    model = build_detector(DetectorSpec(arch="fasterrcnn_resnet50_fpn_v2", min_size=800, max_size=1333))
    model(images)            # images: list of float32 (3, H, W) in [0, 1]; torchvision normalises and
                             # resizes them so that the short side is min_size unless the long side
                             # would pass max_size
    -> [{"boxes": (N, 4) x0 y0 x1 y1 in the input's pixels, "scores": (N,), "labels": (N,) all 1}]

`num_classes` counts the background: 2 for faces. Weights are never downloaded:

* `pretrained = "none"`: random initialisation (`weights=None, weights_backbone=None`).
* `"imagenet"`: torchvision's ImageNet backbone, read from the torch hub cache
  (`$TORCH_HOME/hub/checkpoints/FILE`); absent, a one-line error names the file and where it goes.
* a path: a state dict of the whole detector (e.g. torchvision's COCO weights for this arch, or a
  kaogen detector checkpoint's `model`); tensors whose shape differs (the 91-class COCO predictor)
  are left at their initialisation.

`fcos_tiny` is kaogen's CPU smoke detector: torchvision's FCOS on a small GroupNorm convolutional
backbone with an FPN over strides 8, 16, 32 (`tiny_width` channels). It exists so that tests and the
smoke config learn synthetic pages in minutes on a CPU; it is not a model for real scrolls.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kaogen.checkpoint import read_state_dict
from kaogen.errors import KaogenError

ARCHS = ("fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn", "retinanet_resnet50_fpn_v2",
         "fcos_resnet50_fpn", "fcos_tiny")
NUM_CLASSES = 2          # background + face


@dataclass
class DetectorSpec:
    arch: str = "fasterrcnn_resnet50_fpn_v2"
    min_size: int = 800            # torchvision's resize: short side (patch mode: the patch's short side)
    max_size: int = 1333           # ... unless the long side would pass this
    pretrained: str = "none"       # none | imagenet | PATH to a detector state dict
    tiny_width: int = 32           # fcos_tiny: FPN channels (a multiple of 32: the FCOS head's GroupNorm groups)
    score_thresh: float = 0.05     # the model keeps detections above this (mAP needs the low ones)
    detections_per_img: int = 100


def _imagenet_weights(arch: str):
    from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights

    if arch == "fasterrcnn_mobilenet_v3_large_fpn":
        return MobileNet_V3_Large_Weights.IMAGENET1K_V1
    if arch == "fcos_tiny":
        raise KaogenError("fcos_tiny has no ImageNet backbone: use --pretrained none")
    return ResNet50_Weights.IMAGENET1K_V1


def cached_weights_file(weights) -> Path:
    """Where torch hub keeps `weights` (a torchvision WeightsEnum member); KaogenError when absent."""
    name = weights.url.rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        raise KaogenError(f"--pretrained imagenet needs {name} in {path.parent} (kaogen never downloads: "
                          f"copy it there from {weights.url}), or use --pretrained none")
    return path


class TinyBackbone(nn.Module):
    """Conv-GroupNorm-ReLU stages at strides 2, 4, 8, 16, 32; returns the last three (C3, C4, C5)."""

    def __init__(self, width: int = 32):
        super().__init__()

        def stage(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.GroupNorm(8, cout), nn.ReLU(inplace=True),
                                 nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.GroupNorm(8, cout), nn.ReLU(inplace=True))

        w = width
        self.stem = stage(3, w // 2)            # /2
        self.layer1 = stage(w // 2, w)          # /4
        self.layer2 = stage(w, w)               # /8
        self.layer3 = stage(w, 2 * w)           # /16
        self.layer4 = stage(2 * w, 2 * w)       # /32
        self.channels = [w, 2 * w, 2 * w]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.layer1(self.stem(x))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return OrderedDict([("c3", c3), ("c4", c4), ("c5", c5)])


def _fcos_tiny(spec: DetectorSpec) -> nn.Module:
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

    if spec.tiny_width < 32 or spec.tiny_width % 32:
        raise KaogenError(f"tiny_width must be a multiple of 32 (FCOS head: GroupNorm of 32 groups), not {spec.tiny_width}")

    class Backbone(nn.Module):
        def __init__(self, width: int):
            super().__init__()
            self.body = TinyBackbone(width)
            self.fpn = FeaturePyramidNetwork(self.body.channels, width)
            self.out_channels = width

        def forward(self, x):
            return self.fpn(self.body(x))

    # FCOS assigns an object to the level whose range [4 s, 8 s] holds its size (s: the anchor size):
    # levels at strides 8, 16, 32 with sizes 8, 16, 32 take faces below 64 px, 64-128 px, above 128 px.
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,)), aspect_ratios=((1.0,),) * 3)
    return FCOS(Backbone(spec.tiny_width), NUM_CLASSES, min_size=spec.min_size, max_size=spec.max_size,
                anchor_generator=anchors, score_thresh=spec.score_thresh, detections_per_img=spec.detections_per_img)


def check_spec(spec: DetectorSpec) -> None:
    """Refuse, in one line, a spec that build_detector could not build: an unknown arch, bad sizes,
    ImageNet weights not in the torch hub cache, a --pretrained file that is not there. Cheap: run it
    before anything is written (train-detector checks before it makes a run folder)."""
    if spec.arch not in ARCHS:
        raise KaogenError(f"unknown detector arch {spec.arch!r}: use one of {', '.join(ARCHS)}")
    if spec.min_size < 32 or spec.max_size < spec.min_size:
        raise KaogenError(f"detector sizes must satisfy 32 <= min_size <= max_size, not {spec.min_size}, {spec.max_size}")
    if spec.pretrained == "imagenet":
        cached_weights_file(_imagenet_weights(spec.arch))   # refuses before torchvision would download
    elif spec.pretrained != "none" and not Path(spec.pretrained).is_file():
        raise KaogenError(f"--pretrained {spec.pretrained}: no such file (use none, imagenet or a state dict file)")


def build_detector(spec: DetectorSpec) -> nn.Module:
    """A torchvision detector for faces as `spec` says (see the module docstring for weights)."""
    import torchvision.models.detection as det

    check_spec(spec)
    if spec.arch == "fcos_tiny":
        model = _fcos_tiny(spec)
    else:
        backbone = _imagenet_weights(spec.arch) if spec.pretrained == "imagenet" else None
        kw = dict(min_size=spec.min_size, max_size=spec.max_size, detections_per_img=spec.detections_per_img)
        if spec.arch.startswith("fasterrcnn"):
            kw["box_score_thresh"] = spec.score_thresh
        else:
            kw["score_thresh"] = spec.score_thresh
        model = getattr(det, spec.arch)(weights=None, weights_backbone=backbone, num_classes=NUM_CLASSES, **kw)
    if spec.pretrained not in ("none", "imagenet"):
        load_detector_weights(model, spec.pretrained)
    return model


def load_detector_weights(model: nn.Module, path: str | Path) -> int:
    """Fill `model` from a state dict file (weights_only), skipping tensors of another shape; returns
    how many tensors were loaded. A file with nothing for this model is an error."""
    path = Path(path)
    state = read_state_dict(path, model_key="model")
    own = model.state_dict()
    fit = {k: v for k, v in state.items() if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape}
    if not fit:
        raise KaogenError(f"--pretrained {path} has no weights for this detector (another arch?)")
    model.load_state_dict(fit, strict=False)
    return len(fit)
