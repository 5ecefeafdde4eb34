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


def fidelity(painter: NeuralPainter, shape: torch.Tensor, alpha: torch.Tensor, g: torch.Generator) -> dict[str, float]:
    """Painter vs libmypaint on (shape, alpha) pairs: alpha MAE / MSE and PSNR of black-on-white strokes."""
    with torch.no_grad():
        z = torch.randn(len(shape), painter.gen.noise, generator=g)
        pred = torch.cat([painter(shape[i:i + 256], z[i:i + 256]) for i in range(0, len(shape), 256)])
    mse = ((pred - alpha) ** 2).flatten(1).mean(1)
    return {"mae": (pred - alpha).abs().mean().item(), "mse": mse.mean().item(),
            "psnr": (-10 * torch.log10(mse.clamp(min=1e-10))).mean().item()}


def train_painter(cfg: PainterTrainConfig, strokes: str | Path, run: str | Path, seed: int = 0, progress: bool = True) -> dict:
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    meta = json.loads((Path(strokes) / "strokes.json").read_text()) if (Path(strokes) / "strokes.json").is_file() else {}
    brush = meta.get("brush", "unknown")
    acts, alphas = load_strokes(strokes)
    if len(acts) <= cfg.holdout + cfg.batch:
        raise KaogenError(f"{strokes} has {len(acts)} strokes: need more than holdout + batch = {cfg.holdout + cfg.batch}")
    shape = torch.from_numpy(acts[:, : len(A.SHAPE)])
    alpha = torch.from_numpy(alphas).float() / 255
    n_train = len(shape) - cfg.holdout
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen, critic = Generator(cfg.noise, cfg.width), Critic()
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    g = torch.Generator().manual_seed(seed)
    step, state_path, metrics = 0, run / "state.pt", run / "metrics.jsonl"
    if state_path.is_file():
        ck = load_checkpoint(state_path, kind="neural-painter-train")
        if ck.config != asdict(cfg) | {"steps": ck.config["steps"]}:
            raise KaogenError(f"{run} was trained with another config; use a new --out folder")
        for obj, key in ((gen, "gen"), (critic, "critic"), (opt_g, "opt_g"), (opt_d, "opt_d")):
            obj.load_state_dict(ck.state[key])
        g.set_state(ck.state["rng"])
        step = ck.meta["step"]
        if metrics.is_file():
            keep = [ln for ln in metrics.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            atomic_write_text(metrics, "".join(ln + "\n" for ln in keep))
    held_s, held_a = shape[n_train:], alpha[n_train:]

    def save() -> dict:
        save_checkpoint(state_path, Checkpoint("neural-painter-train", asdict(cfg), {
            "gen": gen.state_dict(), "critic": critic.state_dict(), "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(), "rng": g.get_state()}, {"step": step}))
        painter = NeuralPainter(gen, brush)
        fid = fidelity(painter, held_s, held_a, torch.Generator().manual_seed(1))
        painter.save(run / "painter.pt", {"step": step, "strokes": str(strokes), "heldout": fid})
        gen.train()
        with open(metrics, "a") as f:
            f.write(json.dumps({"step": step, **fid}) + "\n")
        rows = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
        line_plot({k: [(r["step"], r[k]) for r in rows] for k in ("mae", "psnr")}, run / "curves.png")
        with torch.no_grad():
            pred = gen.eval()(held_s[:8], torch.randn(8, cfg.noise, generator=torch.Generator().manual_seed(2)))
        gen.train()
        sheet = 1 - torch.cat([torch.cat(list(held_a[:8]), 1), torch.cat(list(pred), 1)], 0)
        save_image(run / "heldout.png", sheet[None].expand(3, -1, -1))
        return fid

    bar = tqdm(total=cfg.steps, initial=step, desc="painter", disable=not progress)
    fid = {}
    while step < cfg.steps:
        idx = torch.randint(n_train, (cfg.batch,), generator=g)
        s, real = shape[idx], alpha[idx]
        z = torch.randn(cfg.batch, cfg.noise, generator=g)
        adversarial = step >= cfg.adv_after
        # critic
        fake = gen(s, z).detach()
        eps = torch.rand(cfg.batch, 1, 1, generator=g)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(critic(mix, s).sum(), mix, create_graph=True)
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        d_loss = critic(fake, s).mean() - critic(real, s).mean() + cfg.gp * gp
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # generator
        if step % cfg.critic_every == 0:
            logit = gen.logits(s, z)
            g_loss = cfg.recon * F.binary_cross_entropy_with_logits(logit, real)
            if adversarial:
                g_loss = g_loss - cfg.adv * critic(torch.sigmoid(logit), s).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
        if not (torch.isfinite(d_loss) and torch.isfinite(g_loss)):
            raise KaogenError(f"painter training diverged at step {step}; the last good state is {state_path}")
        step += 1
        bar.update(1)
        bar.set_postfix(d=f"{d_loss.item():.3g}", g=f"{g_loss.item():.3g}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            fid = save()
    bar.close()
    return fid or fidelity(NeuralPainter(gen, brush), held_s, held_a, torch.Generator().manual_seed(1))
