"""`kaogen train-painter --strokes DIR --out RUN`: the GAN painter on libmypaint's strokes, resumable.

Loss (generator): `recon` x binary cross-entropy (on logits: its gradient never vanishes where the
sigmoid saturates, which an L1 loss on alpha allows, and a painter that outputs nothing stays
stuck) to libmypaint's stroke for the same action, + `adv` x the WGAN adversarial term from step
`adv_after` on (a critic that starts on a painter which draws nothing only pushes it further away).
Critic: WGAN-GP on (stroke, action) pairs. The last `holdout` pairs of the data set are never
trained on; the fidelity report (mean absolute and squared error of alpha, and the PSNR of the
stroke composited in black on white) is on them.

Run folder: painter.pt (the generator: what `kaogen paint --method ist` loads), state.pt (everything,
resumes exactly), metrics.jsonl, curves.png, heldout.png (libmypaint above, painter below).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from kaogen.atomic import atomic_write_text
from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.errors import KaogenError
from kaogen.images import save_image
from kaogen.ist import actions as A
from kaogen.ist.painter import Critic, Generator, NeuralPainter
from kaogen.ist.strokes import load_strokes
from kaogen.plot import line_plot


LOG_EVERY = 25                   # steps between host syncs for the progress bar and the divergence check


@dataclass
class PainterTrainConfig:
    steps: int = 20000
    batch: int = 64
    lr: float = 2e-4
    recon: float = 1.0           # weight of the pixel loss (BCE on logits)
    adv: float = 0.01            # weight of the adversarial loss
    adv_after: int = 1000        # steps of pixel loss alone before the critic joins
    gp: float = 10.0
    critic_every: int = 1        # critic updates per generator update
    noise: int = 8
    width: int = 16
    holdout: int = 1000
    checkpoint_every: int = 500
    amp: bool = False            # bfloat16 autocast for the networks (any device); losses stay float32


def _same_config(saved: dict, cfg: PainterTrainConfig) -> bool:
    """A run resumes under its own config (steps may grow); keys added since it was saved take their defaults."""
    old = asdict(PainterTrainConfig()) | saved
    return {k: v for k, v in old.items() if k != "steps"} == {k: v for k, v in asdict(cfg).items() if k != "steps"}


def fidelity(painter: NeuralPainter, shape: torch.Tensor, alpha: torch.Tensor, g: torch.Generator) -> dict[str, float]:
    """Painter vs libmypaint on (shape, alpha) pairs: alpha MAE / MSE and PSNR of black-on-white strokes.

    float32 throughout (no autocast): alpha may be uint8 (as stored) or float in [0, 1]; `g` is a
    generator on the painter's device. One host sync."""
    dev = next(painter.gen.parameters()).device
    with torch.no_grad():
        z = torch.randn(len(shape), painter.gen.noise, generator=g, device=dev)
        pred = torch.cat([painter(shape[i:i + 256].float(), z[i:i + 256]).float() for i in range(0, len(shape), 256)])
    alpha = alpha.float() / 255 if alpha.dtype == torch.uint8 else alpha.float()
    mse = ((pred - alpha) ** 2).flatten(1).mean(1)
    mae, mse_mean, psnr = torch.stack([(pred - alpha).abs().mean(), mse.mean(),
                                       (-10 * torch.log10(mse.clamp(min=1e-10))).mean()]).tolist()
    return {"mae": mae, "mse": mse_mean, "psnr": psnr}


