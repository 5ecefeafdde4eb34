"""`kaogen train-detector`: a torchvision detector trained on page patches, exact resume, torchrun.

Each step (batch B, over all processes): B training pages drawn at random; from each, a random
patch of the detector's input size (patches.sample_patch: half of them around a face; faces cut by
the patch edge kept when `min_visible` of them is inside), or with `use_patches = false` the whole
page (torchvision then resizes it to fit the input); mirrored half of the time. The model's own
losses (torchvision's) are summed in float32; the forward pass runs under bfloat16 autocast with
`amp` (the CPU runs what CUDA runs). SGD or AdamW with linear warm-up, gradient-norm clipping.

Run folder (RUNS/NNNNN-detector/): config.json, command.txt, snapshot-SSSSSSSS.pt (model,
optimiser, step, every rank's RNG state; the last `keep` kept), detector.pt (what `kaogen detect`
and `evaluate-detector` load), metrics.jsonl, samples/ (dev pages with predicted boxes in red and
true ones in green, loss curves). A non-finite loss stops the run; nothing broken is saved. Under
torchrun every process draws its own B / world inputs and gradients are averaged (all-reduce).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kaogen.atomic import atomic_write_text
from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.detect.bundle import Detector
from kaogen.detect.config import DetectConfig
from kaogen.detect.data import PageSet
from kaogen.detect.models import DetectorSpec, build_detector
from kaogen.detect.patches import hflip, sample_patch
from kaogen.device import autocast, restore_rng, rng_state
from kaogen.distributed import all_gather_objects, dist_info, sync_grads
from kaogen.errors import KaogenError
from kaogen.images import save_image

SNAPSHOT_KIND = "detector-train"


def spec_of(cfg: DetectConfig) -> DetectorSpec:
    """The detector's input: the patch (its short and long side) in both modes, so that patched and
    whole-page training differ only in what is fed, as in the seed's comparison."""
    w, h = cfg.patch
    return DetectorSpec(arch=cfg.arch, min_size=min(w, h), max_size=max(w, h), pretrained=cfg.pretrained,
                        tiny_width=cfg.tiny_width)


