"""Count the calls that would synchronise the host with a GPU, on any device (the CPU too).

On CUDA, `torch.cuda.set_sync_debug_mode` sees the true synchronisations; here, without a GPU, the
same hot paths are run on the CPU under a TorchFunctionMode that counts every call which *would*
wait for the device or copy from the host to it:

    sync   .item(), int() / float() / bool() / index() of a tensor, .tolist(), .numpy(), .cpu(),
           nonzero / argwhere / masked_select / unique, torch.where(cond) with one argument,
           indexing or assigning through a boolean mask, repeat_interleave without output_size
    h2d    torch.tensor / as_tensor / from_numpy (new data from the host), indexing with a Python
           list, and `.to(device)` of a CPU tensor (on a GPU run: a host-to-device copy)

    with SyncCounter() as c:
        paint(...)
    c.total, c.counts["sync"], c.counts["h2d"], c.where   # where: (kind, op) -> count

The bound a test asserts is per painting or per step, and must not grow with the stroke count.

On the CPU every tensor is a host tensor, so a few calls are counted that are free on a GPU run:
those made by torch.optim itself (Adam reads its step counters, which kaogen keeps on the CPU as
the non-capturable optimisers expect: a test elsewhere checks they are) are left out.
"""

from __future__ import annotations

import sys
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

_SYNC_METHODS = {"item", "__int__", "__float__", "__bool__", "__index__", "tolist", "numpy", "cpu",
                 "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive"}
_H2D_FUNCS = {"tensor", "as_tensor", "from_numpy"}


def _name(func) -> str:
    return getattr(func, "__name__", str(func))


def _is_mask(ix) -> bool:
    if isinstance(ix, torch.Tensor):
        return ix.dtype == torch.bool
    if isinstance(ix, tuple):
        return any(_is_mask(i) for i in ix)
    return False


def _has_list(ix) -> bool:
    if isinstance(ix, list):
        return True
    if isinstance(ix, tuple):
        return any(isinstance(i, list) for i in ix)
    return False


def _to_device(args, kwargs) -> bool:
    """Does a `.to(...)` call name a device (a device, a device string, or a tensor to follow)?"""
    if "device" in kwargs and kwargs["device"] is not None:
        return True
    for a in args[1:]:
        if isinstance(a, (torch.device, torch.Tensor)):
            return True
        if isinstance(a, str):
            return True
    return False


_HOST_SIDE = ("torch/optim/",)          # callers whose tensors are host scalars on a GPU run too


class SyncCounter(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.where: Counter = Counter()

    def _count(self, kind: str, op: str) -> None:
        caller = sys._getframe(2).f_code.co_filename.replace("\\", "/")
        if any(part in caller for part in _HOST_SIDE):
            return
        self.where[(kind, op)] += 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        if name in _SYNC_METHODS:
            self._count("sync", name)
        elif name == "where" and len(args) + len(kwargs) == 1:
            self._count("sync", "where(cond)")
        elif name == "repeat_interleave" and kwargs.get("output_size") is None and (
                len(args) > 1 and isinstance(args[1], torch.Tensor) or isinstance(kwargs.get("repeats"), torch.Tensor)):
            self._count("sync", "repeat_interleave")
        elif name in ("__getitem__", "__setitem__") and len(args) > 1:
            if _is_mask(args[1]):
                self._count("sync", f"{name}[mask]")
            elif _has_list(args[1]):
                self._count("h2d", f"{name}[list]")
        elif name in _H2D_FUNCS:
            self._count("h2d", name)
        elif name in ("to", "cuda") and args and isinstance(args[0], torch.Tensor) and args[0].device.type == "cpu" \
                and (name == "cuda" or _to_device(args, kwargs)):
            self._count("h2d", ".to(device)")
        return func(*args, **kwargs)

    @property
    def counts(self) -> Counter:
        out: Counter = Counter()
        for (kind, _), n in self.where.items():
            out[kind] += n
        return out

    @property
    def total(self) -> int:
        return sum(self.where.values())

    def report(self) -> str:
        return ", ".join(f"{k}:{op} x{n}" for (k, op), n in self.where.most_common())