class PainterTraining:
    """One train-painter run on `device`: the networks, optimisers and random state, fresh or resumed.

    The stroke data set lives on the device (alpha as uint8, converted per batch); batches, noise and
    mixing weights come from one generator on the device. Resuming loads state.pt to the CPU, restores
    the random state through kaogen.device.restore_rng (CPU byte tensors) and the optimisers'
    state through `load_state_dict` (moments follow the parameters to the device, Adam's `step`
    counters stay CPU tensors)."""

    def __init__(self, cfg: PainterTrainConfig, strokes: str | Path, run: str | Path, seed: int = 0, device="cpu"):
        from kaogen.device import resolve_device, restore_rng

        self.cfg, self.strokes, self.run = cfg, strokes, Path(run)
        self.dev = dev = resolve_device(device)
        self.run.mkdir(parents=True, exist_ok=True)
        info = Path(strokes) / "strokes.json"
        self.brush = json.loads(info.read_text()).get("brush", "unknown") if info.is_file() else "unknown"
        acts, alphas = load_strokes(strokes)
        if len(acts) <= cfg.holdout + cfg.batch:
            raise KaogenError(f"{strokes} has {len(acts)} strokes: need more than holdout + batch = {cfg.holdout + cfg.batch}")
        self.shape = torch.from_numpy(acts[:, : len(A.SHAPE)]).to(dev)          # the data set: one copy to the device
        self.alpha = torch.from_numpy(alphas).to(dev)                           # uint8; / 255 per batch
        self.n_train = len(self.shape) - cfg.holdout
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)                                             # the same start on every device
            self.gen, self.critic = Generator(cfg.noise, cfg.width), Critic()
        self.gen.to(dev)
        self.critic.to(dev)
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.g = torch.Generator(device=dev).manual_seed(seed)
        self.step, self.state_path, self.metrics = 0, self.run / "state.pt", self.run / "metrics.jsonl"
        if self.state_path.is_file():
            ck = load_checkpoint(self.state_path, kind="neural-painter-train")        # always to the CPU
            if not _same_config(ck.config, cfg):
                raise KaogenError(f"{self.run} was trained with another config; use a new --out folder")
            try:
                for obj, key in ((self.gen, "gen"), (self.critic, "critic"), (self.opt_g, "opt_g"), (self.opt_d, "opt_d")):
                    obj.load_state_dict(ck.state[key])          # modules and Adam moments copy to the device
                rng = ck.state["rng"]
                if isinstance(rng, torch.Tensor):               # runs saved before kaogen.device.rng_state
                    rng = {"torch": torch.get_rng_state(), "gen.batch": rng}
                saved_on = ck.meta.get("rng_device", "cuda" if rng["gen.batch"].numel() == 16 else "cpu")
                if saved_on == dev.type:
                    restore_rng(rng, {"batch": self.g}, dev)
                else:
                    # the batch generator lives on the training device, and a CUDA generator's state
                    # (16 bytes) does not fit a CPU one (5,056): resumed on another kind of device,
                    # it is derived from (seed, step) instead; the weights and optimisers are exact
                    restore_rng({k: v for k, v in rng.items() if k == "torch"}, {}, dev)
                    self.g.manual_seed(seed * 1_000_003 + int(ck.meta["step"]))
                    warnings.warn(f"{self.state_path} was written on {saved_on}; resuming on {dev.type}, the batch "
                                  f"order after step {ck.meta['step']} differs from the uninterrupted run's")
            except (KeyError, RuntimeError, ValueError) as e:
                raise KaogenError(f"{self.state_path} does not fit this run ({str(e).splitlines()[0][:120]})") from None
            self.step = ck.meta["step"]
            if self.metrics.is_file():
                keep = [ln for ln in self.metrics.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step]
                atomic_write_text(self.metrics, "".join(ln + "\n" for ln in keep))
        self.held_s, self.held_a = self.shape[self.n_train:], self.alpha[self.n_train:]

    def painter(self) -> NeuralPainter:
        return NeuralPainter(self.gen, self.brush)

    def fidelity(self) -> dict[str, float]:
        out = fidelity(self.painter(), self.held_s, self.held_a, torch.Generator(device=self.dev).manual_seed(1))
        self.gen.train()
        return out

    def save(self, losses: dict[str, float]) -> dict:
        from kaogen.device import rng_state

        cfg, gen = self.cfg, self.gen
        save_checkpoint(self.state_path, Checkpoint("neural-painter-train", asdict(cfg), {
            "gen": gen.state_dict(), "critic": self.critic.state_dict(), "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(), "rng": rng_state({"batch": self.g}, self.dev)},
            {"step": self.step, "rng_device": self.dev.type}))
        fid = self.fidelity()
        self.painter().save(self.run / "painter.pt", {"step": self.step, "strokes": str(self.strokes), "heldout": fid})
        gen.train()
        row = {"step": self.step, **fid, **losses}
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
        rows = [json.loads(ln) for ln in self.metrics.read_text().splitlines() if ln.strip()]
        line_plot({k: [(r["step"], r[k]) for r in rows] for k in ("mae", "psnr")}, self.run / "curves.png")
        with torch.no_grad():
            z = torch.randn(8, cfg.noise, generator=torch.Generator(device=self.dev).manual_seed(2), device=self.dev)
            pred = gen.eval()(self.held_s[:8], z).float()
        gen.train()
        real = self.held_a[:8].float() / 255
        sheet = 1 - torch.cat([torch.cat(list(real), 1), torch.cat(list(pred), 1)], 0)
        save_image(self.run / "heldout.png", sheet[None].expand(3, -1, -1).cpu())
        return row

    def train_step(self, adversarial: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One critic (and generator) update; returns the float32 losses as device tensors (no host sync)."""
        from kaogen.device import autocast, float32_region

        cfg, gen, critic, g, dev = self.cfg, self.gen, self.critic, self.g, self.dev
        idx = torch.randint(self.n_train, (cfg.batch,), generator=g, device=dev)
        s, real = self.shape[idx], self.alpha[idx].float() / 255              # libmypaint's strokes: float32
        z = torch.randn(cfg.batch, cfg.noise, generator=g, device=dev)
        eps = torch.rand(cfg.batch, 1, 1, generator=g, device=dev)
        with autocast(dev, cfg.amp):
            # critic: WGAN-GP; the interpolation, the gradient penalty and the loss in float32
            fake = gen(s, z).detach().float()
            mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad, = torch.autograd.grad(critic(mix, s).float().sum(), mix, create_graph=True)
            d_fake, d_real = critic(fake, s).float(), critic(real, s).float()
            with float32_region(dev):
                gp = ((grad.float().flatten(1).norm(dim=1) - 1) ** 2).mean()
                d_loss = d_fake.mean() - d_real.mean() + cfg.gp * gp
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        if self.step % cfg.critic_every:
            return d_loss.detach(), None
        with autocast(dev, cfg.amp):
            logit = gen.logits(s, z).float()
            adv = critic(torch.sigmoid(logit), s).float() if adversarial else None
            with float32_region(dev):
                g_loss = cfg.recon * F.binary_cross_entropy_with_logits(logit, real)
                if adv is not None:
                    g_loss = g_loss - cfg.adv * adv.mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return d_loss.detach(), g_loss.detach()

    def train(self, progress: bool = True) -> dict:
        """Train to cfg.steps. Losses are summed on the device; the host reads them (one sync) every
        LOG_EVERY steps and at checkpoints, where a non-finite loss stops the run before anything is saved."""
        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, desc="painter", disable=not progress)
        sums = torch.zeros(4, device=self.dev)          # d_loss, g_loss, generator updates, non-finite losses
        since_ckpt = torch.zeros(4, device=self.dev)
        n_log, n_ckpt, last_good, row = 0, 0, self.step, {}
        while self.step < cfg.steps:
            d_loss, g_loss = self.train_step(self.step >= cfg.adv_after)
            zero = torch.zeros((), device=self.dev)
            gl = g_loss if g_loss is not None else zero
            bad = (~torch.isfinite(d_loss)).float() + (0.0 if g_loss is None else (~torch.isfinite(g_loss)).float())
            upd = torch.stack([d_loss, gl, zero + (g_loss is not None), bad])
            sums += upd
            self.step += 1
            n_log += 1
            bar.update(1)
            ckpt = self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps
            if ckpt or self.step % LOG_EVERY == 0:
                d, gsum, gn, nbad = sums.tolist()                                 # the one host sync
                if nbad:
                    raise KaogenError(f"painter training diverged between steps {last_good} and {self.step}; "
                                      f"the last good state is {self.state_path}")
                bar.set_postfix(d=f"{d / n_log:.3g}", g=f"{gsum / max(gn, 1):.3g}")
                since_ckpt += sums
                n_ckpt += n_log
                sums.zero_()
                n_log, last_good = 0, self.step
                if ckpt:
                    d, gsum, gn, _ = since_ckpt.tolist()
                    row = self.save({"d_loss": d / n_ckpt, "g_loss": gsum / max(gn, 1)})
                    since_ckpt.zero_()
                    n_ckpt = 0
        bar.close()
        return row or {"step": self.step, **self.fidelity()}


def train_painter(cfg: PainterTrainConfig, strokes: str | Path, run: str | Path, seed: int = 0, progress: bool = True,
                  device="cpu") -> dict:
    """Train (or resume) the painter; returns the last checkpoint's metrics row: step, held-out
    mae / mse / psnr, and the mean d_loss / g_loss since the checkpoint before."""
    return PainterTraining(cfg, strokes, run, seed, device).train(progress)
