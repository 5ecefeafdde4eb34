"""Device selection shared by every command: `--device auto|cpu|cuda|mps`."""

from __future__ import annotations

from kaogen.errors import KaogenError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto"):
    """Return a `torch.device` for `name`; `auto` picks CUDA, then MPS, then CPU.

    Asking for a device that is not present is an error, not a silent fall-back.
    """
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = name.split(":")[0]
    if base not in DEVICE_CHOICES:
        raise KaogenError(f"unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)}")
    if base == "cuda" and not torch.cuda.is_available():
        raise KaogenError("--device cuda asked for, but torch sees no CUDA GPU on this machine")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise KaogenError("--device mps asked for, but MPS is not available on this machine")
    return torch.device(name)
