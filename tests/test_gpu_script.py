"""benchmarks/gpu.py, the check only a lent GPU runs: it must say so and exit 0 without CUDA, and its
sections' code must have run (on the CPU, at toy sizes) before a GPU is ever lent for it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the script would run for real")
def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().count("\n") == 0 and "no CUDA device" in r.stdout, r.stdout + r.stderr


def test_every_section_runs_on_the_cpu_at_toy_sizes(tmp_path):
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--only", "gan,l2p,ist", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["ok"] for row in rows] == [True] * 5, rows
    resume = next(row for row in rows if "resume" in row["check"])
    assert resume["max_abs_diff"] == 0.0              # on the CPU the resumed run is the straight run, bit for bit
    assert "| check | result | ok |" in r.stdout
