"""Model-based DDPG (Learning to Paint, section 3): one update of discriminator, critic and actor.

State s = (canvas C, target T, step t). The actor proposes K strokes a; the differentiable stroke
model paints them: C' = paint(C, a). With r(C, C', T) the reward (WGAN: D(C', T) - D(C, T); L2:
scale * (d(C) - d(C')); PSNR: 10 log10(d(C) / d(C')), the decibels gained; d the squared error to T,
over `reward_scales` pyramid levels: distance.py), the critic V estimates the discounted return
after the action from (C, C', T, t + 1), and

    Q(s, a) = r(C, C', T) + V(C, C', T, t + 1)
    critic:  V(s, a) -> gamma * (1 - done) * Q_target(s', actor_target(s'))   (MSE; s' from the replay)
    actor:   maximise Q(s, actor(s)), the gradient flowing through V and r into C' and into a.

With gamma = 0 the return is the reward alone, Q(s, a) = r(C, C', T): no critic or target networks
are built, and the actor follows the exact gradient of the reward through the stroke model (the
greedy model-based agent: each action paints what most lowers the distance now). An episode then
costs 2-3 s instead of 5-10 s on a 2-core CPU; in 400 episodes it reached the same quality as the
DDPG agent did in 300 (configs/l2p/greedy.toml).

With the dense actor (networks.DenseActor, gamma = 0 only) the update scores single strokes instead:
see `update_dense`.

Mixed precision (`amp`): the networks (actor, critic, discriminator) run under bfloat16 autocast
(kaogen.device.autocast, on the CPU too); what they output is cast to float32 at the seams, so the
strokes fed to the stroke model, the rewards, the distances and every loss are float32. An update
reads nothing back to the host: its losses are 0-dim tensors on the device (train.py reads an
episode's worth at once).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kaogen.device import autocast, float32_region
from kaogen.l2p.config import TrainConfig
from kaogen.l2p.distance import pyramid_distance
from kaogen.errors import KaogenError
from kaogen.l2p.networks import Critic, Discriminator, coord_planes, make_actor
from kaogen.l2p.optim import load_optimizer
from kaogen.l2p.stroke_model import StrokeModel


def actor_input(canvas: torch.Tensor, target: torch.Tensor, step: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, 9, S, S): canvas, target, step / steps, coordinates (see networks.py)."""
    B, _, S, _ = canvas.shape
    t = (step.float() / steps).view(B, 1, 1, 1).expand(B, 1, S, S)
    return torch.cat([canvas, target, t, coord_planes(B, S, canvas.device)], 1)


@dataclass
class Losses:
    """One update's losses, 0-dim float32 tensors on the training device (no read-back per update)."""
    critic: torch.Tensor
    actor: torch.Tensor
    disc: torch.Tensor
    reward: torch.Tensor

    def stacked(self) -> torch.Tensor:
        return torch.stack([self.critic, self.actor, self.disc, self.reward])


