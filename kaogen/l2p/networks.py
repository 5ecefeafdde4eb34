"""The agent's networks, as in Learning to Paint: actor, critic and the WGAN reward discriminator.

Observations are stacked image planes at the training canvas size S (pixels):

    actor input  (B, 9, S, S):  canvas (3) | target (3) | step / max_step (1) | x, y coordinates (2)
    critic input (B, 12, S, S): canvas before (3) | canvas after the action (3) | target (3) |
                                (step + 1) / max_step (1) | coordinates (2)

every plane in [0, 1]. The actor outputs `strokes_per_action` strokes of 13 fields in [0, 1]
(sigmoid). The critic estimates the value of the canvas after the action: it sees the action only
through the rendered canvas, which is what makes the DDPG "model-based" (the actor's gradient
flows through the differentiable renderer into the canvas).

Both are ResNet-18-like (four stages of two basic blocks, stride 2 each, after a stride-2 stem);
`width` sets the first stage's channels (64 in the paper). The actor uses GroupNorm, so a
painting never depends on which other images share its batch.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kaogen.render.strokes import NUM_FIELDS, spine


def coord_planes(B: int, S: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(B, 2, S, S): x and y of each pixel centre in [0, 1] (CoordConv inputs)."""
    r = (torch.arange(S, device=device, dtype=dtype) + 0.5) / S
    y, x = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([x, y])[None].expand(B, 2, S, S)


def _norm(ch: int, use: bool) -> nn.Module:
    return nn.GroupNorm(min(8, ch), ch) if use else nn.Identity()


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: bool):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=not norm)
        self.n1 = _norm(cout, norm)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=not norm)
        self.n2 = _norm(cout, norm)
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=not norm), _norm(cout, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.n1(self.c1(x)))
        return F.relu(self.n2(self.c2(h)) + self.skip(x))


class ResNet18(nn.Module):
    """(B, cin, S, S) -> (B, out). Stem stride 2, four stages (width, 2w, 4w, 8w) of stride 2."""

    def __init__(self, cin: int, out: int, width: int = 64, norm: bool = True):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(nn.Conv2d(cin, w[0], 3, 2, 1, bias=not norm), _norm(w[0], norm), nn.ReLU())
        blocks, c = [], w[0]
        for ch in w:
            blocks += [BasicBlock(c, ch, 2, norm), BasicBlock(ch, ch, 1, norm)]
            c = ch
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x))
        return self.fc(h.mean((2, 3)))


class Actor(nn.Module):
    """obs (B, 9, S, S) -> strokes (B, K, 13) in [0, 1]."""

    def __init__(self, strokes_per_action: int = 5, width: int = 64):
        super().__init__()
        self.k = strokes_per_action
        self.net = ResNet18(9, strokes_per_action * NUM_FIELDS, width, norm=True)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(obs)).view(-1, self.k, NUM_FIELDS)


