"""Classifier networks: torchvision architectures with their head replaced for a label's classes.

    net = build_network("resnet18", num_classes=4, pretrained="none")      # ClassifierNet
    logits = net(x)              # x float32 (B, 3, R, R) in [0, 1]  ->  (B, C) logits
    emb = net.embed(x)           # (B, D): the head's input, the face's embedding (kaogen similar)

The network normalises its input itself (ImageNet mean and std, the statistics every torchvision
weight was trained with), so every caller hands it plain [0, 1] images.

Architectures (`ARCHS`): the KaoKore paper's seven (vgg11, alexnet, resnet18, resnet34,
mobilenet_v2, densenet121, inception_v3) and three modern ones (resnext50_32x4d: the face-detection
seed's status classifier; convnext_tiny; efficientnet_b0). Each entry names where torchvision keeps
the final Linear layer (replaced by the new head) and the layer Grad-CAM looks at.

Initial weights (`pretrained`):
    "none"      random initialisation (torchvision's own)
    "imagenet"  torchvision's weights API: the file in the torch hub cache
                ($TORCH_HOME/hub/checkpoints/, by default ~/.cache/torch/hub/checkpoints/), downloaded
                only on this explicit request; offline without the file, one line names the file,
                its URL and where to put it
    FILE        a local state dict of the same torchvision architecture (loaded with weights_only=True;
                its head is dropped when its shape differs)

Every ReLU is made out-of-place: Guided Backpropagation (captum) hooks ReLU modules, and an in-place
ReLU overwrites the tensor its hook needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kaogen.checkpoint import read_state_dict
from kaogen.errors import KaogenError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Arch:
    name: str            # torchvision builder name
    head: str            # dotted path of the final nn.Linear inside the torchvision model
    cam_layers: tuple    # ((dotted path, stride), ...) Grad-CAM candidates (4-D feature maps), deepest first
    min_resolution: int  # smallest input side the network accepts
    paper: bool          # one of the KaoKore paper's seven

    def cam_layer(self, resolution: int) -> str:
        """The deepest candidate whose map is at least CAM_MIN_SIDE wide at `resolution` (else the finest):
        a ResNet's layer4 at 224-256 px (7-8 cells), layer3 at 128 px, layer2 at 64 px."""
        for path, stride in self.cam_layers:
            if resolution // stride >= CAM_MIN_SIDE:
                return path
        return self.cam_layers[-1][0]


CAM_MIN_SIDE = 7
_RESNET_CAM = (("layer4", 32), ("layer3", 16), ("layer2", 8))
ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("vgg11", "classifier.6", (("features.19", 16), ("features.14", 8)), 32, True),
    Arch("alexnet", "classifier.6", (("features.11", 16),), 63, True),
    Arch("resnet18", "fc", _RESNET_CAM, 32, True),
    Arch("resnet34", "fc", _RESNET_CAM, 32, True),
    Arch("mobilenet_v2", "classifier.1", (("features", 32), ("features.13", 16), ("features.6", 8)), 32, True),
    # densenet's forward applies an in-place functional ReLU to `features`: Grad-CAM reads the blocks
    Arch("densenet121", "classifier", (("features.denseblock4", 32), ("features.denseblock3", 16),
                                       ("features.denseblock2", 8)), 32, True),
    Arch("inception_v3", "fc", (("Mixed_7c", 32), ("Mixed_6e", 16)), 75, True),
    Arch("resnext50_32x4d", "fc", _RESNET_CAM, 32, False),
    Arch("convnext_tiny", "classifier.2", (("features", 32), ("features.5", 16), ("features.3", 8)), 32, False),
    Arch("efficientnet_b0", "classifier.1", (("features", 32), ("features.5", 16), ("features.3", 8)), 32, False),
)}


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise KaogenError(f"unknown architecture {name!r}: use one of {', '.join(ARCHS)}")
    return ARCHS[name]


def _get(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def _set(module: nn.Module, path: str, new: nn.Module) -> None:
    *parents, last = path.split(".")
    parent = _get(module, ".".join(parents)) if parents else module
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)


