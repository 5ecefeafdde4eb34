"""`kaogen train-renderer`: fit the NeuralRenderer to kaogen's exact rasteriser on random strokes.

Run folder: renderer.pt ("l2p-renderer": the network, for `renderer = "neural"` agents),
state.pt (network, optimiser, step, generator: resumes exactly), metrics.jsonl, curves.png, and a
sheet of held-out strokes (exact above, neural below).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from kaogen.atomic import atomic_write_text
from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.images import save_image
from kaogen.l2p.config import RendererTrainConfig
from kaogen.l2p.neural_renderer import NeuralRenderer, renderer_error
from kaogen.plot import line_plot
from kaogen.render.rasterize import rasterize
from kaogen.render.strokes import SHAPE_FIELDS, random_strokes


def stroke_batch(n: int, g: torch.Generator, cfg: RendererTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """n random strokes (n, 13) and their exact alphas (n, S, S)."""
    s = random_strokes(n, g, max_radius=cfg.max_radius)
    return s, rasterize(s, cfg.canvas)


def train_renderer(cfg: RendererTrainConfig, run: Path, device="cpu", seed: int = 0, progress: bool = True) -> dict:
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    net = NeuralRenderer(cfg.canvas).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    held_s, held_a = stroke_batch(cfg.holdout, torch.Generator().manual_seed(10_000 + seed), cfg)
    held_s, held_a = held_s.to(device), held_a.to(device)
    step, state_path, metrics = 0, run / "state.pt", run / "metrics.jsonl"
    if state_path.is_file():
        ck = load_checkpoint(state_path, kind="l2p-renderer-train")
        net.load_state_dict(ck.state["net"])
        opt.load_state_dict(ck.state["opt"])
        g.set_state(ck.state["gen"])
        step = ck.meta["step"]
        if metrics.is_file():
            keep = [ln for ln in metrics.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            atomic_write_text(metrics, "".join(ln + "\n" for ln in keep))

    def save():
        save_checkpoint(state_path, Checkpoint("l2p-renderer-train", asdict(cfg),
                                               {"net": net.state_dict(), "opt": opt.state_dict(), "gen": g.get_state()},
                                               {"step": step}))
        err = renderer_error(net, held_s, held_a)
        save_checkpoint(run / "renderer.pt", Checkpoint("l2p-renderer", {"canvas": cfg.canvas},
                                                        {"renderer": net.state_dict()}, {"step": step, "heldout": err}))
        with open(metrics, "a") as f:
            f.write(json.dumps({"step": step, **{f"heldout_{k}": v for k, v in err.items()}}) + "\n")
        rows = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
        line_plot({"held-out mse": [(r["step"], r["heldout_mse"]) for r in rows]}, run / "curves.png")
        with torch.no_grad():
            pred = net(held_s[:8, : len(SHAPE_FIELDS)])
        save_image(run / "heldout.png", torch.cat([torch.cat(list(held_a[:8]), 1), torch.cat(list(pred), 1)], 0)[None].expand(3, -1, -1))
        return err

    bar = tqdm(total=cfg.steps, initial=step, desc="renderer", disable=not progress)
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (0.1 if step >= cfg.lr_decay_at * cfg.steps else 1.0)
        s, a = stroke_batch(cfg.batch, g, cfg)
        s, a = s.to(device), a.to(device)
        loss = F.mse_loss(net(s[:, : len(SHAPE_FIELDS)]), a)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.2e}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save()
    bar.close()
    return renderer_error(net, held_s, held_a)
