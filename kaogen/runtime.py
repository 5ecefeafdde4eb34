"""Process-level CPU tuning: keep freed tensor memory in the heap instead of handing it back.

PyTorch's CPU allocator asks the C library for every temporary. With glibc's defaults a
temporary above the mmap threshold (128 KiB, adapting up to 32 MiB) is mapped fresh from the
kernel and returned on free, and a heap top above the trim threshold is given back too; each
reuse then pays a page fault per 4 KiB and the kernel's zeroing. Element-wise code on tensors of
a few MiB (the rasterisers, the agents' training) spends most of its time there: measured on the
2-core benchmark machine, the exact rasteriser's per-pixel cost falls from about 74 to 23 ns.

`tune_allocator()` raises both thresholds (glibc only; elsewhere it does nothing). The CLI calls it
at start-up, `benchmarks/` too; notebooks may call it. The cost is memory that stays reserved
by the process after a peak (up to 1 GiB of freed heap). KAOGEN_NO_MALLOPT=1 turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20          # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 1 << 30

_done: bool | None = None


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process. Returns True if they are set."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("KAOGEN_NO_MALLOPT") or os.name != "posix":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):        # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
