"""Numbered run folders: `RUNS/00003-NAME/` with the resolved config and the command line."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from kaogen.atomic import atomic_write_text


def next_run_dir(outdir: str | Path, name: str) -> Path:
    """Create and return `outdir/NNNNN-name`, one above the highest number present."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in outdir.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    run = outdir / f"{(max(numbers) + 1 if numbers else 0):05d}-{safe}"
    run.mkdir()
    return run


def record_run(run_dir: str | Path, config: dict[str, Any], argv: list[str] | None = None) -> None:
    """Save the resolved config (JSON) and the exact command line into the run folder."""
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    argv = sys.argv if argv is None else argv
    atomic_write_text(run_dir / "command.txt", shlex.join(argv) + "\n")
