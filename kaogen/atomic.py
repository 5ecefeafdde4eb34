"""Atomic file writes: write to a temporary sibling, fsync, then rename over the target.

A reader (or a resumed run) never sees a half-written file: either the old file, or the new one.
Temporary files are named `.NAME.tmp-<random>.SUFFIX` so that writers which pick a format from the
suffix (imageio, PIL) still work, and so that `clean_stale_temporaries` can find leftovers of a
killed process.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

TMP_MARK = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on error removed."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        from kaogen.errors import KaogenError

        raise KaogenError(f"cannot write {path}: folder {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}{TMP_MARK}", suffix=path.suffix, dir=parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the user's usual mode
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def clean_stale_temporaries(folder: str | os.PathLike) -> int:
    """Remove temporaries left by a killed writer in `folder`; returns how many were removed."""
    removed = 0
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(f".*{TMP_MARK}*"):
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
    return removed
