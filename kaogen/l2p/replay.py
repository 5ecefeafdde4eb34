"""Replay memory of transitions, images stored as uint8 (a ring buffer of fixed capacity).

A transition: canvas before (3, S, S), target (3, S, S), step index, action (K, 13), canvas after.
Its whole content is a dict of tensors (`state_dict`), so a resumed run continues with the very
same memory.
"""

from __future__ import annotations

import torch


def to_u8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


class ReplayBuffer:
    def __init__(self, capacity: int, canvas: int, strokes_per_action: int, num_fields: int):
        S, K = canvas, strokes_per_action
        self.capacity = capacity
        self.canvas = torch.zeros(capacity, 3, S, S, dtype=torch.uint8)
        self.target = torch.zeros(capacity, 3, S, S, dtype=torch.uint8)
        self.after = torch.zeros(capacity, 3, S, S, dtype=torch.uint8)
        self.step = torch.zeros(capacity, dtype=torch.long)
        self.action = torch.zeros(capacity, K, num_fields)
        self.size, self.pos = 0, 0

    def __len__(self) -> int:
        return self.size

    def add(self, canvas, target, step, action, after) -> None:
        """A batch of B transitions; images float in [0, 1]."""
        B = canvas.shape[0]
        idx = (self.pos + torch.arange(B)) % self.capacity
        self.canvas[idx], self.target[idx], self.after[idx] = to_u8(canvas).cpu(), to_u8(target).cpu(), to_u8(after).cpu()
        self.step[idx], self.action[idx] = step, action.detach().cpu()
        self.pos = int((self.pos + B) % self.capacity)
        self.size = min(self.capacity, self.size + B)

    def add_u8(self, canvas, target, step, action, after) -> None:
        """A batch of transitions already as uint8 images on the CPU (a whole rollout at once); the
        memory then holds what one `add` per transition, in order, would leave in it."""
        B = canvas.shape[0]
        if B > self.capacity:           # only the last `capacity` survive; no index is written twice
            drop = B - self.capacity
            canvas, target, step, action, after = (x[drop:] for x in (canvas, target, step, action, after))
            self.pos, self.size, B = int((self.pos + drop) % self.capacity), self.capacity, self.capacity
        idx = (self.pos + torch.arange(B)) % self.capacity
        self.canvas[idx], self.target[idx], self.after[idx] = canvas, target, after
        self.step[idx], self.action[idx] = step, action
        self.pos = int((self.pos + B) % self.capacity)
        self.size = min(self.capacity, self.size + B)

    def sample(self, n: int, g: torch.Generator, device) -> dict[str, torch.Tensor]:
        idx = torch.randint(self.size, (n,), generator=g)
        f = lambda t: t[idx].to(device).float() / 255  # noqa: E731
        return {"canvas": f(self.canvas), "target": f(self.target), "after": f(self.after),
                "step": self.step[idx].to(device), "action": self.action[idx].to(device)}

    def state_dict(self) -> dict:
        n = self.size
        return {"canvas": self.canvas[:n].clone(), "target": self.target[:n].clone(), "after": self.after[:n].clone(),
                "step": self.step[:n].clone(), "action": self.action[:n].clone(),
                "pos": torch.tensor(self.pos), "capacity": torch.tensor(self.capacity)}

    def load_state_dict(self, d: dict) -> None:
        n = d["step"].shape[0]
        for k in ("canvas", "target", "after", "step", "action"):
            getattr(self, k)[:n] = d[k]
        self.size, self.pos = n, int(d["pos"])
