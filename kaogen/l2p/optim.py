"""Adam on one tensor, for the per-painting optimisations (`--plan`, `--refine`).

    opt = TensorAdam(x, lr=0.02)
    loss.backward(); opt.step(); opt.zero_grad()

The same update as `torch.optim.Adam` (single-tensor form, no weight decay, bit for bit on the same
device), but its step count is a Python int: torch's Adam keeps it in a tensor and reads it with
`.item()` on every step of every parameter, which on a GPU painting (10 planning steps per action,
40 actions) is hundreds of host reads per painting. Here nothing leaves the device.
"""

from __future__ import annotations

import math

import torch


class TensorAdam:
    def __init__(self, x: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.x, self.lr, self.betas, self.eps = x, lr, betas, eps
        self.m, self.v, self.t = torch.zeros_like(x), torch.zeros_like(x), 0

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        g = self.x.grad
        self.t += 1
        self.m.lerp_(g, 1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (self.v.sqrt() / math.sqrt(1 - b2 ** self.t)).add_(self.eps)
        self.x.addcdiv_(self.m, denom, value=-self.lr / (1 - b1 ** self.t))

    def zero_grad(self) -> None:
        self.x.grad = None


def load_optimizer(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimiser state saved by `state_dict()` (loaded to the CPU, as load_checkpoint does) into
    `opt`, whose parameters are already on their device: the moments follow the parameters; Adam's
    `step` counters are kept as CPU float32 tensors (unless the optimiser is capturable or fused,
    which wants them on the device). A step on the GPU would make the non-capturable (foreach) Adam
    read it back once per parameter and update."""
    opt.load_state_dict(state)
    for group in opt.param_groups:
        on_device = group.get("capturable", False) or group.get("fused", False)
        for p in group["params"]:
            st = opt.state.get(p, {})
            if torch.is_tensor(st.get("step")):
                st["step"] = st["step"].to(p.device if on_device else "cpu", torch.float32)


def restore_generator(g: torch.Generator, state, name: str) -> None:
    """Set a torch.Generator from a saved state, which must be (and is made) a CPU uint8 tensor."""
    from kaogen.errors import KaogenError

    if not torch.is_tensor(state) or state.dtype != torch.uint8:
        raise KaogenError(f"the saved random state {name!r} is not a byte tensor: the state file is damaged")
    g.set_state(state.detach().to("cpu"))
