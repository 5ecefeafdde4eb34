"""`kaogen train-gan`: StyleGAN2 training with adaptive augmentation, exact resume, several GPUs.

Each step (batch B):
  G:    non-saturating logistic loss softplus(-D(aug(G(z, c)))), style mixing; then every pl_every
        steps a separate step on the path length penalty of half a batch (lazy regularisation).
  D:    softplus(D(aug(fake))) + softplus(-D(aug(real))); then every r1_every steps a separate step on
        R1 = gamma/2 |grad D(aug(real))|^2 (gamma: the config's, or auto = 0.0002 res^2 / batch).
  EMA:  G_ema <- lerp toward G with half-life ema_kimg thousand images (ramped up: at most
        ema_rampup x the images shown so far).
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
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from kaogen.atomic import atomic_write_text
from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.device import autocast, restore_rng, rng_state
from kaogen.distributed import all_gather_objects, dist_info, sync_grads
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


class GANTrainer:
    def __init__(self, cfg: GANConfig, sampler: RealSampler, run: Path, device="cpu", seed: int = 0):
        if round(cfg.snapshot_kimg * 1000) < 1:     # the loop snapshots every round(snapshot_kimg * 1000) images
            raise KaogenError(f"snapshot_kimg must be at least 0.001 (one image), not {cfg.snapshot_kimg}")
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
        self.augment = Augment(cfg.augment, cfg.ada_target, cfg.ada_interval, cfg.ada_kimg, cfg.ada_ops)
        self.seed = seed
        self.gen = torch.Generator().manual_seed(seed * 7919 + self.rank)   # reals, labels: on the CPU
        torch.manual_seed(seed * 7919 + self.rank)          # z, noise inputs and ADA's draws (CPU and CUDA)
        self.nimg, self.step, self.pl_mean = 0, 0, torch.zeros([], device=self.device)
        self.last_batch = torch.zeros(0, dtype=torch.long)  # indices of the last reals drawn (replica checks)
        self.metrics = self.run / "metrics.jsonl"
        (self.run / "samples").mkdir(parents=True, exist_ok=True)
        self.local_batch = cfg.batch // self.world
        if self.local_batch * self.world != cfg.batch or self.local_batch < 1:
            raise KaogenError(f"batch {cfg.batch} does not split over {self.world} processes")
        self.amp = cfg.amp                      # bfloat16 autocast on any device: the CPU runs what CUDA runs

    # ------------------------------------------------------------------------------- state
    def replica_report(self) -> dict:
        """What every replica must share (weights, ADA's p) and what each must draw for itself (its
        share of the batch), gathered from all processes: {"weights": [...], "p": [...], "batches": [...]}."""
        nets = (self.G, self.D, self.G_ema)
        weights = float(torch.stack([p.detach().double().sum() for m in nets for p in m.parameters()]).sum())
        mine = {"weights": weights, "p": self.augment.p, "batch": self.last_batch.tolist()}
        every = all_gather_objects(mine)
        return {"weights": [e["weights"] for e in every], "p": [e["p"] for e in every],
                "batches": [e["batch"] for e in every]}

    def check_replicas(self) -> dict:
        """With several processes: every replica holds the same weights and p (same init, averaged
        gradients, ADA statistics summed over ranks), and no two ranks drew the same reals (each
        rank has its own random state, also after a resume). Returns the report for metrics.jsonl."""
        if self.world == 1:
            return {}
        rep = self.replica_report()
        if len(set(rep["weights"])) > 1:
            raise KaogenError("the training processes' networks differ: replicas diverged")
        if len(set(rep["p"])) > 1:
            raise KaogenError(f"the training processes' augmentation probabilities differ: {rep['p']}")
        if len({tuple(b) for b in rep["batches"]}) < self.world:
            raise KaogenError("two training processes drew the same reals: their random states collided")
        return {"replica_p": rep["p"], "replica_batches": rep["batches"]}

    def snapshot(self) -> None:
        """Rank 0 writes everything; every rank's random state is gathered into the snapshot (all
        ranks must call this)."""
        rngs = all_gather_objects(rng_state({"data": self.gen}, self.device))
        if self.rank != 0:
            return
        kimg = self.nimg / 1000
        state = {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                 "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "pl_mean": self.pl_mean.cpu(),
                 "rng": {str(r): st for r, st in enumerate(rngs)}}
        meta = {"nimg": self.nimg, "step": self.step, "augment": self.augment.state(), "world": self.world}
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
        # loaded to the CPU: RNG states stay byte tensors, Adam's step counters CPU scalars;
        # load_state_dict moves weights and moments to the parameters' device
        ck = load_checkpoint(snaps[-1], kind=SNAPSHOT_KIND)
        if ck.config["net"] != asdict(self.cfg.net) or ck.config["cond"] != self.cfg.cond:
            raise KaogenError(f"{snaps[-1]} holds other networks than this config; start a new run")
        for name in ("G", "D", "G_ema"):
            getattr(self, name).load_state_dict(ck.state[name])
        self.opt_G.load_state_dict(ck.state["opt_G"])
        self.opt_D.load_state_dict(ck.state["opt_D"])
        self.pl_mean = ck.state["pl_mean"].to(self.device)
        self.nimg, self.step = ck.meta["nimg"], ck.meta["step"]
        rngs = ck.state.get("rng", {})
        if str(self.rank) in rngs and ck.meta.get("world", 1) == self.world:
            restore_rng(rngs[str(self.rank)], {"data": self.gen}, self.device)
        elif "rng_data" in ck.state and self.world == 1:       # snapshots of kaogen <= 0.1 (one process)
            restore_rng({"torch": ck.state["rng_torch"], "gen.data": ck.state["rng_data"]}, {"data": self.gen}, self.device)
        else:
            # another number of processes than the run was saved with: each rank's state is derived
            # from (seed, rank, step), so ranks still draw different batches (not the same sequence
            # as the uninterrupted run, which had other ranks)
            derived = (self.seed * 7919 + self.rank) * 1_000_003 + self.step
            self.gen.manual_seed(derived)
            torch.manual_seed(derived)
        self.augment.load(ck.meta["augment"])
        if self.metrics.is_file():
            keep = [ln for ln in self.metrics.read_text().splitlines() if ln.strip() and json.loads(ln)["kimg"] * 1000 <= self.nimg + 1e-6]
            atomic_write_text(self.metrics, "".join(ln + "\n" for ln in keep))
        return True

    # ------------------------------------------------------------------------------- one step
    def fake_labels(self, n: int) -> torch.Tensor:
        idx = torch.randint(len(self.sampler), (n,), generator=self.gen)
        return self.sampler.onehot(idx).to(self.device, non_blocking=True)

    def generate(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, z_dim), c (B, classes) -> images (B, 3, R, R) float32 (the features in between are
        bfloat16 under autocast), ws float32."""
        ws = self.G.mapping(z, c, track_w_avg=True)
        if self.cfg.style_mixing > 0 and torch.rand([]) < self.cfg.style_mixing:   # CPU draws: no device sync
            cut = int(torch.randint(1, ws.shape[1], []))
            ws2 = self.G.mapping(torch.randn_like(z), c)
            ws = torch.cat([ws[:, :cut], ws2[:, cut:]], 1)
        return self.G.synthesis(ws), ws

    def train_step(self) -> dict[str, float]:
        """One G step, one D step, the EMA; lazy R1 / path-length steps when due.

        With `amp`, the forward passes of G and D run under bfloat16 autocast (on the CPU too);
        the mapping network, the augmentation, every loss and both regularisers stay float32
        (the regularisers' double backward runs entirely outside autocast). Losses are kept on
        the device and read back once per step."""
        cfg, B, dev = self.cfg, self.local_batch, self.device
        out: dict[str, torch.Tensor] = {}
        amp = autocast(dev, self.amp)
        # --- generator
        self.D.requires_grad_(False)
        z, c = torch.randn(B, cfg.net.z_dim, device=dev), self.fake_labels(B)
        with amp:
            fake, _ = self.generate(z, c)
            logits = self.D(self.augment(fake), c)
        g_loss = F.softplus(-logits.float()).mean()
        self.opt_G.zero_grad(set_to_none=True)
        g_loss.backward()
        out["g_loss"] = g_loss.detach()
        sync_grads(self.G)
        self.opt_G.step()
        if cfg.pl_weight > 0 and self.step % cfg.pl_every == 0:      # lazy: its own optimiser step
            self.opt_G.zero_grad(set_to_none=True)
            n = max(1, B // 2)
            z2, c2 = torch.randn(n, cfg.net.z_dim, device=dev), self.fake_labels(n)
            img, ws = self.generate(z2, c2)                       # float32: outside autocast
            noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            grad, = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()
            self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), cfg.pl_decay)
            pl = ((lengths - self.pl_mean) ** 2).mean() * cfg.pl_weight * cfg.pl_every
            (pl + img[:, 0, 0, 0].sum() * 0).backward()
            out["pl"] = pl.detach()
            sync_grads(self.G)
            self.opt_G.step()
        self.D.requires_grad_(True)
        # --- discriminator
        real, rc = self.sampler.sample(B, self.gen, dev)
        self.last_batch = self.sampler.last_index
        cf = self.fake_labels(B)
        with torch.no_grad(), amp:
            fake, _ = self.generate(torch.randn(B, cfg.net.z_dim, device=dev), cf)
        with amp:
            lf = self.D(self.augment(fake), cf).float()
            lr_ = self.D(self.augment(real), rc).float()
        d_loss = F.softplus(lf).mean() + F.softplus(-lr_).mean()
        self.opt_D.zero_grad(set_to_none=True)
        d_loss.backward()
        self.augment.observe(lr_, cfg.batch)
        out["d_loss"], out["real_sign"] = d_loss.detach(), lr_.detach().sign().mean()
        sync_grads(self.D)
        self.opt_D.step()
        gamma = cfg.r1()
        if gamma > 0 and self.step % cfg.r1_every == 0:             # lazy: its own optimiser step
            self.opt_D.zero_grad(set_to_none=True)
            x = real.detach().requires_grad_(True)                 # float32: outside autocast
            logits = self.D(self.augment(x), rc)
            grad, = torch.autograd.grad(logits.sum(), x, create_graph=True)
            r1 = grad.square().sum((1, 2, 3)).mean() * (gamma / 2) * cfg.r1_every
            (r1 + logits.sum() * 0).backward()
            out["r1"] = r1.detach()
            sync_grads(self.D)
            self.opt_D.step()
        # --- EMA (half-life ramped up over the first images, as the official trainer)
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup > 0:
            ema_nimg = min(ema_nimg, (self.nimg + cfg.batch) * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            ema, cur = list(self.G_ema.parameters()), list(self.G.parameters())
            torch._foreach_lerp_(ema, cur, 1 - beta)
            for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
                be.copy_(b)
        self.step += 1
        self.nimg += cfg.batch
        values = dict(zip(out, torch.stack(list(out.values())).float().tolist()))   # the step's one read-back
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise KaogenError(f"training diverged at {self.nimg / 1000:.1f} kimg ({', '.join(bad)} not finite); "
                              f"nothing was saved from this state; the last snapshot is "
                              f"{(sorted(self.run.glob('snapshot-*.pt')) or ['none'])[-1]}")
        return values

    # ------------------------------------------------------------------------------- loop
    def train(self, progress: bool = True) -> None:
        cfg = self.cfg
        total = round(cfg.kimg * 1000)          # round, not int: 1.001 * 1000 is 1000.999...
        every = round(cfg.snapshot_kimg * 1000)
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
                replicas = self.check_replicas()
                if self.rank == 0:      # the row first: a resume drops rows newer than its snapshot
                    row = {"kimg": self.nimg / 1000, **{k: float(np.mean(v)) for k, v in acc.items()},
                           "augment_p": self.augment.p, "rt": self.augment.rt,
                           "sec_per_kimg": (time.time() - t0) / max((self.nimg - n0) / 1000, 1e-9), **replicas}
                    with open(self.metrics, "a") as f:
                        f.write(json.dumps(row) + "\n")
                self.snapshot()
                if self.rank == 0:
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
