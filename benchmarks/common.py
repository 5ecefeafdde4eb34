"""What every benchmark prints first, and the process setting it runs under.

    args = parse(ap)          # adds --default-allocator, applies kaogen.runtime.tune_allocator
    print(machine_line(args)) # machine, torch, threads, GPU, allocator
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

from kaogen.runtime import tune_allocator


def parse(ap: argparse.ArgumentParser) -> argparse.Namespace:
    ap.add_argument("--default-allocator", action="store_true",
                    help="keep glibc's malloc thresholds (the CLI raises them: kaogen/runtime.py)")
    args = ap.parse_args()
    args.allocator = "glibc default" if args.default_allocator else \
        ("tuned as the CLI runs" if tune_allocator() else "default (tuning unavailable)")
    return args


def machine_line(args: argparse.Namespace) -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"threads {torch.get_num_threads()}, GPU {gpu}, allocator {args.allocator}")
