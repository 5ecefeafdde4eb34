"""`kaogen train-gan`: StyleGAN2 training with adaptive augmentation, exact resume, several GPUs.

Each step (batch B):
  G:    non-saturating logistic loss softplus(-D(aug(G(z, c)))), style mixing;
        every pl_every steps the path length penalty on half a batch (lazy regularisation).
  D:    softplus(D(aug(fake))) + softplus(-D(aug(real))); every r1_every steps R1 = gamma/2 |grad D(real)|^2.
  EMA:  G_ema <- lerp toward G with half-life ema_kimg thousand images.
  ADA:  p follows E[sign(D(aug(real)))] (augment.py).

Run folder (RUNS/NNNNN-gan/): config.json, command.txt, snapshot-KKKKKK.pt (everything: networks,
EMA, optimisers, kimg, augmentation p and its statistics, path-length mean, every RNG state; the
last `keep` kept), generator.pt (G_ema: what `kaogen sample` loads), metrics.jsonl, samples/
(grids at fixed seeds, loss curves). A non-finite loss stops the run with a message; nothing broken
is saved. With torchrun, each process trains on B / world images and gradients are averaged
across processes (all-reduce) before every optimiser step, as DistributedDataParallel does.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from kaogen.atomic import atomic_write_text
from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.errors import KaogenError
from kaogen.gan.augment import Augment
from kaogen.gan.config import GANConfig
from kaogen.gan.data import CLASS_NAMES, RealSampler
from kaogen.gan.networks import Discriminator, Generator
from kaogen.gan.sample import GeneratorBundle
from kaogen.images import save_image
from kaogen.plot import line_plot

SNAPSHOT_KIND = "gan-train"
GRID_SEEDS = list(range(16))


def dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def sync_grads(module: torch.nn.Module) -> None:
    rank, world = dist_info()
    if world == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad /= world


class GANTrainer:
    def __init__(self, cfg: GANConfig, sampler: RealSampler, run: Path, device="cpu", seed: int = 0):
        self.cfg, self.sampler, self.run, self.device = cfg, sampler, Path(run), torch.device(device)
        self.rank, self.world = dist_info()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.G = Generator(cfg.net).to(self.device)
            self.D = Discriminator(cfg.net).to(self.device)
        if self.world > 1:
            for m in (self.G, self.D):
                for t in list(m.parameters()) + list(m.buffers()):
                    torch.distributed.broadcast(t.data, 0)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # lazy regularisation: Adam hyper-parameters corrected for the interval (StyleGAN2, appendix B)
        def adam(params, every):
            r = every / (every + 1)
            return torch.optim.Adam(params, lr=cfg.lr * r, betas=(cfg.betas[0] ** r, cfg.betas[1] ** r), eps=1e-8)
        self.opt_G, self.opt_D = adam(self.G.parameters(), cfg.pl_every), adam(self.D.parameters(), cfg.r1_every)
        self.augment = Augment(cfg.augment, cfg.ada_target, cfg.ada_interval, cfg.ada_kimg)
        self.gen = torch.Generator().manual_seed(seed * 7919 + self.rank)
        torch.manual_seed(seed * 7919 + self.rank)          # z, noise inputs and kornia's draws
        self.nimg, self.step, self.pl_mean = 0, 0, torch.zeros([], device=self.device)
        self.metrics = self.run / "metrics.jsonl"
        (self.run / "samples").mkdir(parents=True, exist_ok=True)
        self.local_batch = cfg.batch // self.world
        if self.local_batch * self.world != cfg.batch or self.local_batch < 1:
            raise KaogenError(f"batch {cfg.batch} does not split over {self.world} processes")
        self.amp = cfg.amp and self.device.type == "cuda"

    # ------------------------------------------------------------------------------- state
    def check_replicas(self) -> None:
        """With several processes: every replica must hold the same weights (same init, averaged gradients)."""
        if self.world == 1:
            return
        total = torch.stack([p.detach().double().sum() for p in self.G.parameters()]).sum().reshape(1)
        gathered = [torch.zeros_like(total) for _ in range(self.world)]
        torch.distributed.all_gather(gathered, total)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise KaogenError("the training processes' generators differ: replicas diverged")

    def snapshot(self) -> None:
        if self.rank != 0:
            return
        kimg = self.nimg / 1000
        state = {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                 "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "pl_mean": self.pl_mean.cpu(),
                 "rng_data": self.gen.get_state(), "rng_torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.get_rng_state()
        meta = {"nimg": self.nimg, "step": self.step, "augment": self.augment.state()}
        save_checkpoint(self.run / f"snapshot-{int(self.nimg):09d}.pt", Checkpoint(SNAPSHOT_KIND, asdict(self.cfg), state, meta))
        self.bundle().save(self.run / "generator.pt", {"kimg": kimg, "augment_p": self.augment.p})
        for old in sorted(self.run.glob("snapshot-*.pt"))[: -self.cfg.keep]:
            old.unlink()

    def bundle(self) -> GeneratorBundle:
        names = list(CLASS_NAMES.get(self.cfg.cond, ()))
        return GeneratorBundle(self.G_ema, self.cfg.cond, names)

    def resume(self) -> bool:
        snaps = sorted(self.run.glob("snapshot-*.pt"))
        if not snaps:
            return False
        ck = load_checkpoint(snaps[-1], kind=SNAPSHOT_KIND)
        if ck.config["net"] != asdict(self.cfg.net) or ck.config["cond"] != self.cfg.cond:
            raise KaogenError(f"{snaps[-1]} holds other networks than this config; start a new run")
        for name in ("G", "D", "G_ema"):
            getattr(self, name).load_state_dict(ck.state[name])
        self.opt_G.load_state_dict(ck.state["opt_G"])
        self.opt_D.load_state_dict(ck.state["opt_D"])
        self.pl_mean = ck.state["pl_mean"].to(self.device)
        self.gen.set_state(ck.state["rng_data"])
        torch.set_rng_state(ck.state["rng_torch"])
        if self.device.type == "cuda" and "rng_cuda" in ck.state:
            torch.cuda.set_rng_state(ck.state["rng_cuda"], self.device)
        self.nimg, self.step = ck.meta["nimg"], ck.meta["step"]
        self.augment.load(ck.meta["augment"])
        if self.metrics.is_file():
            keep = [ln for ln in self.metrics.read_text().splitlines() if ln.strip() and json.loads(ln)["kimg"] * 1000 <= self.nimg + 1e-6]
            atomic_write_text(self.metrics, "".join(ln + "\n" for ln in keep))
        return True

    # ------------------------------------------------------------------------------- one step
    def fake_labels(self, n: int) -> torch.Tensor:
        idx = torch.randint(len(self.sampler), (n,), generator=self.gen)
        return self.sampler.onehot(idx).to(self.device)

    def generate(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ws = self.G.mapping(z, c, track_w_avg=True)
        if self.cfg.style_mixing > 0 and torch.rand([]) < self.cfg.style_mixing:
            cut = int(torch.randint(1, ws.shape[1], []))
            ws2 = self.G.mapping(torch.randn_like(z), c)
            ws = torch.cat([ws[:, :cut], ws2[:, cut:]], 1)
        return self.G.synthesis(ws), ws

    def train_step(self) -> dict[str, float]:
        cfg, B, dev = self.cfg, self.local_batch, self.device
        out = {}
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp)
        # --- generator
        self.D.requires_grad_(False)
        z, c = torch.randn(B, cfg.net.z_dim, device=dev), self.fake_labels(B)
        with autocast:
            fake, _ = self.generate(z, c)
            g_loss = F.softplus(-self.D(self.augment(fake), c).float()).mean()
        self.opt_G.zero_grad(set_to_none=True)
        g_loss.backward()
        out["g_loss"] = g_loss.item()
        if cfg.pl_weight > 0 and self.step % cfg.pl_every == 0:
            n = max(1, B // 2)
            z2, c2 = torch.randn(n, cfg.net.z_dim, device=dev), self.fake_labels(n)
            img, ws = self.generate(z2, c2)
            noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            grad, = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()
            self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), cfg.pl_decay)
            pl = ((lengths - self.pl_mean) ** 2).mean() * cfg.pl_weight * cfg.pl_every
            (pl + img[:, 0, 0, 0].sum() * 0).backward()
            out["pl"] = pl.item()
        sync_grads(self.G)
        self.opt_G.step()
        self.D.requires_grad_(True)
        # --- discriminator
        real, rc = self.sampler.sample(B, self.gen, dev)
        cf = self.fake_labels(B)
        with torch.no_grad(), autocast:
            fake, _ = self.generate(torch.randn(B, cfg.net.z_dim, device=dev), cf)
        with autocast:
            lf = self.D(self.augment(fake.float()), cf).float()
            lr_ = self.D(self.augment(real), rc).float()
            d_loss = F.softplus(lf).mean() + F.softplus(-lr_).mean()
        self.opt_D.zero_grad(set_to_none=True)
        d_loss.backward()
        self.augment.observe(lr_, cfg.batch)
        out["d_loss"], out["real_sign"] = d_loss.item(), lr_.detach().sign().mean().item()
        if cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0:
            x = real.detach().requires_grad_(True)
            logits = self.D(self.augment(x), rc)
            grad, = torch.autograd.grad(logits.sum(), x, create_graph=True)
            r1 = grad.square().sum((1, 2, 3)).mean() * (cfg.r1_gamma / 2) * cfg.r1_every
            r1.backward()
            out["r1"] = r1.item()
        sync_grads(self.D)
        self.opt_D.step()
        # --- EMA
        beta = 0.5 ** (cfg.batch / max(cfg.ema_kimg * 1000, 1e-8))
        with torch.no_grad():
            for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
                pe.lerp_(p, 1 - beta)
            for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
                be.copy_(b)
        self.step += 1
        self.nimg += cfg.batch
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise KaogenError(f"training diverged at {self.nimg / 1000:.1f} kimg ({', '.join(bad)} not finite); "
                              f"nothing was saved from this state; the last snapshot is "
                              f"{(sorted(self.run.glob('snapshot-*.pt')) or ['none'])[-1]}")
        return out

    # ------------------------------------------------------------------------------- loop
    def train(self, progress: bool = True) -> None:
        cfg = self.cfg
        total = int(cfg.kimg * 1000)
        every = int(cfg.snapshot_kimg * 1000)
        bar = tqdm(total=total, initial=self.nimg, unit="img", desc="gan", disable=not progress or self.rank != 0)
        acc: dict[str, list[float]] = {}
        t0, n0 = time.time(), self.nimg
        while self.nimg < total:
            out = self.train_step()
            for k, v in out.items():
                acc.setdefault(k, []).append(v)
            bar.update(cfg.batch)
            bar.set_postfix(p=f"{self.augment.p:.3f}", g=f"{out['g_loss']:.3f}", d=f"{out['d_loss']:.3f}")
            if self.nimg // every != (self.nimg - cfg.batch) // every or self.nimg >= total:
                self.check_replicas()
                if self.rank == 0:
                    row = {"kimg": self.nimg / 1000, **{k: float(np.mean(v)) for k, v in acc.items()},
                           "augment_p": self.augment.p, "rt": self.augment.rt,
                           "sec_per_kimg": (time.time() - t0) / max((self.nimg - n0) / 1000, 1e-9)}
                    with open(self.metrics, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    self.snapshot()
                    self.write_grid()
                acc, t0, n0 = {}, time.time(), self.nimg
        bar.close()

    @torch.no_grad()
    def write_grid(self) -> None:
        b = self.bundle()
        if b.class_names:        # one row of 8 seeds per class
            rows = [torch.cat(list(b.generate(GRID_SEEDS[:8], label=name)), 2) for name in b.class_names]
        else:
            imgs = b.generate(GRID_SEEDS)
            rows = [torch.cat(list(imgs[i:i + 8]), 2) for i in range(0, len(imgs), 8)]
        save_image(self.run / "samples" / f"grid-{int(self.nimg):09d}.png", torch.cat(rows, 1))
        data = [json.loads(ln) for ln in self.metrics.read_text().splitlines() if ln.strip()]
        line_plot({k: [(r["kimg"], r[k]) for r in data if k in r] for k in ("g_loss", "d_loss", "augment_p", "r1")},
                  self.run / "samples" / "curves.png")


def setup_distributed() -> None:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def teardown_distributed() -> None:
    """Leave the process group together: every rank waits for rank 0's last writes, then the group is
    destroyed before the interpreter exits (left to exit-time destructors, gloo sometimes aborted a
    rank whose peer had already gone, failing the launch after a finished run)."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