class DenseActor(nn.Module):
    """obs (B, 9, S, S) -> strokes (B, K, 13) in [0, 1], chosen from a dense map of candidate strokes.

    A fully convolutional variant of the actor for the greedy agent (gamma = 0). Its ResNet-18-like
    backbone keeps the stride-4 features and adds the deeper stages' features upsampled to them
    (a small feature pyramid), so every cell of the G x G grid (G = S / 4) sees its surroundings and
    the whole picture. Each cell proposes one stroke anchored at the cell's centre (control points
    within `reach` canvas units of it) and a score, the reward that stroke alone is predicted to earn.
    An action is the K best-scoring cells whose strokes do not touch one another.

        dense(obs) -> scores (B, G*G), strokes (B, G*G, 13)      cells in row-major order
    """

    def __init__(self, strokes_per_action: int = 5, width: int = 64, reach: float = 0.25):
        super().__init__()
        self.k, self.reach = strokes_per_action, reach
        w = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(nn.Conv2d(9, w[0], 3, 2, 1, bias=False), _norm(w[0], True), nn.ReLU())
        stages, c = [], w[0]
        for ch in w:
            stages.append(nn.Sequential(BasicBlock(c, ch, 1 if ch == w[0] else 2, True), BasicBlock(ch, ch, 1, True)))
            c = ch
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(ch, w[1], 1) for ch in w)
        self.head = nn.Sequential(nn.Conv2d(w[1] + 2, w[1], 3, 1, 1), nn.ReLU(), nn.Conv2d(w[1], 1 + NUM_FIELDS, 1))

    def dense(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.max_pool2d(self.stem(obs), 2)                     # stride 4
        feats = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        G = feats[0].shape[-1]
        f = sum(F.interpolate(lat(x), size=(G, G), mode="bilinear", align_corners=False) if x.shape[-1] != G else lat(x)
                for lat, x in zip(self.lateral, feats))
        B = obs.shape[0]
        centre = coord_planes(B, G, obs.device, obs.dtype)      # (B, 2, G, G): x, y of cell centres
        out = self.head(torch.cat([F.relu(f), centre], 1))
        score, raw = out[:, 0].flatten(1), out[:, 1:]
        xy = (centre.repeat(1, 3, 1, 1) + self.reach * torch.tanh(raw[:, :6])).clamp(0, 1)   # 3 points, x y each
        strokes = torch.cat([xy, torch.sigmoid(raw[:, 6:])], 1)
        return score, strokes.flatten(2).transpose(1, 2)

    def choose(self, score: torch.Tensor, strokes: torch.Tensor, shortlist: int | None = None) -> torch.Tensor:
        """scores (B, N), strokes (B, N, 13) -> (B, K) cell indices: the best cell, then the best cell
        whose stroke does not touch those already picked, ... (so each stroke earns what it was
        scored for, painted alone). Where every stroke touches a pick, the picks start afresh.

        shortlist = L < N: the picks are searched among the L best-scoring cells first (cells are
        compared in score order, so while one of those is free it is the pick); rows whose shortlist
        runs out are searched again among all N cells. The picks of `pick_free` over all cells, 5x
        faster on a CPU (batch 16 of 256 cells on 2 cores: 2 ms instead of 10), but knowing which rows
        ran out reads a flag back from the device once per action. shortlist = None: 48 on the CPU
        (where that read costs nothing), all cells on an accelerator (no host-device sync at all;
        the full search is cheap there). Both give the same picks."""
        s = score.detach()
        N = s.shape[1]
        if shortlist is None:
            shortlist = 48 if s.device.type == "cpu" else N
        if shortlist >= N:
            return pick_free(s, strokes.detach(), self.k)[0]
        order = s.sort(dim=1, descending=True, stable=True).indices[:, :shortlist]   # ties: lower index first
        sub = strokes.detach().gather(1, order[..., None].expand(-1, -1, strokes.shape[-1]))
        picks, ran_out = pick_free(s.gather(1, order), sub, self.k)
        picks = order.gather(1, picks)
        if ran_out.any():
            picks[ran_out] = pick_free(s[ran_out], strokes.detach()[ran_out], self.k)[0]
        return picks

    shortlist: int | None = None      # for choose() in forward(); None: by device (see choose)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        score, strokes = self.dense(obs)
        pick = self.choose(score, strokes, self.shortlist).flip(1)               # the best-scoring stroke is laid last
        return strokes.gather(1, pick[..., None].expand(-1, -1, NUM_FIELDS))


def pick_free(score: torch.Tensor, strokes: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """score (B, N), strokes (B, N, 13) -> (B, k) picks, each the best-scoring cell whose stroke
    touches no earlier pick (spine discs, render/strokes.spine), starting afresh where every stroke
    touches one; and (B,) whether a row had to start afresh."""
    xy, r = spine(strokes)                                            # (B, N, n, 2), (B, N, n)
    taken = torch.zeros_like(score, dtype=torch.bool)
    afresh = torch.zeros(len(score), dtype=torch.bool, device=score.device)
    rows = torch.arange(len(score), device=score.device)
    picks = []
    for _ in range(k):
        full = taken.all(1, keepdim=True)
        afresh |= full[:, 0]
        taken = taken & ~full
        i = score.masked_fill(taken, float("-inf")).argmax(1)
        picks.append(i)
        gap = torch.cdist(xy.flatten(0, 1), xy[rows, i].repeat_interleave(xy.shape[1], 0)).view(*r.shape, -1)
        touch = (gap < r[..., :, None] + r[rows, i][:, None, None, :]).flatten(2).any(2)   # (B, N)
        taken = taken | touch
    return torch.stack(picks, 1), afresh


def make_actor(kind: str, strokes_per_action: int, width: int) -> nn.Module:
    """The actor of an AgentConfig: "resnet" (the paper's) or "dense" (DenseActor)."""
    return DenseActor(strokes_per_action, width) if kind == "dense" else Actor(strokes_per_action, width)


class Critic(nn.Module):
    """(B, 12, S, S) -> value (B,). No normalisation (as the reference's critic)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = ResNet18(12, 1, width, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class Discriminator(nn.Module):
    """WGAN critic on (canvas, target) pairs: (B, 6, S, S) in [0, 1] -> score (B,).

    Real pairs are (target, target), fake ones (canvas, target); the reward of an action is the
    change of the score it causes (Learning to Paint, section 3.3).
    """

    def __init__(self, width: int = 16):
        super().__init__()
        c = [6, width, 2 * width, 4 * width, 8 * width]
        layers = []
        for i in range(4):
            layers += [nn.Conv2d(c[i], c[i + 1], 5, 2, 2), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c[-1], 1, 3, 1, 1)

    def forward(self, canvas: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(torch.cat([canvas, target], 1))).mean((1, 2, 3))