class DetectorTrainer:
    def __init__(self, cfg: DetectConfig, pages: PageSet, run: Path, device="cpu", seed: int = 0,
                 samples: PageSet | None = None):
        if len(pages) == 0:
            raise KaogenError("no training pages (check --split and pages.json)")
        if len(cfg.patch) != 2 or min(cfg.patch) < 32:
            raise KaogenError(f"patch must be [width, height] of at least 32 px, not {list(cfg.patch)}")
        self.cfg, self.pages, self.run, self.device = cfg, pages, Path(run), torch.device(device)
        self.samples = samples if samples is not None and len(samples) else pages
        self.rank, self.world = dist_info()
        self.local_batch = cfg.batch // self.world
        if self.local_batch * self.world != cfg.batch or self.local_batch < 1:
            raise KaogenError(f"batch {cfg.batch} does not split over {self.world} processes")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = build_detector(spec_of(cfg)).to(self.device)
        if self.world > 1:
            for t in list(self.model.parameters()) + list(self.model.buffers()):
                torch.distributed.broadcast(t.data, 0)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        else:
            self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.seed = seed
        self.gen = torch.Generator().manual_seed(seed * 7919 + self.rank)    # pages, patches, flips
        torch.manual_seed(seed * 7919 + self.rank)                           # torchvision's samplers
        self.step = 0
        self.metrics = self.run / "metrics.jsonl"
        (self.run / "samples").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------- state
    def detector(self) -> Detector:
        return Detector(self.model, spec_of(self.cfg), self.cfg.patch, self.cfg.use_patches, self.cfg.overlap,
                        self.cfg.threshold, self.pages.long_side, {"step": self.step})

    def snapshot(self) -> None:
        rngs = all_gather_objects(rng_state({"data": self.gen}, self.device))     # every rank's, in rank order
        if self.rank != 0:
            return
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                 "rng": {str(r): st for r, st in enumerate(rngs)}}
        meta = {"step": self.step, "world": self.world}
        save_checkpoint(self.run / f"snapshot-{self.step:08d}.pt", Checkpoint(SNAPSHOT_KIND, asdict(self.cfg), state, meta))
        self.detector().save(self.run / "detector.pt", {"step": self.step})
        for old in sorted(self.run.glob("snapshot-*.pt"))[: -self.cfg.keep]:
            old.unlink()

    def resume(self) -> bool:
        snaps = sorted(self.run.glob("snapshot-*.pt"))
        if not snaps:
            return False
        ck = load_checkpoint(snaps[-1], kind=SNAPSHOT_KIND)      # to the CPU; load_state_dict moves
        c = ck.config
        if (c.get("arch"), c.get("tiny_width"), list(c.get("patch", ()))) != (self.cfg.arch, self.cfg.tiny_width, list(self.cfg.patch)):
            raise KaogenError(f"{snaps[-1]} holds another detector than this config; start a new run")
        self.model.load_state_dict(ck.state["model"])
        self.opt.load_state_dict(ck.state["opt"])
        self.step = ck.meta["step"]
        rngs = ck.state.get("rng", {})
        if str(self.rank) in rngs and ck.meta.get("world", 1) == self.world:
            restore_rng(rngs[str(self.rank)], {"data": self.gen}, self.device)
        else:       # another number of processes: derived states, ranks still draw different inputs
            derived = (self.seed * 7919 + self.rank) * 1_000_003 + self.step
            self.gen.manual_seed(derived)
            torch.manual_seed(derived)
        if self.metrics.is_file():
            keep = [ln for ln in self.metrics.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step]
            atomic_write_text(self.metrics, "".join(ln + "\n" for ln in keep))
        return True

    # ------------------------------------------------------------------------------- one step
    def batch(self) -> tuple[list[torch.Tensor], list[dict]]:
        cfg, images, targets = self.cfg, [], []
        for _ in range(self.local_batch):
            i = int(torch.randint(len(self.pages), (), generator=self.gen))
            img, boxes = self.pages.item(i)
            if cfg.use_patches:
                img, boxes = sample_patch(img, boxes, cfg.patch[0], cfg.patch[1], self.gen, cfg.min_visible, cfg.face_bias)
            if cfg.hflip and float(torch.rand((), generator=self.gen)) < 0.5:
                img, boxes = hflip(img, boxes)
            images.append(img.to(self.device, non_blocking=True))
            targets.append({"boxes": boxes.to(self.device), "labels": torch.ones(len(boxes), dtype=torch.int64, device=self.device)})
        return images, targets

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        lr = cfg.lr * min(1.0, (self.step + 1) / max(cfg.warmup, 1))
        for g in self.opt.param_groups:
            g["lr"] = lr
        images, targets = self.batch()
        self.model.train()
        with autocast(self.device, cfg.amp):
            losses = self.model(images, targets)
        loss = sum(v.float() for v in losses.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        sync_grads(self.model)
        if cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.opt.step()
        self.step += 1
        names = ["loss", *losses]
        values = dict(zip(names, torch.stack([loss.detach(), *(v.detach().float() for v in losses.values())]).tolist()))
        if not all(math.isfinite(v) for v in values.values()):
            raise KaogenError(f"training diverged at step {self.step} (loss not finite); nothing was saved from this "
                              f"state; the last snapshot is {(sorted(self.run.glob('snapshot-*.pt')) or ['none'])[-1]}")
        return {**values, "lr": lr}

    # ------------------------------------------------------------------------------- loop
    def train(self, progress: bool = True) -> None:
        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, unit="step", desc="detector",
                   disable=not progress or self.rank != 0)
        acc: dict[str, list[float]] = {}
        t0, s0 = time.time(), self.step
        while self.step < cfg.steps:
            out = self.train_step()
            for k, v in out.items():
                acc.setdefault(k, []).append(v)
            bar.update(1)
            bar.set_postfix(loss=f"{out['loss']:.3f}")
            last = self.step >= cfg.steps
            if self.rank == 0 and (self.step % cfg.log_every == 0 or last):
                row = {"step": self.step, **{k: float(np.mean(v)) for k, v in acc.items()},
                       "sec_per_step": (time.time() - t0) / max(self.step - s0, 1)}
                with open(self.metrics, "a") as f:
                    f.write(json.dumps(row) + "\n")
                acc, t0, s0 = {}, time.time(), self.step
            if self.step % cfg.snapshot_every == 0 or last:
                self.snapshot()
                if self.rank == 0:
                    self.write_samples()
        bar.close()

    @torch.no_grad()
    def write_samples(self) -> None:
        from kaogen.detect.annotations import draw_boxes
        from kaogen.plot import line_plot

        det = self.detector()
        for i in range(min(self.cfg.sample_pages, len(self.samples))):
            page, truth = self.samples.item(i)
            boxes, scores = det.detect(page)
            save_image(self.run / "samples" / f"page{i}-{self.step:08d}.png", draw_boxes(page, truth, boxes, scores))
        self.model.train()
        rows = [json.loads(ln) for ln in self.metrics.read_text().splitlines() if ln.strip()] if self.metrics.is_file() else []
        keys = [k for k in (rows[-1] if rows else {}) if k not in ("step", "sec_per_step", "lr")]
        line_plot({k: [(r["step"], r[k]) for r in rows if k in r] for k in keys}, self.run / "samples" / "curves.png")
