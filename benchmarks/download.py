"""Downloader throughput against a loopback IIIF server: `python benchmarks/download.py [N] [WORKERS]`.

Serves N small JPEG faces (tests/test_download.py's server, which adds no delay for "ok" images)
and prints images/s for a cold download and for the resume pass that only checks the files.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_download import IIIFServer, make_metadata  # noqa: E402

from kaogen.data.download import DownloadOptions, download  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    with tempfile.TemporaryDirectory() as tmp, IIIFServer() as srv:
        meta = make_metadata(Path(tmp) / "meta", ["ok"] * n)
        opts = DownloadOptions(root=str(Path(tmp) / "root"), metadata=str(meta), mirror=srv.url,
                               workers=workers, progress=False)
        cold = download(opts)
        warm = download(opts)
    print("pass   | images | workers | seconds | images/s")
    print(f"cold   | {n:6d} | {workers:7d} | {cold.seconds:7.2f} | {cold.fetched / cold.seconds:8.0f}")
    print(f"resume | {n:6d} | {workers:7d} | {warm.seconds:7.2f} | {warm.present / warm.seconds:8.0f}")


if __name__ == "__main__":
    main()