class DDPG(torch.nn.Module):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        a = cfg.agent
        self.cfg, self.a = cfg, a
        self.greedy = cfg.gamma == 0
        self.amp = cfg.amp                  # bf16 autocast of the networks (train.py may override it)
        if a.actor == "dense" and not self.greedy:
            raise KaogenError('actor = "dense" trains greedily: set gamma = 0')
        self.actor = make_actor(a.actor, a.strokes_per_action, a.actor_width)
        # the actor's weights move a lot from update to update (a step's 32 states are a small sample of
        # what the agent meets); their moving average paints better than any single iterate
        self.actor_ema = copy.deepcopy(self.actor).requires_grad_(False) if cfg.ema > 0 else None
        self.critic = None if self.greedy else Critic(a.critic_width)
        self.actor_target = None if self.greedy else copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = None if self.greedy else copy.deepcopy(self.critic).requires_grad_(False)
        self.disc = Discriminator() if a.reward == "wgan" else None
        self.model = StrokeModel(a)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.opt_critic = None if self.greedy else torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.opt_disc = (torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.999))
                         if self.disc is not None else None)

    # ------------------------------------------------------------------ reward and value
    def reward(self, before: torch.Tensor, after: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,) reward of going from canvas `before` to `after`."""
        if self.disc is not None:
            with self.autocast(after):
                d_after, d_before = self.disc(after, target), self.disc(before, target)
            return d_after.float() - d_before.float()
        if self.a.reward == "psnr":     # dB gained: every step weighs the same, late fine ones too
            d0, d1 = self.distance(before, target).clamp_min(1e-8), self.distance(after, target).clamp_min(1e-8)
            return (10 / math.log(10)) * (d0.log() - d1.log())
        return self.a.reward_scale * (self.distance(before, target) - self.distance(after, target))

    def distance(self, canvas: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,) the reward's distance: MSE over `reward_scales` Gaussian pyramid levels (distance.py), float32."""
        with float32_region(canvas.device):
            return pyramid_distance(canvas.float(), target.float(), self.a.reward_scales)

    def autocast(self, like: torch.Tensor):
        """bf16 autocast on `like`'s device when `amp` is on (a no-op context otherwise)."""
        return autocast(like.device, self.amp)

    def paint(self, canvas: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The stroke model, always in float32 (the strokes are cast at this seam)."""
        with float32_region(canvas.device):
            return self.model.paint(canvas.float(), action.float())

    def act(self, actor, obs: torch.Tensor) -> torch.Tensor:
        """An actor's action (B, K, 13) in float32, the network under autocast when `amp`."""
        with self.autocast(obs):
            return actor(obs).float()

    def q(self, critic, canvas, target, step, action) -> tuple[torch.Tensor, torch.Tensor]:
        """Q(s, a) = r + V, and r; both (B,). Without a critic (gamma = 0), Q = r."""
        after = self.paint(canvas, action)
        r = self.reward(canvas, after, target)
        if critic is None:
            return r, r
        B, _, S, _ = canvas.shape
        t = ((step.float() + 1) / self.a.steps).view(B, 1, 1, 1).expand(B, 1, S, S)
        with self.autocast(canvas):
            v = critic(torch.cat([canvas, after, target, t, coord_planes(B, S, canvas.device)], 1)).float()
        return v + r, r

    # ------------------------------------------------------------------ one update
    def update_disc(self, after: torch.Tensor, target: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """WGAN-GP step on real pairs (T, T) and fake pairs (C', T)."""
        if self.disc is None:
            return torch.zeros((), device=after.device)
        eps = torch.rand(after.shape[0], 1, 1, 1, generator=g).to(after.device)
        mix = (eps * target + (1 - eps) * after).requires_grad_(True)
        with self.autocast(after):
            score = self.disc(mix, target).float()
        grad, = torch.autograd.grad(score.sum(), mix, create_graph=True)
        gp = ((grad.float().flatten(1).norm(dim=1) - 1) ** 2).mean()
        with self.autocast(after):
            fake, real = self.disc(after, target), self.disc(target, target)
        loss = fake.float().mean() - real.float().mean() + 10 * gp
        self.opt_disc.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_disc.step()
        return loss.detach()

    def update(self, batch: dict[str, torch.Tensor], g: torch.Generator) -> Losses:
        c, T, step, act, after = batch["canvas"], batch["target"], batch["step"], batch["action"], batch["after"]
        d_loss = self.update_disc(after, T, g)
        critic_loss = self.update_critic(c, T, step, act, after) if self.critic is not None else torch.zeros_like(d_loss)
        if self.a.actor == "dense":
            return self.update_dense(c, T, step, g, d_loss)
        # actor: through the stroke model into the critic and the reward
        new_act = self.act(self.actor, actor_input(c, T, step, self.a.steps))
        q, r = self.q(self.critic, c, T, step, new_act)
        actor_loss = -q.mean()
        self.opt_actor.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.opt_actor.step()
        self.update_ema()
        if self.critic is not None:
            self.soft_update()
        return Losses(critic_loss, actor_loss.detach(), d_loss, r.detach().mean())

    def update_dense(self, c, T, step, g: torch.Generator, d_loss: torch.Tensor) -> Losses:
        """DenseActor: each sampled cell's stroke is painted alone on the canvas. Its stroke climbs
        the reward's gradient through the stroke model; its score regresses onto that reward.

        Half the cells are the best-scoring ones (what the agent would paint), half drawn at random
        (so a cell whose score is too low is still tried)."""
        B, M = c.shape[0], self.cfg.dense_samples
        with self.autocast(c):
            score, strokes = self.actor.dense(actor_input(c, T, step, self.a.steps))     # (B, N), (B, N, 13)
        score, strokes = score.float(), strokes.float()
        N = score.shape[1]
        top = score.detach().topk(M // 2, dim=1).indices
        rand = torch.randint(0, N, (B, M - M // 2), generator=g).to(c.device)
        cells = torch.cat([top, rand], 1)                                         # (B, M)
        s = strokes.gather(1, cells[..., None].expand(-1, -1, strokes.shape[-1]))  # (B, M, 13)
        rep = lambda x: x[:, None].expand(B, M, *x.shape[1:]).reshape(B * M, *x.shape[1:])  # noqa: E731
        after = self.paint(rep(c), s.reshape(B * M, 1, -1))
        r = self.reward(rep(c), after, rep(T)).view(B, M)
        pred = score.gather(1, cells)
        score_loss = F.mse_loss(pred, r.detach())
        loss = -r.mean() + score_loss
        self.opt_actor.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_actor.step()
        self.update_ema()
        # the score head is this agent's critic (a value per cell): its error is logged as "critic"
        r_mean = r.detach().mean()
        return Losses(score_loss.detach(), -r_mean, d_loss, r_mean)

    def update_critic(self, c, T, step, act, after) -> torch.Tensor:
        """One TD step of V on a replayed transition (canvas c, action act -> canvas after)."""
        done = (step + 1 >= self.a.steps).float()
        with torch.no_grad():
            next_act = self.act(self.actor_target, actor_input(after, T, step + 1, self.a.steps))
            q_next, _ = self.q(self.critic_target, after, T, step + 1, next_act)
            goal = self.cfg.gamma * (1 - done) * q_next
        # critic: V(s, a) for the action taken
        with torch.no_grad():
            painted = self.paint(c, act)
        B, _, S, _ = c.shape
        t = ((step.float() + 1) / self.a.steps).view(B, 1, 1, 1).expand(B, 1, S, S)
        with self.autocast(c):
            v = self.critic(torch.cat([c, painted, T, t, coord_planes(B, S, c.device)], 1)).float()
        critic_loss = F.mse_loss(v, goal)
        self.opt_critic.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.opt_critic.step()
        return critic_loss.detach()

    @torch.no_grad()
    def soft_update(self) -> None:
        tau = self.cfg.tau
        for tgt, src in ((self.actor_target, self.actor), (self.critic_target, self.critic)):
            for pt, ps in zip(tgt.parameters(), src.parameters()):
                pt.lerp_(ps, tau)
            for bt, bs in zip(tgt.buffers(), src.buffers()):
                bt.copy_(bs)

    @property
    def policy(self) -> torch.nn.Module:
        """The actor that is saved and shown: the weights' moving average when `ema` > 0."""
        return self.actor_ema if self.actor_ema is not None else self.actor

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.actor_ema is None:
            return
        for pe, p in zip(self.actor_ema.parameters(), self.actor.parameters()):
            pe.lerp_(p, 1 - self.cfg.ema)
        for be, b in zip(self.actor_ema.buffers(), self.actor.buffers()):
            be.copy_(b)

    def set_lr(self, factor: float) -> None:
        for opt, base in ((self.opt_actor, self.cfg.actor_lr), (self.opt_critic, self.cfg.critic_lr),
                          (self.opt_disc, self.cfg.disc_lr)):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = base * factor

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        names = ("actor", "actor_ema", "critic", "actor_target", "critic_target", "disc", "opt_actor", "opt_critic",
                 "opt_disc")
        return {n: getattr(self, n).state_dict() for n in names if getattr(self, n) is not None}

    def load_state(self, d: dict) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "disc"):
            if getattr(self, name) is not None:
                getattr(self, name).load_state_dict(d[name])
        if self.actor_ema is not None:      # a state saved before `ema` was switched on: average from here
            self.actor_ema.load_state_dict(d.get("actor_ema", d["actor"]))
        for name in ("opt_actor", "opt_critic", "opt_disc"):   # moments to the weights' device, steps on the CPU
            if getattr(self, name) is not None:
                load_optimizer(getattr(self, name), d[name])
