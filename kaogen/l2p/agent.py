"""A trained painting agent (actor + its config), as loaded from an "l2p-agent" checkpoint.

    agent = Agent.load()                          # the shipped checkpoint, offline
    agent = Agent.load("runs/00003-l2p/agent.pt")
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from kaogen.checkpoint import Checkpoint, checkpoints_dir, load_checkpoint, save_checkpoint
from kaogen.config import from_dict
from kaogen.errors import KaogenError
from kaogen.l2p.config import AgentConfig
from kaogen.l2p.networks import Actor, make_actor

KIND = "l2p-agent"
SHIPPED = "l2p-agent.pt"


class Agent:
    def __init__(self, cfg: AgentConfig, actor: Actor, source: str = ""):
        self.cfg, self.actor, self.source = cfg, actor.eval(), source

    @property
    def device(self) -> torch.device:
        return next(self.actor.parameters()).device

    def to(self, device) -> "Agent":
        self.actor.to(device)
        return self

    def save(self, path: str | Path, meta: dict | None = None, half: bool = False) -> Path:
        return save_checkpoint(path, Checkpoint(KIND, asdict(self.cfg), {"actor": self.actor.state_dict()}, meta or {}),
                               half=half)

    @classmethod
    def load(cls, path: str | Path | None = None, device="cpu") -> "Agent":
        if path is None:
            path = checkpoints_dir() / SHIPPED
            if not path.is_file():
                raise KaogenError(f"no shipped painting agent at {path}: pass --checkpoint (train one with `kaogen train-l2p`)")
        ck = load_checkpoint(path, kind=KIND)
        cfg = from_dict(AgentConfig, ck.config)
        actor = make_actor(cfg.actor, cfg.strokes_per_action, cfg.actor_width)
        try:
            actor.load_state_dict(ck.state["actor"])
        except (KeyError, RuntimeError) as e:
            raise KaogenError(f"{path}: the actor's weights do not fit its config ({str(e).splitlines()[0][:120]})") from None
        return cls(cfg, actor, str(path)).to(device)
