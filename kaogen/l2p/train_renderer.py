"""`kaogen train-renderer`: fit the NeuralRenderer to kaogen's exact rasteriser on random strokes.

Run folder: renderer.pt ("l2p-renderer": the network, for `renderer = "neural"` agents),
state.pt (network, optimiser, step, generator: resumes exactly), metrics.jsonl, curves.png, and a
sheet of held-out strokes (exact above, neural below).

On any device: the strokes are drawn by a CPU generator (the same strokes on every device; its state
is a CPU byte tensor in state.pt) and moved to the training device in one copy per step, where the
exact rasteriser draws their alphas. The loss is summed on the device and read back once per
`log_every` steps (the progress bar, metrics.jsonl's train_mse); states load to the CPU and Adam's
step counters stay there. `amp`: the network runs under bfloat16 autocast (kaogen.device.autocast,
on the CPU too); the strokes and the loss stay float32.
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
from kaogen.device import autocast, float32_region
from kaogen.images import save_image
from kaogen.l2p.config import RendererTrainConfig
from kaogen.l2p.optim import load_optimizer, restore_generator
from kaogen.l2p.neural_renderer import NeuralRenderer, renderer_error
from kaogen.plot import line_plot
from kaogen.render.rasterize import rasterize
from kaogen.render.strokes import SHAPE_FIELDS, random_strokes


def stroke_batch(n: int, g: torch.Generator, cfg: RendererTrainConfig, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """n random strokes (n, 13), drawn by the CPU generator `g` and moved to `device`, and their exact
    alphas (n, S, S), rasterised there."""
    s = random_strokes(n, g, max_radius=cfg.max_radius).to(device)
    return s, rasterize(s, cfg.canvas)


def renderer_loss(net: NeuralRenderer, s: torch.Tensor, alpha: torch.Tensor, amp: bool) -> torch.Tensor:
    """() float32: MSE of the network's alphas (under bf16 autocast when `amp`) against the exact ones."""
    with autocast(s.device, amp):
        pred = net(s[:, : len(SHAPE_FIELDS)])
    with float32_region(s.device):
        return F.mse_loss(pred.float(), alpha.float())


def train_renderer(cfg: RendererTrainConfig, run: Path, device="cpu", seed: int = 0, progress: bool = True,
                   amp: bool | None = None) -> dict:
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    amp = cfg.amp if amp is None else amp
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)                     # the initial weights depend on the seed only
        net = NeuralRenderer(cfg.canvas).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    held_s, held_a = stroke_batch(cfg.holdout, torch.Generator().manual_seed(10_000 + seed), cfg, device)
    step, state_path, metrics = 0, run / "state.pt", run / "metrics.jsonl"
    if state_path.is_file():
        ck = load_checkpoint(state_path, kind="l2p-renderer-train")       # to the CPU; moved below
        net.load_state_dict(ck.state["net"])                                # copies into the device's weights
        load_optimizer(opt, ck.state["opt"])                                # moments to the device, steps on the CPU
        restore_generator(g, ck.state["gen"], "gen")
        step = ck.meta["step"]
        if metrics.is_file():
            keep = [ln for ln in metrics.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            atomic_write_text(metrics, "".join(ln + "\n" for ln in keep))
    train_mse = [float("nan")]          # mean training loss of the last logging interval

    def save():
        save_checkpoint(state_path, Checkpoint("l2p-renderer-train", asdict(cfg),
                                               {"net": net.state_dict(), "opt": opt.state_dict(), "gen": g.get_state()},
                                               {"step": step}))
        err = renderer_error(net, held_s, held_a)
        save_checkpoint(run / "renderer.pt", Checkpoint("l2p-renderer", {"canvas": cfg.canvas},
                                                        {"renderer": net.state_dict()}, {"step": step, "heldout": err}))
        with open(metrics, "a") as f:
            f.write(json.dumps({"step": step, "train_mse": train_mse[0], **{f"heldout_{k}": v for k, v in err.items()}})
                    + "\n")
        rows = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
        line_plot({"held-out mse": [(r["step"], r["heldout_mse"]) for r in rows]}, run / "curves.png")
        with torch.no_grad():
            pred = net(held_s[:8, : len(SHAPE_FIELDS)])
        save_image(run / "heldout.png", torch.cat([torch.cat(list(held_a[:8]), 1), torch.cat(list(pred), 1)], 0)[None].expand(3, -1, -1))
        return err

    bar = tqdm(total=cfg.steps, initial=step, desc="renderer", disable=not progress)
    total, count = torch.zeros((), device=device), 0        # the interval's summed loss, on the device
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (0.1 if step >= cfg.lr_decay_at * cfg.steps else 1.0)
        s, a = stroke_batch(cfg.batch, g, cfg, device)
        loss = renderer_loss(net, s, a, amp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        total, count = total + loss.detach(), count + 1
        if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or step == cfg.steps:
            train_mse[0] = (total / count).item()               # the one read-back of the interval
            total, count = torch.zeros((), device=device), 0
            bar.set_postfix(loss=f"{train_mse[0]:.2e}")
        bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save()
    bar.close()
    return renderer_error(net, held_s, held_a)
