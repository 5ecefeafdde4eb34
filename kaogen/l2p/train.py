"""`kaogen train-l2p`: roll out paintings, learn from a replay memory, checkpoint, resume exactly.

Run folder (RUNS/NNNNN-l2p/):
    config.json, command.txt     the resolved TrainConfig and the command line
    agent.pt                     the current actor ("l2p-agent" checkpoint, what `kaogen paint` loads)
    train-EEEEEE.pt              full training state after episode E (last `keep` kept)
    replay.pt                    the replay memory at the latest training state
    metrics.jsonl                one line per episode
    samples/                     fixed targets painted every `sample_every` episodes, loss curves

Every random draw (targets, exploration noise, replay sampling, discriminator mixing) comes from
generators saved with the state, so training N episodes in one go or in several resumed runs gives
the same weights.

Devices: states load to the CPU (kaogen.checkpoint) and are then copied into the networks on the
training device; the generators are CPU generators (their draws are moved to the device) whose
states are CPU byte tensors, and Adam's step counters stay CPU tensors (optim.load_optimizer).
A rollout keeps its transitions on the device and hands them to the replay memory (on the CPU) once
per episode; an episode reads its losses back once. `amp` (config, or `--amp/--no-amp`): the
networks run under bfloat16 autocast, on the CPU too; strokes, rasterisers, rewards, losses and PSNR
stay float32.

Exact resume on CUDA: the generators make every random draw the same on resume, but some CUDA
kernels of the update are not deterministic (their sums run in a varying order): the backward of
bilinear interpolation (the dense actor's feature pyramid), of replicate padding (the reward's
Gaussian pyramid), of gather / index_add with repeated indices (the sampled cells of update_dense),
and atomics in some convolution algorithms. A resumed CUDA run continues from exactly the saved
state, but it is not bit for bit the run that was never stopped (nor is a second straight run);
with `torch.use_deterministic_algorithms(True)` and CUBLAS_WORKSPACE_CONFIG=:4096:8 it is, where
torch has deterministic versions of those kernels. On the CPU, resume is bit for bit.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from kaogen.atomic import atomic_write_text
from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.config import from_dict
from kaogen.device import float32_region
from kaogen.errors import KaogenError
from kaogen.images import save_image
from kaogen.l2p.agent import Agent
from kaogen.l2p.config import AgentConfig, TrainConfig
from kaogen.l2p.ddpg import DDPG, actor_input
from kaogen.l2p.optim import restore_generator
from kaogen.l2p.paint import run_agent
from kaogen.l2p.replay import ReplayBuffer, to_u8
from kaogen.l2p.stroke_model import paint_exact
from kaogen.l2p.targets import TargetSampler, load_sources
from kaogen.metrics import psnr
from kaogen.plot import line_plot
from kaogen.render.strokes import NUM_FIELDS

STATE_KIND, REPLAY_KIND = "l2p-train", "l2p-replay"


def latest_state(run: Path) -> Path | None:
    states = sorted(run.glob("train-*.pt"))
    return states[-1] if states else None


class Trainer:
    def __init__(self, cfg: TrainConfig, data: list[str], run: Path, device="cpu", seed: int = 0, split: str = "all",
                 holdout_every: int = 0, amp: bool | None = None):
        """holdout_every = k > 1 keeps every k-th image (k-1, 2k-1, ...) out of training; the sample
        sheets then show those held-out images. amp: None takes the config's."""
        self.cfg, self.run, self.device = cfg, Path(run), torch.device(device)
        S = cfg.agent.canvas
        images = load_sources(data, size=int(round(1.5 * S)), split=split)
        held = torch.zeros(len(images), dtype=torch.bool)
        if holdout_every > 1:
            held[holdout_every - 1::holdout_every] = True
            if held.all() or not held.any():
                raise KaogenError(f"--holdout-every {holdout_every} leaves no training or no held-out image")
        self.sampler = TargetSampler(images[~held], S, cfg.crop_scale)
        shown = images[held] if held.any() else images
        self.fixed = torch.nn.functional.interpolate(shown[:8].float() / 255, size=(S, S), mode="bilinear",
                                                     antialias=True, align_corners=False).clamp(0, 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)                     # initial weights depend on the seed only
            self.ddpg = DDPG(cfg).to(self.device)
        self.ddpg.amp = cfg.amp if amp is None else bool(amp)
        self.buffer = ReplayBuffer(cfg.replay, S, cfg.agent.strokes_per_action, NUM_FIELDS)
        self.gens = {name: torch.Generator().manual_seed(seed * 1000 + i)
                     for i, name in enumerate(("data", "noise", "replay", "disc"))}
        self.episode, self.env_steps = 0, 0
        self.metrics_path = self.run / "metrics.jsonl"
        (self.run / "samples").mkdir(parents=True, exist_ok=True)

    # -------------------------------------------------------------------------------- state
    def save(self) -> None:
        e = self.episode
        save_checkpoint(self.run / "replay.pt", Checkpoint(REPLAY_KIND, {"episode": e}, self.buffer.state_dict()))
        state = {"ddpg": self.ddpg.state(), "gens": {k: g.get_state() for k, g in self.gens.items()}}
        save_checkpoint(self.run / f"train-{e:06d}.pt",
                        Checkpoint(STATE_KIND, asdict(self.cfg), state, {"episode": e, "env_steps": self.env_steps}))
        Agent(self.cfg.agent, self.ddpg.policy).save(self.run / "agent.pt", {"episode": e, "env_steps": self.env_steps})
        self.ddpg.actor.train()
        for old in sorted(self.run.glob("train-*.pt"))[: -self.cfg.keep]:
            old.unlink()

    def resume(self) -> bool:
        path = latest_state(self.run)
        if path is None:
            return False
        ck = load_checkpoint(path, kind=STATE_KIND)
        saved = from_dict(AgentConfig, ck.config["agent"])
        if asdict(saved) != asdict(self.cfg.agent):
            raise KaogenError(f"{path} was trained with a different agent config; start a new run instead")
        rp = load_checkpoint(self.run / "replay.pt", kind=REPLAY_KIND)
        if rp.config.get("episode") != ck.meta["episode"]:
            raise KaogenError(f"{self.run}/replay.pt does not belong to {path.name}: the run cannot resume exactly")
        self.ddpg.load_state(ck.state["ddpg"])          # CPU tensors copied into the device's networks
        for k, g in self.gens.items():
            if k not in ck.state.get("gens", {}):
                raise KaogenError(f"{path} has no random state {k!r}: it is not a complete train-l2p state")
            restore_generator(g, ck.state["gens"][k], k)
        self.buffer.load_state_dict(rp.state)
        self.episode, self.env_steps = ck.meta["episode"], ck.meta["env_steps"]
        if self.metrics_path.is_file():   # drop lines written after the state we resume from
            lines = [ln for ln in self.metrics_path.read_text().splitlines() if ln.strip()]
            keep = [ln for ln in lines if json.loads(ln)["episode"] < self.episode]
            atomic_write_text(self.metrics_path, "".join(ln + "\n" for ln in keep))
        return True

    # -------------------------------------------------------------------------------- loop
    def rollout(self) -> torch.Tensor:
        """One episode of `envs` paintings into the replay memory; returns their mean final PSNR (a 0-dim
        tensor on the device). The transitions stay on the device (uint8) until the episode ends."""
        a, dev = self.cfg.agent, self.device
        target = self.sampler.sample(self.cfg.envs, self.gens["data"]).to(dev)
        canvas = torch.full_like(target, a.background)
        B = len(target)
        noise = (self.cfg.noise * torch.randn(a.steps, B, a.strokes_per_action, NUM_FIELDS,
                                              generator=self.gens["noise"]).to(dev) if self.cfg.noise > 0 else None)
        frames, actions = [to_u8(canvas)], []
        self.ddpg.actor.eval()
        with torch.no_grad():
            for t in range(a.steps):
                step = torch.full((B,), t, device=dev)
                act = self.ddpg.act(self.ddpg.actor, actor_input(canvas, target, step, a.steps))
                if noise is not None:
                    act = (act + noise[t]).clamp(0, 1)
                canvas = paint_exact(canvas, act)
                frames.append(to_u8(canvas))
                actions.append(act)
        self.ddpg.actor.train()
        # to the replay memory in the order of one add per step: canvas before, target, step, action, after
        frames, actions = torch.stack(frames).cpu(), torch.stack(actions).cpu()      # (T+1, B, ...), (T, B, K, 13)
        target_u8 = to_u8(target).cpu()
        steps = torch.arange(a.steps).repeat_interleave(B)
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
        self.buffer.add_u8(flat(frames[:-1]), target_u8.repeat(a.steps, 1, 1, 1), steps, flat(actions), flat(frames[1:]))
        self.env_steps += B * a.steps
        with float32_region(dev):
            return psnr(canvas.float(), target.float()).mean()

    def train(self, progress: bool = True) -> None:
        cfg = self.cfg
        bar = tqdm(total=cfg.episodes, initial=self.episode, desc="l2p", unit="ep", disable=not progress)
        while self.episode < cfg.episodes:
            t0 = time.time()
            rollout_psnr = self.rollout()
            self.ddpg.set_lr(0.1 if self.episode >= cfg.lr_decay_at else 1.0)
            losses = []
            if self.env_steps >= cfg.warmup:
                for _ in range(cfg.updates_per_episode):
                    batch = self.buffer.sample(cfg.batch, self.gens["replay"], self.device)
                    losses.append(self.ddpg.update(batch, self.gens["disc"]).stacked())
            # the episode's one read-back: its PSNR and every update's losses
            vals = torch.cat([rollout_psnr[None]] + losses).tolist() if losses else [rollout_psnr.item()]
            rollout_psnr, flat = vals[0], vals[1:]
            per_update = [flat[i:i + 4] for i in range(0, len(flat), 4)]      # critic, actor, disc, reward
            if not all(math.isfinite(v) for L in per_update for v in L[:3]):
                raise KaogenError(f"training diverged at episode {self.episode} (a loss is NaN/inf); "
                                  f"the last good state is {latest_state(self.run)}")
            mean = lambda i: sum(L[i] for L in per_update) / len(per_update) if per_update else float("nan")  # noqa: E731
            row = {"episode": self.episode, "env_steps": self.env_steps, "psnr": rollout_psnr,
                   "critic": mean(0), "actor": mean(1), "disc": mean(2),
                   "reward": mean(3), "seconds": time.time() - t0}
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            self.episode += 1
            bar.update(1)
            bar.set_postfix(psnr=f"{rollout_psnr:.2f}", critic=f"{row['critic']:.3g}")
            if self.episode % cfg.checkpoint_every == 0 or self.episode == cfg.episodes:
                self.save()
            if self.episode % cfg.sample_every == 0 or self.episode == cfg.episodes:
                self.write_samples()
        bar.close()

    @torch.no_grad()
    def write_samples(self) -> None:
        a = self.cfg.agent
        target = self.fixed.to(self.device)
        self.ddpg.actor.eval()
        _, canvas = run_agent(Agent(a, self.ddpg.policy), target, torch.full_like(target, a.background), a.steps)
        self.ddpg.actor.train()
        grid = torch.cat([torch.cat(list(target), 2), torch.cat(list(canvas), 2)], 1)   # targets over paintings
        save_image(self.run / "samples" / f"episode-{self.episode:06d}.png", grid)
        rows = [json.loads(ln) for ln in self.metrics_path.read_text().splitlines() if ln.strip()]
        line_plot({k: [(r["episode"], r[k]) for r in rows if r[k] == r[k]] for k in ("psnr", "critic", "actor", "disc")},
                  self.run / "samples" / "curves.png")


def find_run(resume: str) -> Path:
    run = Path(resume)
    if not run.is_dir() or latest_state(run) is None:
        raise KaogenError(f"{run} is not a train-l2p run folder with a training state (train-*.pt)")
    return run

