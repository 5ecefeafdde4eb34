"""Learning to Paint on any device: resume (states on the CPU, then moved), host syncs per painting and
per training step, bf16 autocast (amp) on the CPU, paintings parametrised over DEVICES."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from conftest import DEVICES
from sync_counter import SyncCounter

from kaogen.checkpoint import load_checkpoint
from kaogen.cli.main import cli
from kaogen.l2p import Agent, AgentConfig, PaintOptions, paint
from kaogen.l2p.ddpg import DDPG
from kaogen.l2p.networks import Actor, DenseActor
from kaogen.l2p.train import Trainer, latest_state

sys.path.insert(0, str(Path(__file__).parent))
from test_l2p import TINY, make_images, tiny_cfg  # noqa: E402

ALL_CELLS = 1 << 30       # DenseActor.shortlist: search every cell, the accelerator's (sync-free) path


class L2PSyncs(SyncCounter):
    """SyncCounter that keeps only the calls made from kaogen/l2p and kaogen/cli (the render package's
    own syncs are another part's; torch.optim's are left out by SyncCounter)."""

    def _count(self, kind: str, op: str) -> None:
        f = sys._getframe(2)                    # the caller of the torch function
        if "torch/optim/" in f.f_code.co_filename.replace("\\", "/"):
            return                              # Adam's CPU step counters (checked above to be on the CPU)
        while f is not None and "/kaogen/" not in f.f_code.co_filename.replace("\\", "/"):
            f = f.f_back
        if f is None:
            return
        name = f.f_code.co_filename.replace("\\", "/").split("/kaogen/")[-1]
        if name.startswith(("l2p/", "cli/")):
            self.where[(kind, f"{name}:{f.f_lineno}:{op}")] += 1


def adam_steps(*opts) -> list[torch.Tensor]:
    return [st["step"] for opt in opts if opt is not None for st in opt.state.values()]


def tiny_agent(actor: str = "resnet", **over) -> Agent:
    torch.manual_seed(0)
    cfg = AgentConfig(**{**TINY, "actor": actor, **over})
    net = DenseActor(cfg.strokes_per_action, cfg.actor_width) if actor == "dense" else Actor(cfg.strokes_per_action, cfg.actor_width)
    return Agent(cfg, net)


# ------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("device", DEVICES)
def test_train_l2p_resumes_on_the_device_with_cpu_steps_and_rng_states(tmp_path, device):
    """A run trained on `device`, stopped and resumed there: every saved RNG state is a CPU uint8
    tensor, every Adam step counter is a CPU tensor after resume (the moments on the device), and the
    resumed run ends where the straight one does (bit for bit on the CPU)."""
    data = make_images(tmp_path / "imgs")
    cfg = lambda **o: tiny_cfg(gamma=0.0, **{"agent": {"actor": "dense"}, **o})  # noqa: E731
    straight = Trainer(cfg(), [str(data)], tmp_path / "a", device=device, seed=2)
    straight.train(progress=False)
    Trainer(cfg(episodes=2), [str(data)], tmp_path / "b", device=device, seed=2).train(progress=False)
    ck = load_checkpoint(latest_state(tmp_path / "b"), kind="l2p-train")
    for name, st in ck.state["gens"].items():
        assert st.dtype == torch.uint8 and st.device.type == "cpu", name
    resumed = Trainer(cfg(), [str(data)], tmp_path / "b", device=device, seed=2)
    assert resumed.resume() and resumed.episode == 2
    steps = adam_steps(resumed.ddpg.opt_actor, resumed.ddpg.opt_critic, resumed.ddpg.opt_disc)
    assert steps and all(s.device.type == "cpu" and s.dtype == torch.float32 for s in steps)
    moments = [st["exp_avg"] for st in resumed.ddpg.opt_actor.state.values()]
    assert all(m.device.type == torch.device(device).type for m in moments)
    for k, g in resumed.gens.items():          # the generators continue where the saved run stopped
        assert torch.equal(g.get_state(), ck.state["gens"][k])
    resumed.train(progress=False)
    for (n, p), q in zip(straight.ddpg.actor.state_dict().items(), resumed.ddpg.actor.state_dict().values()):
        if device == "cpu":
            assert torch.equal(p, q), n
        else:                                   # CUDA: some backward kernels are not deterministic
            torch.testing.assert_close(p, q, atol=1e-3, rtol=1e-3)


def test_loaded_adam_state_keeps_its_step_counters_on_the_cpu():
    """load_optimizer: moments follow the parameters, steps are CPU float32 tensors whatever dtype
    or device the saved ones had (a state loaded with map_location=cuda had them on the GPU)."""
    from kaogen.l2p.optim import load_optimizer

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    net = torch.nn.Linear(3, 2).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net(torch.rand(4, 3, device=dev)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    for st in sd["state"].values():            # as if the checkpoint had been loaded to the device
        st["step"] = st["step"].to(dev, torch.float64)
    fresh = torch.optim.Adam(net.parameters(), lr=1e-2)
    load_optimizer(fresh, sd)
    assert all(s.device.type == "cpu" and s.dtype == torch.float32 for s in adam_steps(fresh))
    assert all(st["exp_avg"].device == net.weight.device for st in fresh.state.values())


def test_train_renderer_resumes_exactly_rasterises_on_its_device_and_reads_the_loss_once_per_interval(tmp_path, monkeypatch):
    """train-renderer: 6 steps straight = 3 + 3 resumed, bit for bit (the initial weights follow the
    seed, not the global RNG); its generator state is a CPU
    uint8 tensor; the exact rasteriser is given strokes on the training device; the host reads the
    loss once per `log_every` steps, not once per step."""
    import kaogen.l2p.train_renderer as tr
    from kaogen.l2p.config import RendererTrainConfig

    cfg = lambda steps, **o: RendererTrainConfig(**{**dict(canvas=16, batch=8, steps=steps, lr=1e-3, holdout=8,  # noqa: E731
                                                         lr_decay_at=1.0, checkpoint_every=3, log_every=3), **o})
    tr.train_renderer(cfg(6), tmp_path / "a", progress=False)
    torch.rand(1)                               # another global RNG state
    tr.train_renderer(cfg(3), tmp_path / "b", progress=False)
    st = load_checkpoint(tmp_path / "b" / "state.pt", kind="l2p-renderer-train").state
    assert st["gen"].dtype == torch.uint8 and st["gen"].device.type == "cpu"
    tr.train_renderer(cfg(6), tmp_path / "b", progress=False)
    a, b = (load_checkpoint(tmp_path / x / "renderer.pt", kind="l2p-renderer").state["renderer"] for x in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    seen = []
    real = tr.rasterize
    monkeypatch.setattr(tr, "rasterize", lambda s, *a, **k: seen.append(s.device) or real(s, *a, **k))
    counts = {}
    for steps in (2, 8):
        with L2PSyncs() as c:
            tr.train_renderer(cfg(steps, checkpoint_every=100, log_every=100), tmp_path / f"c{steps}", progress=False)
        counts[steps] = c.where
    syncs = {k: {w: n for w, n in c.items() if w[0] == "sync"} for k, c in counts.items()}
    assert syncs[2] == syncs[8], syncs                                   # read-backs: per interval
    assert sum(counts[8].values()) - sum(counts[2].values()) == 6        # one copy per step: the strokes
    assert seen and all(d == torch.device("cpu") for d in seen)


@pytest.mark.parametrize("device", DEVICES)
def test_train_renderer_on_the_device(tmp_path, device, monkeypatch):
    import kaogen.l2p.train_renderer as tr
    from kaogen.l2p.config import RendererTrainConfig

    seen = []
    real = tr.rasterize
    monkeypatch.setattr(tr, "rasterize", lambda s, *a, **k: seen.append(s.device.type) or real(s, *a, **k))
    cfg = RendererTrainConfig(canvas=16, batch=8, steps=4, lr=1e-3, holdout=8, checkpoint_every=2, log_every=2)
    tr.train_renderer(cfg, tmp_path / "r", device=device, progress=False)
    tr.train_renderer(RendererTrainConfig(**{**cfg.__dict__, "steps": 6}), tmp_path / "r", device=device, progress=False)
    assert seen and set(seen) == {torch.device(device).type}
    rows = [__import__("json").loads(ln) for ln in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6] and all(r["train_mse"] > 0 for r in rows)


# ------------------------------------------------------------------------------------------- syncs
def count(agent: Agent, opts: PaintOptions, n: int = 1) -> dict:
    imgs = [torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(i)) for i in range(n)]
    with L2PSyncs() as c:
        paint(agent, imgs, opts)
    return c.where


@pytest.mark.parametrize("actor", ["resnet", "dense"])
def test_painting_syncs_do_not_grow_with_the_strokes(actor):
    """The l2p parts of a painting (agent, cell picking, --plan) read back from the device a fixed
    number of times per painting: 2 actions or 8 give the same count. Dense: the accelerator's search
    over all cells (on the CPU the shortlist reads a flag per action, which costs nothing there)."""
    agent = tiny_agent(actor, canvas=32, reward_scales=3)      # --plan climbs a 3-level pyramid
    if actor == "dense":
        agent.actor.shortlist = ALL_CELLS
    for opts in (dict(), dict(plan=3)):
        few, many = count(agent, PaintOptions(steps=2, **opts)), count(agent, PaintOptions(steps=8, **opts))
        assert few == many, (opts, few, many)
        assert sum(many.values()) <= 2, many            # the image to the device, the strokes back


def test_refine_syncs_do_not_grow_with_its_steps_or_the_strokes():
    agent = tiny_agent("resnet")
    keep = [count(agent, PaintOptions(steps=s, refine=r, refine_relocate=False)) for s, r in ((2, 10), (8, 30))]
    assert keep[0] == keep[1], keep
    moved = [count(agent, PaintOptions(steps=s, refine=r)) for s, r in ((2, 10), (8, 30))]
    for m in moved:       # a few per relocation round (at most 4), never per step or stroke
        assert sum(m.values()) <= sum(keep[0].values()) + 4 * 8, m


# ------------------------------------------------------------------------------------------- amp
def amp_batch(g, n=4, S=16, K=2):
    canvas = torch.ones(n, 3, S, S)
    return {"canvas": canvas, "target": torch.rand(n, 3, S, S, generator=g), "step": torch.zeros(n, dtype=torch.long),
            "action": torch.rand(n, K, 13, generator=g), "after": canvas}


@pytest.mark.parametrize("over", [dict(gamma=0.0, agent={"actor": "dense", "reward": "psnr"}),
                                  dict(gamma=0.0, agent={"reward": "psnr", "reward_scales": 2}),
                                  dict(agent={"reward": "wgan"})], ids=["dense", "greedy", "ddpg-wgan"])
def test_amp_updates_are_finite_close_to_float32_and_feed_float32_strokes(over, monkeypatch):
    """bf16 autocast on the CPU: a few updates (dense, greedy, DDPG with critic and WGAN reward) give
    finite losses close to the float32 ones, yet not the same (autocast ran), and the stroke model
    only ever sees float32 strokes and canvases."""
    from kaogen.l2p.stroke_model import StrokeModel

    seen = set()
    real = StrokeModel.paint
    monkeypatch.setattr(StrokeModel, "paint", lambda self, c, s: seen.add((c.dtype, s.dtype)) or real(self, c, s))
    runs = {}
    for amp in (False, True):
        torch.manual_seed(0)
        ddpg = DDPG(tiny_cfg(**{**over, "agent": dict(over["agent"])}))
        ddpg.amp = amp
        g = torch.Generator().manual_seed(0)
        runs[amp] = [ddpg.update(amp_batch(g), g).stacked() for _ in range(3)]
    f32, bf16 = torch.stack(runs[False]), torch.stack(runs[True])
    assert torch.isfinite(bf16).all() and bf16.dtype == torch.float32
    torch.testing.assert_close(bf16[0], f32[0], atol=0.03, rtol=0.03)      # the same weights: bf16 rounding only
    torch.testing.assert_close(bf16, f32, atol=0.1, rtol=0.25)             # then the weights drift apart a little
    assert not torch.equal(bf16, f32)
    assert seen == {(torch.float32, torch.float32)}


def test_amp_cli_flags_reach_the_config(tmp_path):
    data = make_images(tmp_path / "imgs")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("envs = 2\nbatch = 4\nreplay = 32\nwarmup = 0\nupdates_per_episode = 1\nepisodes = 1\n"
                   "checkpoint_every = 1\nsample_every = 1\ngamma = 0.0\n[agent]\ncanvas = 16\nsteps = 2\n"
                   "strokes_per_action = 1\nactor_width = 8\nreward = \"l2\"\n")
    r = CliRunner().invoke(cli, ["train-l2p", "--config", str(cfg), "--data", str(data), "--outdir", str(tmp_path / "runs"),
                                 "--no-progress", "--device", "cpu", "--amp"])
    assert r.exit_code == 0, r.output
    saved = __import__("json").loads((tmp_path / "runs" / "00000-l2p" / "config.json").read_text())
    assert saved["config"]["amp"] is True
    rows = [__import__("json").loads(ln) for ln in (tmp_path / "runs" / "00000-l2p" / "metrics.jsonl").read_text().splitlines()]
    assert all(abs(rows[0][k]) < float("inf") for k in ("actor", "reward", "psnr"))
    r = CliRunner().invoke(cli, ["train-renderer", "--out", str(tmp_path / "ren"), "--steps", "2", "--canvas", "16",
                                 "--no-progress", "--device", "cpu", "--amp"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "ren" / "state.pt", kind="l2p-renderer-train").config["amp"] is True


# ------------------------------------------------------------------------------------------- devices
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("actor", ["resnet", "dense"])
def test_painting_on_the_device_matches_the_cpu(device, actor):
    """paint() (with --plan, --refine and --divide) on `device` paints what it paints on the CPU."""
    agent = tiny_agent(actor, canvas=32)
    imgs = [torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(1))]
    opts = PaintOptions(steps=3, plan=2, refine=4, divide=2)
    cpu = paint(agent, imgs, opts)[0]
    dev = paint(tiny_agent(actor, canvas=32).to(device), imgs, opts)[0]
    assert dev.strokes.device.type == "cpu" and len(dev) == len(cpu) == (3 + 4 * 3) * 2
    if device == "cpu":
        assert torch.equal(dev.strokes, cpu.strokes)
    else:
        assert (dev.render(64) - cpu.render(64)).abs().mean() < 0.02


@pytest.mark.parametrize("actor", ["resnet", "dense"])
def test_a_whole_painting_with_the_accelerator_policy_syncs_a_fixed_few_times(actor, monkeypatch):
    """Everything a painting runs, the renderer included, under the rasterisers' accelerator policy
    (whole-canvas evaluation without read-back, which a GPU takes for an action's strokes): 2 actions
    or 8, with or without --plan, give the same count of syncs and host-to-device copies."""
    import importlib

    policy = lambda s, H, W, dense=None: True if dense is None else dense   # noqa: E731
    for name in ("kaogen.render.rasterize", "kaogen.render.soft"):
        monkeypatch.setattr(importlib.import_module(name), "use_dense", policy)
    agent = tiny_agent(actor, canvas=32, reward_scales=3)
    if actor == "dense":
        agent.actor.shortlist = ALL_CELLS
    imgs = [torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))]
    for opts in (dict(), dict(plan=3)):
        totals = []
        for steps in (2, 8):
            with SyncCounter() as c:
                paint(agent, imgs, PaintOptions(steps=steps, **opts))
            totals.append(dict(c.counts))
        assert totals[0] == totals[1], (opts, totals)
        assert sum(totals[1].values()) <= 8, totals
