"""The GPU check: what only a real CUDA device can show, in one run of at most 8 minutes on one H100/H200.

    python benchmarks/gpu.py [--json gpu-benchmark.json] [--quick]

Rows (each section runs on its own: a failure is a row that says FAILED and why, the rest still runs):
  pytest -m cuda          every device-parametrised test's CUDA case (tests/conftest.py DEVICES)
  train-gan 256 px        the official `auto` size at 256 px (mapping 2, channel_base 16384, channel_max
                          512), batch 32, amp (bfloat16), ADA p = 0.2, synthetic reals: s/kimg, peak
                          memory, host syncs per step (torch.cuda.set_sync_debug_mode)
  train-gan resume        a small run snapshotted and resumed on CUDA: Adam steps on the CPU, the next
                          step against the uninterrupted run (largest weight difference)
  sample 256 px           generator images/s at batch 64 (G_ema, constant noise), to host memory
  l2p batched painting    the shipped agent, 128 px, 200 strokes, batch 256: images/s; host syncs per
                          painting at batch 1
  ist 256 px face         the shipped kabura painter, one 256 px face, default options: seconds; syncs

Without CUDA it prints one line and exits 0. The table is printed as Markdown and written as JSON.
`--cpu-smoke` runs every section's code on the CPU at toy sizes (no sync counts, no timings worth
reading): the test suite uses it, so the script that only a lent GPU can run has run before it gets one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from common import machine_line, parse  # noqa: E402


SMOKE = False          # --cpu-smoke: the CPU, toy sizes


def device() -> torch.device:
    return torch.device("cpu" if SMOKE else "cuda")


def synchronize() -> None:
    if not SMOKE:
        torch.cuda.synchronize()


class SyncWarnings:
    """Count the host synchronisations CUDA reports while the block runs (sync debug mode 'warn')."""

    count = -1

    def __enter__(self):
        if SMOKE:
            return self
        self._rec = warnings.catch_warnings(record=True)
        self.records = self._rec.__enter__()
        warnings.simplefilter("always")
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        if SMOKE:
            return False
        torch.cuda.set_sync_debug_mode("default")
        self._rec.__exit__(*exc)
        self.count = sum("synchroniz" in str(w.message) for w in self.records)
        return False


def timed(fn, repeat: int = 1) -> float:
    synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    synchronize()
    return (time.perf_counter() - t) / repeat


def section_tests(args) -> list[dict]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests"],
                       cwd=ROOT, capture_output=True, text=True, timeout=args.test_timeout)
    tail = [ln for ln in r.stdout.splitlines() if ln.strip()][-1:] or ["(no output)"]
    failed = [ln for ln in r.stdout.splitlines() if ln.startswith("FAILED")]
    for ln in failed:
        print("   ", ln, file=sys.stderr)
    return [{"check": "pytest -m cuda", "result": tail[0], "ok": r.returncode == 0,
             "seconds": round(time.perf_counter() - t, 1)}]


def section_gan(args) -> list[dict]:
    from kaogen.gan.config import GANConfig, NetworkConfig
    from kaogen.gan.data import RealSampler
    from kaogen.gan.sample import GeneratorBundle
    from kaogen.gan.train import GANTrainer

    dev = device()
    rows = []
    R = 16 if SMOKE else 256
    net = NetworkConfig(resolution=R, mapping_layers=2, channel_base=256 if SMOKE else 16384,
                        channel_max=32 if SMOKE else 512, **({"z_dim": 32, "w_dim": 32} if SMOKE else {}))
    cfg = GANConfig(net=net, batch=8 if SMOKE else 32, amp=True, kimg=1000, snapshot_kimg=1000)
    g = torch.Generator().manual_seed(0)
    reals = torch.randint(0, 256, (16 if SMOKE else 256, 3, R, R), dtype=torch.uint8, generator=g)
    tr = GANTrainer(cfg, RealSampler(reals, None, 0, True), tempfile.mkdtemp(), dev, seed=0)
    tr.augment.p = 0.2
    for _ in range(1 if SMOKE else 2):
        tr.train_step()                       # warm-up (cuDNN autotuning, allocator)
    if not SMOKE:
        torch.cuda.reset_peak_memory_stats()
    steps = 1 if SMOKE else 4 if args.quick else 10
    dt = timed(tr.train_step, steps)
    peak = 0.0 if SMOKE else torch.cuda.max_memory_allocated() / 2 ** 30
    with SyncWarnings() as sw:
        tr.train_step()
    rows.append({"check": f"train-gan {R} px, batch {cfg.batch}, amp, 2-layer mapping",
                 "result": f"{dt / cfg.batch * 1000:.2f} s/kimg, peak {peak:.1f} GiB, {sw.count} host syncs per step",
                 "ok": True, "s_per_kimg": dt / cfg.batch * 1000, "peak_gib": peak, "syncs_per_step": sw.count,
                 "params_G": sum(p.numel() for p in tr.G.parameters()),
                 "params_D": sum(p.numel() for p in tr.D.parameters())})

    bundle = GeneratorBundle(tr.G_ema)
    seeds = list(range(8 if SMOKE else 256))
    bundle.generate(seeds[:64], batch=64)
    dt = timed(lambda: bundle.generate(seeds, batch=64))
    rows.append({"check": f"sample {R} px, batch 64", "result": f"{len(seeds) / dt:.0f} images/s", "ok": True,
                 "images_per_s": len(seeds) / dt})
    del tr, bundle
    if not SMOKE:
        torch.cuda.empty_cache()

    # resume on CUDA: straight run vs snapshot + resume, same seed
    r = 16 if SMOKE else 32
    small = NetworkConfig(resolution=r, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32)
    reals = torch.randint(0, 256, (64, 3, r, r), dtype=torch.uint8, generator=g)
    with tempfile.TemporaryDirectory() as tmp:
        mk = dict(net=small, batch=8 if SMOKE else 16, amp=True, snapshot_kimg=0.016 if SMOKE else 0.032, pl_every=2,
                  r1_every=2, ada_kimg=1.0)
        a = GANTrainer(GANConfig(**mk, kimg=2 * mk["snapshot_kimg"]), RealSampler(reals, None, 0, True), Path(tmp) / "a", dev, seed=3)
        a.train(progress=False)
        b = GANTrainer(GANConfig(**mk, kimg=mk["snapshot_kimg"]), RealSampler(reals, None, 0, True), Path(tmp) / "b", dev, seed=3)
        b.train(progress=False)
        c = GANTrainer(GANConfig(**mk, kimg=2 * mk["snapshot_kimg"]), RealSampler(reals, None, 0, True), Path(tmp) / "b", dev, seed=3)
        assert c.resume()
        steps_on_cpu = all(st["step"].device.type == "cpu" for o in (c.opt_G, c.opt_D) for st in o.state.values())
        c.train(progress=False)
        diff = max((p - q).abs().max().item() for p, q in zip(a.G.state_dict().values(), c.G.state_dict().values())
                   if p.is_floating_point())
    rows.append({"check": "train-gan resume on CUDA", "ok": steps_on_cpu,
                 "result": f"Adam steps on CPU: {steps_on_cpu}; resumed vs straight: max |dG| {diff:.2e}"
                           f" (0 is bit-exact; see README on CUDA determinism)", "max_abs_diff": diff})
    return rows


def section_l2p(args) -> list[dict]:
    from kaogen.l2p import Agent, PaintOptions, paint
    from kaogen.render.demo import demo_picture

    dev = device()
    agent = Agent.load(device=dev)
    face = demo_picture(128).to(dev)
    n = 2 if SMOKE else 64 if args.quick else 256
    steps = 2 if SMOKE else 40                 # 40 actions of 5 strokes: 200 strokes
    paint(agent, [face] * 4, PaintOptions(steps=steps))
    dt = timed(lambda: paint(agent, [face] * n, PaintOptions(steps=steps)))
    with SyncWarnings() as sw:
        paint(agent, [face], PaintOptions(steps=steps))
    with SyncWarnings() as sw_plan:
        paint(agent, [face], PaintOptions(steps=steps, plan=10))
    return [{"check": f"l2p batched painting, 128 px faces (the agent's 64 px canvas), 200 strokes, batch {n}",
             "result": f"{n / dt:.0f} images/s; host syncs per painting {sw.count} (with --plan 10: {sw_plan.count})",
             "ok": True, "images_per_s": n / dt, "syncs_per_painting": sw.count, "syncs_plan10": sw_plan.count}]


def section_ist(args) -> list[dict]:
    from kaogen.ist.painter import shipped_painter
    from kaogen.ist.transfer import ISTOptions, transfer
    from kaogen.render.demo import demo_picture

    dev = device()
    painter = shipped_painter("classic/kabura", device=dev)
    face = demo_picture(256).to(dev)
    size = 128 if SMOKE else 256
    opts = ISTOptions(size=size, steps=2 if SMOKE else 30 if args.quick else 150, loss="offline")
    transfer(painter, face, ISTOptions(size=size, steps=2, loss="offline"))
    dt = timed(lambda: transfer(painter, face, opts))
    with SyncWarnings() as sw:
        transfer(painter, face, ISTOptions(size=size, steps=2 if SMOKE else 10, loss="offline"))
    return [{"check": f"ist {size} px face, {opts.steps} steps, offline loss",
             "result": f"{dt:.2f} s per face; host syncs per 10-step painting {sw.count}",
             "ok": True, "seconds": dt, "syncs_10_steps": sw.count}]


SECTIONS = {"gan": section_gan, "l2p": section_l2p, "ist": section_ist, "tests": section_tests}   # tests last:
# they get what is left of the 8 minutes (--budget), so the measurements always come back


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="gpu-benchmark.json", help="where to write the table as JSON")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--budget", type=int, default=470, help="seconds for the whole run; pytest -m cuda gets the rest")
    ap.add_argument("--cpu-smoke", action="store_true", help="run every section's code on the CPU at toy sizes")
    args = parse(ap)
    global SMOKE
    SMOKE = args.cpu_smoke
    if not torch.cuda.is_available() and not SMOKE:
        print("benchmarks/gpu.py: no CUDA device is present; nothing to check on this machine")
        return 0
    print(machine_line(args))
    rows = []
    start = time.perf_counter()
    for name in args.only.split(","):
        t = time.perf_counter()
        args.test_timeout = max(30, int(args.budget - (t - start)))
        try:
            rows += SECTIONS[name](args)
        except Exception as e:   # a failure is a finding: report it and go on with the next section
            traceback.print_exc()
            rows.append({"check": name, "result": f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:160]}",
                         "ok": False})
        print(f"[{name}: {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
    print("\n| check | result | ok |\n| --- | --- | --- |")
    for r in rows:
        print(f"| {r['check']} | {r['result']} | {'yes' if r['ok'] else 'NO'} |")
    info = {"machine": machine_line(args), "gpu": "none (--cpu-smoke)" if SMOKE else torch.cuda.get_device_name(),
            "rows": rows}
    Path(args.json).write_text(json.dumps(info, indent=1))
    print(f"\nwrote {args.json}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