class ClassifierNet(nn.Module):
    """Normalisation + a torchvision backbone (its final Linear replaced by Identity) + a new head."""

    def __init__(self, arch: str, backbone: nn.Module, head: nn.Linear):
        super().__init__()
        self.arch = arch
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, R, R) in [0, 1] -> (B, D) features (the head's input)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, R, R), got {tuple(x.shape)}")
        return self.backbone((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, R, R) in [0, 1] -> (B, C) logits."""
        return self.head(self.embed(x))

    def cam_layer(self, resolution: int, path: str | None = None) -> nn.Module:
        """The module Grad-CAM reads: `path` inside the backbone, default `Arch.cam_layer(resolution)`."""
        a = ARCHS[self.arch]
        path = path or a.cam_layer(resolution)
        try:
            return _get(self.backbone, path)
        except (AttributeError, IndexError, ValueError):
            raise KaogenError(f"{self.arch} has no layer {path!r} (its candidates: "
                              f"{', '.join(p for p, _ in a.cam_layers)})") from None


def imagenet_weights(arch: str):
    """torchvision's default ImageNet weights enum member for `arch`."""
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def imagenet_file(arch: str) -> Path:
    """Where torchvision's weights API keeps (and looks for) the ImageNet file of `arch`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / imagenet_weights(arch).url.rsplit("/", 1)[-1]


def _build_torchvision(arch: str, imagenet: bool) -> nn.Module:
    import torchvision

    kw = {}
    if arch == "inception_v3":
        kw = {"aux_logits": True, "init_weights": True} if not imagenet else {}
    if not imagenet:
        return torchvision.models.get_model(arch, weights=None, **kw)
    weights = imagenet_weights(arch)
    path = imagenet_file(arch)
    if not path.is_file():          # this explicit request is the only time kaogen downloads anything
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(path), progress=True)
        except Exception as e:      # offline (URLError, socket errors), a read-only cache...
            raise KaogenError(f"--pretrained imagenet needs {path.name} (ImageNet weights of {arch}), which is not "
                              f"in {path.parent} and could not be downloaded ({type(e).__name__}): fetch "
                              f"{weights.url} and put it in {path.parent} (or set TORCH_HOME)") from None
    try:
        return torchvision.models.get_model(arch, weights=weights)     # the weights API reads the hub cache
    except Exception as e:          # a damaged or foreign file
        raise KaogenError(f"{path} (ImageNet weights of {arch}) could not be read: "
                          f"{str(e).splitlines()[0][:160] if str(e) else type(e).__name__}; "
                          f"delete it and fetch it again from {weights.url}") from None


def _load_file(model: nn.Module, arch: Arch, path: str) -> None:
    p = Path(path)
    state = read_state_dict(p, model_key="net")
    own = model.state_dict()
    head = {f"{arch.head}.weight", f"{arch.head}.bias"}
    state = {k: v for k, v in state.items() if not (k in head and (k not in own or own[k].shape != v.shape))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in head]
    bad = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or bad:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                else f"shapes differ for {bad[:3]}")
        raise KaogenError(f"{p} is not a {arch.name} state dict ({what})")


def build_network(arch: str, num_classes: int, pretrained: str = "none") -> ClassifierNet:
    """A torchvision `arch` with weights `pretrained` and a fresh Linear head of `num_classes` outputs.

    The head is initialised by torch's default Linear init from the global RNG (seed before calling)."""
    a = get_arch(arch)
    if num_classes < 2:
        raise KaogenError(f"a classifier needs at least 2 classes, not {num_classes}")
    model = _build_torchvision(arch, pretrained == "imagenet")
    if pretrained not in ("none", "imagenet"):
        _load_file(model, a, pretrained)
    if arch == "inception_v3":          # the auxiliary classifier is for ImageNet training only
        model.aux_logits, model.AuxLogits = False, None
    for m in model.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            m.inplace = False
    old = _get(model, a.head)
    if not isinstance(old, nn.Linear):
        raise KaogenError(f"internal: {arch}.{a.head} is {type(old).__name__}, not Linear")
    _set(model, a.head, nn.Identity())
    return ClassifierNet(arch, model, nn.Linear(old.in_features, num_classes))


def check_resolution(arch: str, resolution: int) -> None:
    a = get_arch(arch)
    if resolution < a.min_resolution:
        raise KaogenError(f"{arch} needs inputs of at least {a.min_resolution} px, not {resolution}")
