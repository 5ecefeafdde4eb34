"""Typed configs of Learning to Paint (defaults: the paper's settings; `configs/l2p/` overrides).

Every field can be set in a TOML file (`kaogen train-l2p --config configs/l2p/cpu.toml`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class AgentConfig:
    canvas: int = 128                   # training canvas, px: the agent observes canvas and target at S x S
    steps: int = 40                     # actions per painting (40 x 5 = 200 strokes)
    strokes_per_action: int = 5
    actor: Literal["resnet", "dense"] = "resnet"   # dense: DenseActor (networks.py), greedy agents only
    actor_width: int = 64               # first-stage channels of the ResNet-18-like actor / critic
    critic_width: int = 64
    renderer: Literal["soft", "neural"] = "soft"   # differentiable stroke model for the model-based gradient
    renderer_checkpoint: str = ""       # for renderer = "neural": a `kaogen train-renderer` checkpoint
    softness: float = 0.5               # px, for renderer = "soft"
    reward: Literal["wgan", "l2", "psnr"] = "wgan"   # psnr: dB gained, 10 log10(d before / d after)
    reward_scale: float = 100.0         # l2 reward: scale * (mse before - mse after)
    reward_scales: int = 1              # l2 reward: MSE averaged over this many resolutions (S, S/2, ...)
    background: float = 1.0             # grey level of the blank canvas (1: white paper)


@dataclass
class TrainConfig:
    agent: AgentConfig = field(default_factory=AgentConfig)
    envs: int = 96                      # paintings rolled out in parallel
    batch: int = 96                     # transitions per update
    replay: int = 32000                 # transitions kept (uint8 images)
    warmup: int = 400                   # env steps before updates start
    updates_per_episode: int = 10
    episodes: int = 1000                # training length
    gamma: float = 0.95 ** 5            # discount per action (0.95 per stroke, 5 strokes)
    tau: float = 0.001                  # target network soft update
    actor_lr: float = 3e-4
    critic_lr: float = 1e-3
    disc_lr: float = 3e-4
    lr_decay_at: int = 5000             # episode from which the learning rates are 10x lower
    ema: float = 0.0                    # > 0: the saved agent is this moving average of the actor's weights (decay per update)
    dense_samples: int = 16             # actor = "dense": candidate strokes scored per replayed state
    noise: float = 0.0                  # Gaussian exploration noise on actions (the reference uses 0)
    crop_scale: float = 0.7             # random crops cover at least this fraction of a side
    checkpoint_every: int = 50          # episodes
    sample_every: int = 50              # episodes
    keep: int = 3                       # periodic checkpoints kept
    amp: bool = False                   # bfloat16 autocast of the networks (any device; `--amp/--no-amp`);
                                        # strokes, rasterisers, rewards, losses and PSNR stay float32


@dataclass
class RendererTrainConfig:
    canvas: int = 128                   # output size of the neural renderer, px (a power of 2, >= 16)
    batch: int = 64
    steps: int = 20000
    lr: float = 1e-4
    lr_decay_at: float = 0.5
    max_radius: float = 1.0             # training strokes: radius field scaled by this
    holdout: int = 512                  # fixed held-out strokes for the error report
    checkpoint_every: int = 1000
    log_every: int = 100                # steps between reads of the training loss (progress bar, metrics)
    amp: bool = False                   # bfloat16 autocast of the network (any device; `--amp/--no-amp`)
