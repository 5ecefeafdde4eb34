"""Shared fixtures: the real KaoKore material in ../shared (skipped when absent), tiny roots."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "kaokore"
V13 = SHARED / "v1.3"
SAMPLES = SHARED / "samples"


@pytest.fixture
def v13() -> Path:
    if not (V13 / "labels.csv").is_file():
        pytest.skip("../shared/kaokore/v1.3 is not present")
    return V13


@pytest.fixture
def samples() -> Path:
    if not (SAMPLES / "labels.csv").is_file():
        pytest.skip("../shared/kaokore/samples is not present")
    return SAMPLES


@pytest.fixture
def sample_root(tmp_path: Path, samples: Path) -> Path:
    """A KaoKore root built from the 30 real sample faces: labels, tags, a split, images_256/."""
    root = tmp_path / "kaokore"
    (root / "images_256").mkdir(parents=True)
    rows = list(csv.DictReader((samples / "labels.csv").open()))
    works = ["病草子", "絵本徒然草", "源氏物語"]
    with (root / "labels.csv").open("w", newline="") as f, (root / "original_tags.txt").open("w") as t, \
            (root / "urls.txt").open("w") as u:
        w = csv.writer(f)
        w.writerow(["image", "gender", "status", "set"])
        for i, row in enumerate(rows):
            name = f"{i:08d}.jpg"
            shutil.copyfile(samples / row["image"], root / "images_256" / name)
            split = "train" if i % 5 < 3 else "dev" if i % 5 == 3 else "test"
            w.writerow([name, row["gender"], row["status"], split])
            t.write(f"{name}:原典={works[i % 3]};向き={'横' if i % 2 else '四分の三'};所蔵=京都大学;制作年=\n")
            u.write(f"http://iiif.example.org/iiif/work/{i}.tif/0,0,100,100/256,256/0/default.jpg\n")
    return root


# Devices a test can run on: the CPU always, CUDA when present. A test parametrised with
# `@pytest.mark.parametrize("device", DEVICES)` runs on both; its CUDA case carries the `cuda`
# marker, so `pytest -m cuda` (benchmarks/gpu.py) runs exactly the CUDA cases.
import torch  # noqa: E402

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda,
                                           pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]),
]


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: the CUDA case of a device-parametrised test (benchmarks/gpu.py runs them)")
    # CUDA cases compare against CPU results: TF32 (cuDNN's default for float32 convolutions on
    # Ampere and later) would put 1e-3 relative errors into them
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def torchrun(command: str, *args, cwd, timeout: int = 300):
    """`torchrun --nproc_per_node 2 -m kaogen.cli.main COMMAND ARGS --no-progress` on a free port
    (a fixed one may be held by another program), one thread per process; skips without torchrun."""
    import os
    import shutil
    import socket
    import subprocess

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    return subprocess.run(["torchrun", "--nproc_per_node", "2", "--master_port", port, "-m", "kaogen.cli.main", command,
                           *map(str, args), "--no-progress"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=timeout, cwd=cwd)


class LoopbackServer:
    """An HTTP server on 127.0.0.1 (a free port) in a daemon thread, for `with` blocks; subclasses build
    their handler class and call `super().__init__(Handler)`."""

    def __init__(self, handler):
        import threading
        from http.server import ThreadingHTTPServer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)   # shutdown() waits up to one poll

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
