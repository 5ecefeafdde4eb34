"""Learning to Paint: networks, stroke models, model-based DDPG, exact resume, painting, refinement, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import DEVICES

from kaogen.checkpoint import Checkpoint, save_checkpoint
from kaogen.cli.main import cli
from kaogen.l2p import Agent, AgentConfig, PaintOptions, TrainConfig, paint
from kaogen.l2p.ddpg import DDPG
from kaogen.l2p.networks import Actor, Critic, DenseActor
from kaogen.l2p.neural_renderer import NeuralRenderer
from kaogen.l2p.paint import to_full_canvas
from kaogen.l2p.refine import refine_strokes
from kaogen.l2p.replay import ReplayBuffer
from kaogen.l2p.stroke_model import StrokeModel, paint_exact
from kaogen.l2p.train import Trainer
from kaogen.metrics import mosaic, psnr, ssim
from kaogen.render import random_strokes
from kaogen.render.rasterize import rasterize
from kaogen.render.painting import Painting

TINY = dict(canvas=16, steps=3, strokes_per_action=2, actor_width=8, critic_width=8, reward="l2")


def tiny_cfg(**over) -> TrainConfig:
    agent = AgentConfig(**{**TINY, **over.pop("agent", {})})
    return TrainConfig(agent, **{**dict(envs=4, batch=8, replay=64, warmup=0, updates_per_episode=2, episodes=4,
                                        checkpoint_every=2, sample_every=2, keep=2), **over})


def make_images(folder: Path, n: int = 6) -> Path:
    """Synthetic targets: a dark disc on a coloured background, positions varying."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    for i in range(n):
        img = np.empty((48, 48, 3), np.uint8)
        img[:] = rng.integers(120, 255, 3)
        cx, cy = rng.integers(12, 36, 2)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 100] = (30, 20, 10)
        Image.fromarray(img).save(folder / f"img{i}.png")
    return folder


def train_straight_and_resumed(tmp_path: Path, cfg, seed: int) -> None:
    """Train cfg() (4 episodes) in one go into tmp_path/a, and as 2 episodes, then resumed, into
    tmp_path/b; the actors must be equal bit for bit."""
    data = make_images(tmp_path / "imgs")
    straight = Trainer(cfg(), [str(data)], tmp_path / "a", seed=seed)
    straight.train(progress=False)
    first = Trainer(cfg(episodes=2), [str(data)], tmp_path / "b", seed=seed)
    first.train(progress=False)
    second = Trainer(cfg(), [str(data)], tmp_path / "b", seed=seed)
    assert second.resume() and second.episode == 2
    second.train(progress=False)
    for net in ("actor", "actor_ema"):
        if net in straight.ddpg.state():
            for (n, p), (_, q) in zip(straight.ddpg.state()[net].items(), second.ddpg.state()[net].items()):
                assert torch.equal(p, q), (net, n)


@pytest.fixture
def agent_file(tmp_path) -> Path:
    torch.manual_seed(0)
    cfg = AgentConfig(**TINY)
    return Agent(cfg, Actor(cfg.strokes_per_action, cfg.actor_width)).save(tmp_path / "agent.pt")


def test_network_shapes_and_ranges():
    a, c = Actor(5, 8), Critic(8)
    x = torch.rand(3, 9, 32, 32)
    s = a(x)
    assert s.shape == (3, 5, 13) and s.min() >= 0 and s.max() <= 1
    assert c(torch.rand(3, 12, 32, 32)).shape == (3,)
    for S in (16, 64, 128):
        assert NeuralRenderer(S)(torch.rand(2, 10)).shape == (2, S, S)
    from kaogen.errors import KaogenError
    with pytest.raises(KaogenError):
        NeuralRenderer(48)


def test_actor_output_does_not_depend_on_the_batch():
    a = Actor(5, 8)
    x = torch.rand(4, 9, 32, 32)
    torch.testing.assert_close(a(x)[1:2], a(x[1:2]), atol=1e-5, rtol=0)


def test_soft_stroke_model_tends_to_the_exact_environment():
    g = torch.Generator().manual_seed(1)
    s = random_strokes(6, g, max_radius=0.3).view(2, 3, 13)
    canvas = torch.rand(2, 3, 32, 32, generator=g)
    exact = paint_exact(canvas, s)
    soft = StrokeModel(AgentConfig(canvas=32, softness=0.01)).paint(canvas, s)
    assert (soft - exact).abs().max() < 0.03
    loose = StrokeModel(AgentConfig(canvas=32, softness=1.0)).paint(canvas, s)
    assert (loose - exact).abs().max() > (soft - exact).abs().max()


def test_model_based_actor_update_improves_the_reward():
    """gamma = 0: the actor's gradient is the reward's, through the renderer; it must learn to paint a flat target."""
    torch.manual_seed(0)
    cfg = tiny_cfg(gamma=0.0, actor_lr=3e-3, agent={"steps": 1, "strokes_per_action": 4})
    ddpg = DDPG(cfg)
    g = torch.Generator().manual_seed(0)
    target = torch.tensor([0.1, 0.5, 0.2])[None, :, None, None].expand(8, 3, 16, 16).clone()
    canvas = torch.ones_like(target)
    step = torch.zeros(8, dtype=torch.long)

    def reward():
        from kaogen.l2p.ddpg import actor_input
        with torch.no_grad():
            a = ddpg.actor(actor_input(canvas, target, step, 1))
            return ddpg.reward(canvas, paint_exact(canvas, a), target).mean().item()

    before = reward()
    for _ in range(40):
        batch = {"canvas": canvas, "target": target, "step": step, "action": torch.rand(8, 4, 13, generator=g),
                 "after": canvas}
        ddpg.update(batch, g)
    assert reward() > before + 5.0     # reward_scale 100: 0.05 of MSE


@pytest.mark.parametrize("actor, ema", [("resnet", 0.0), ("dense", 0.0), ("dense", 0.9)])
def test_greedy_agent_has_no_critic_and_resumes_exactly(tmp_path, actor, ema):
    """gamma = 0 builds no critic or target networks, and its training state (the weights' moving
    average included) still resumes bit for bit."""
    ddpg = DDPG(tiny_cfg(gamma=0.0, ema=ema, agent={"actor": actor}))
    assert ddpg.critic is None and ddpg.actor_target is None
    assert set(ddpg.state()) == {"actor", "opt_actor"} | ({"actor_ema"} if ema else set())
    train_straight_and_resumed(tmp_path, lambda **over: tiny_cfg(gamma=0.0, ema=ema, agent={"actor": actor}, **over),
                               seed=1)


def test_ema_policy_is_the_moving_average_of_the_actors_weights(tmp_path):
    """ema = 0.5: after updates giving weights w1, w2 from w0, the policy is w0/4 + w1/4 + w2/2; the
    saved agent is the policy; a state saved without an average starts it from its actor."""
    torch.manual_seed(0)
    ddpg = DDPG(tiny_cfg(gamma=0.0, ema=0.5, actor_lr=1e-2, agent={"actor": "dense"}))
    g = torch.Generator().manual_seed(0)
    canvas, target = torch.ones(4, 3, 16, 16), torch.rand(4, 3, 16, 16, generator=g)
    batch = {"canvas": canvas, "target": target, "step": torch.zeros(4, dtype=torch.long),
             "action": torch.rand(4, 2, 13, generator=g), "after": canvas}
    w = [{k: v.clone() for k, v in ddpg.actor.state_dict().items()}]
    for _ in range(2):
        ddpg.update(batch, g)
        w.append({k: v.clone() for k, v in ddpg.actor.state_dict().items()})
    assert ddpg.policy is ddpg.actor_ema
    moved = 0
    for k, v in ddpg.actor_ema.state_dict().items():
        torch.testing.assert_close(v, w[0][k] / 4 + w[1][k] / 4 + w[2][k] / 2, rtol=1e-5, atol=1e-6)
        moved += not torch.equal(v, w[2][k])
    assert moved > 10          # the average is not the last iterate
    Agent(ddpg.cfg.agent, ddpg.policy).save(tmp_path / "a.pt")
    loaded = Agent.load(tmp_path / "a.pt").actor.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in ddpg.actor_ema.state_dict().items())
    plain = DDPG(tiny_cfg(gamma=0.0, agent={"actor": "dense"}))
    ddpg.load_state(plain.state())
    assert all(torch.equal(ddpg.actor_ema.state_dict()[k], v) for k, v in plain.actor.state_dict().items())


def test_dense_actor_lays_its_best_cells_whose_strokes_do_not_touch():
    """An action is the best cell, then the best cell whose stroke touches none already picked, ...;
    each cell's stroke is anchored within `reach` of the cell's centre; the best is laid last."""
    torch.manual_seed(0)
    a = DenseActor(3, 8).eval()
    with torch.no_grad():                                   # thinner strokes than at initialisation
        a.head[-1].bias[1 + 6:1 + 8] -= 1.0
    obs = torch.rand(3, 9, 32, 32)
    score, strokes = a.dense(obs)
    G = 8                                                                  # 32 px / 4
    assert score.shape == (3, G * G) and strokes.shape == (3, G * G, 13)
    assert strokes.min() >= 0 and strokes.max() <= 1
    centre = (torch.stack(torch.meshgrid(torch.arange(G), torch.arange(G), indexing="xy"), -1).reshape(-1, 2) + 0.5) / G
    for k in range(3):                                                     # the three control points
        assert (strokes[..., 2 * k:2 * k + 2] - centre).abs().max() <= a.reach + 1e-6
    act = a(obs)
    assert act.shape == (3, 3, 13)
    alpha = rasterize(strokes.detach().reshape(-1, 13), 64, 64).view(3 * G * G, 1, 64, 64)
    grown = torch.nn.functional.max_pool2d(alpha, 3, 1, 1).view(3, G * G, -1)    # 1 px wider
    alpha = alpha.view(3, G * G, -1)
    for b in range(3):
        picks = [int((strokes[b] == act[b, j]).all(1).nonzero()[0]) for j in range(3)][::-1]   # best first
        for n, i in enumerate(picks):
            for j in picks[:n]:
                assert (alpha[b, i] * alpha[b, j]).sum() < 0.5                 # exact strokes, overlap in px
            better = score[b] > score[b, i]
            if n == 0:
                assert not better.any()
            else:   # every better cell's stroke touches a stroke picked before
                assert ((grown[b][better] @ grown[b, picks[:n]].T) > 0).any(1).all()
    torch.testing.assert_close(a(obs)[1:2], a(obs[1:2]), atol=1e-5, rtol=0)


def test_dense_pick_shortlist_gives_the_picks_of_the_full_search():
    """choose() searches the best-scoring cells first and falls back to all cells where those run
    out: the picks must be those of pick_free over all cells, for thin strokes (the shortlist
    suffices) and fat ones (it runs out; the picks start afresh), with tied scores too."""
    from kaogen.l2p.networks import pick_free

    a = DenseActor(5, 8)
    g = torch.Generator().manual_seed(3)
    for fat in (0.05, 0.6):
        strokes = torch.rand(6, 64, 13, generator=g)
        strokes[..., 6:8] *= fat
        score = torch.randn(6, 64, generator=g)
        score[:, 10:20] = score[:, 10:11]                     # ties
        full, afresh = pick_free(score, strokes, 5)
        for shortlist in (4, 12, 48, 64):
            assert torch.equal(a.choose(score, strokes, shortlist), full), (fat, shortlist)
        assert afresh.any() == (fat > 0.5)


def test_dense_update_finds_the_missing_paint_and_predicts_its_reward():
    """White canvas, target white but for a dark square: after training on that state the score map
    peaks on the square, the stroke laid there paints it, and the scores match the rewards earned."""
    torch.manual_seed(0)
    cfg = tiny_cfg(gamma=0.0, actor_lr=1e-3, dense_samples=8, agent={"canvas": 32, "steps": 1, "actor": "dense",
                                                                     "strokes_per_action": 1, "reward": "psnr"})
    ddpg = DDPG(cfg)
    g = torch.Generator().manual_seed(0)
    canvas = torch.ones(4, 3, 32, 32)
    target = canvas.clone()
    target[:, :, 20:28, 4:12] = 0.1
    step = torch.zeros(4, dtype=torch.long)
    batch = {"canvas": canvas, "target": target, "step": step, "action": torch.rand(4, 1, 13), "after": canvas}
    first = ddpg.update(batch, g)
    for _ in range(100):
        last = ddpg.update(batch, g)
    assert last.reward > first.reward + 1.0                  # dB per sampled stroke
    from kaogen.l2p.ddpg import actor_input
    with torch.no_grad():
        obs = actor_input(canvas, target, step, 1)
        score, _ = ddpg.actor.dense(obs)
        best = score.argmax(1)
        assert ((best // 8 >= 4) & (best // 8 <= 7) & (best % 8 <= 3)).all()    # cells on or beside the square
        gain = psnr(paint_exact(canvas, ddpg.actor(obs)), target) - psnr(canvas, target)
    assert (gain > 5).all()
    assert ((score.max(1).values - gain).abs() < 0.25 * gain).all()          # it knows what its stroke earns


def test_dense_actor_needs_the_greedy_agent_and_round_trips(tmp_path):
    from kaogen.errors import KaogenError
    with pytest.raises(KaogenError, match="gamma = 0"):
        DDPG(tiny_cfg(agent={"actor": "dense"}))
    cfg = AgentConfig(**{**TINY, "actor": "dense", "canvas": 32})
    torch.manual_seed(0)
    agent = Agent(cfg, DenseActor(cfg.strokes_per_action, cfg.actor_width))
    loaded = Agent.load(agent.save(tmp_path / "dense.pt"))
    assert isinstance(loaded.actor, DenseActor)
    obs = torch.rand(2, 9, 32, 32)
    torch.testing.assert_close(loaded.actor(obs), agent.actor(obs))


def test_multiscale_reward_reaches_strokes_beside_the_missing_paint():
    """Paint is missing on the left; a stroke lies on the right, on paper already right. The plain MSE
    gives its position no gradient (moving it keeps it where nothing changes); the multi-scale
    distance pulls it left, toward the missing paint. With one scale the distance is the MSE."""
    S = 32
    target = torch.ones(1, 3, S, S)
    target[..., 4:28, 2:12] = 0.0                       # a black bar on the left
    canvas = torch.ones_like(target)
    stroke = torch.tensor([[[0.72, 0.5, 0.75, 0.5, 0.78, 0.5, 0.2, 0.2, 1.0, 1.0, 0.0, 0.0, 0.0]]])
    grads = {}
    for scales in (1, 4):
        ddpg = DDPG(tiny_cfg(gamma=0.0, agent={"canvas": S, "reward_scales": scales}))
        s = stroke.clone().requires_grad_(True)
        after = ddpg.model.paint(canvas, s)
        ddpg.reward(canvas, after, target).sum().backward()
        grads[scales] = s.grad[0, 0, [0, 2, 4]].sum().item()    # d reward / d x of the stroke's points
        if scales == 1:
            torch.testing.assert_close(ddpg.distance(canvas, target), ((canvas - target) ** 2).mean((1, 2, 3)))
    assert abs(grads[1]) < 1e-5
    assert grads[4] < -1e-3      # reward grows as the stroke moves left (x decreasing)


def test_psnr_reward_is_the_decibels_gained_and_telescopes():
    """reward = "psnr": one step's reward is the PSNR it adds; over a painting they sum to the final PSNR."""
    ddpg = DDPG(tiny_cfg(gamma=0.0, agent={"reward": "psnr"}))
    g = torch.Generator().manual_seed(4)
    target = torch.rand(3, 3, 16, 16, generator=g)
    canvases = [torch.ones_like(target)]
    for _ in range(3):
        canvases.append(paint_exact(canvases[-1], random_strokes(6, g).view(3, 2, 13)))
    rewards = [ddpg.reward(a, b, target) for a, b in zip(canvases, canvases[1:])]
    torch.testing.assert_close(rewards[0], psnr(canvases[1], target) - psnr(canvases[0], target), atol=1e-3, rtol=0)
    torch.testing.assert_close(sum(rewards), psnr(canvases[-1], target) - psnr(canvases[0], target), atol=1e-3, rtol=0)


def test_wgan_reward_update_runs_and_trains_the_discriminator():
    torch.manual_seed(0)
    ddpg = DDPG(tiny_cfg(agent={"reward": "wgan"}))
    g = torch.Generator().manual_seed(0)
    target, canvas = torch.rand(8, 3, 16, 16), torch.ones(8, 3, 16, 16)
    batch = {"canvas": canvas, "target": target, "step": torch.zeros(8, dtype=torch.long),
             "action": torch.rand(8, 2, 13), "after": canvas}
    gap = lambda: (ddpg.disc(target, target) - ddpg.disc(canvas, target)).mean().item()  # noqa: E731
    first = gap()
    for _ in range(15):
        losses = ddpg.update(batch, g)
    assert np.isfinite([losses.critic, losses.actor, losses.disc]).all()
    assert gap() > first     # the critic learns to tell real pairs from blank canvases


def test_replay_round_trip_and_ring():
    buf = ReplayBuffer(5, 4, 2, 13)
    for i in range(3):
        x = torch.full((2, 3, 4, 4), i / 3)
        buf.add(x, x, torch.tensor([i, i]), torch.rand(2, 2, 13), x)
    assert len(buf) == 5 and buf.pos == 1
    other = ReplayBuffer(5, 4, 2, 13)
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.canvas, buf.canvas) and other.pos == buf.pos and len(other) == 5


def test_training_resumes_exactly(tmp_path):
    train_straight_and_resumed(tmp_path, tiny_cfg, seed=3)
    a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(a) == len(b) == 4
    strip = lambda ln: {k: v for k, v in __import__("json").loads(ln).items() if k != "seconds"}  # noqa: E731
    assert [strip(x) for x in a] == [strip(x) for x in b]
    assert (tmp_path / "b" / "samples" / "episode-000004.png").is_file()
    assert len(list((tmp_path / "b").glob("train-*.pt"))) == 2           # keep = 2


def test_patch_strokes_map_onto_the_whole_canvas():
    """A stroke painted in patch (r, c) of a k x k grid lands on the same pixels of the k*S canvas."""
    g = torch.Generator().manual_seed(2)
    s = random_strokes(4, g, max_radius=0.3)
    s[:, 6:8] = s[:, 6:8].clamp(min=0.1)                # radii above the clamp
    k, S = 3, 16
    patch = paint_exact(torch.ones(1, 3, S, S), s[None])
    whole = paint_exact(torch.ones(1, 3, k * S, k * S), to_full_canvas(s, 1, 2, k)[None])
    inside = whole[:, :, S:2 * S, 2 * S:3 * S]
    assert (inside - patch).abs().max() < 0.02


def test_paint_counts_shapes_and_provenance(agent_file):
    agent = Agent.load(agent_file)
    imgs = [torch.rand(3, 20, 30), torch.rand(3, 40, 40)]
    out = paint(agent, imgs, PaintOptions(divide=2))
    assert len(out) == 2
    for p in out:
        assert len(p) == (3 + 4 * 3) * 2 and p.strokes.min() >= 0 and p.strokes.max() <= 1
        assert p.provenance["method"] == "l2p" and p.provenance["divide"] == 2
    assert out[0].aspect == pytest.approx(1.5)
    # the same image alone or in a batch: the same painting up to float rounding (convolutions sum in
    # a batch-dependent order; the differences grow a little from step to step, never visibly)
    alone = paint(agent, imgs[1:], PaintOptions(divide=2))[0]
    torch.testing.assert_close(alone.strokes[:4], out[1].strokes[:4], atol=1e-4, rtol=0)
    assert (alone.render(64) - out[1].render(64)).abs().mean() < 0.01
    planned = paint(agent, imgs, PaintOptions(plan=2))
    assert [len(p) for p in planned] == [6, 6] and planned[0].provenance["plan"] == 2


def test_refine_never_worse_and_improves():
    g = torch.Generator().manual_seed(0)
    target = torch.ones(3, 32, 32)
    target[:, 8:24, 8:24] = torch.tensor([0.2, 0.3, 0.6])[:, None, None]
    s = random_strokes(8, g, max_radius=0.4)
    blank = torch.ones(1, 3, 32, 32)
    err = lambda x: ((paint_exact(blank, x[None])[0] - target) ** 2).mean().item()  # noqa: E731
    out = refine_strokes(s, target, steps=60, lr=0.05)
    assert err(out) < 0.5 * err(s)
    assert err(refine_strokes(s, target, steps=0)) == err(s)


def test_planning_an_action_gains_more_and_never_less():
    """Each image's planned action gains at least what the proposed one does under the exact rasteriser,
    strictly more for most, and the canvas returned is the planned action painted."""
    from kaogen.l2p.distance import pyramid_distance
    from kaogen.l2p.plan import plan_action

    g = torch.Generator().manual_seed(0)
    target = torch.rand(8, 3, 1, 1, generator=g).expand(8, 3, 32, 32).clone()
    target[:, :, 8:24, 8:24] = torch.rand(8, 3, 1, 1, generator=g)
    canvas = torch.ones(8, 3, 32, 32)
    a = random_strokes(8 * 3, g, max_radius=0.3).view(8, 3, 13)
    model = StrokeModel(AgentConfig(canvas=32))
    planned, after = plan_action(model, canvas, target, a, steps=10)
    assert planned.shape == a.shape and planned.min() >= 0 and planned.max() <= 1
    torch.testing.assert_close(after, paint_exact(canvas, planned))
    d_plan, d_prop = (pyramid_distance(paint_exact(canvas, x), target, 4) for x in (planned, a))
    assert (d_plan <= d_prop).all() and (d_plan < 0.9 * d_prop).sum() >= 6
    same, _ = plan_action(model, canvas, target, a, steps=0)
    assert torch.equal(same, a)
    # steps far too long (lr 5) spoil most actions: those images keep the proposed one
    wild, _ = plan_action(model, canvas, target, a, steps=3, lr=5.0)
    kept = (wild == a).flatten(1).all(1)
    assert 2 <= kept.sum() < 8 and (pyramid_distance(paint_exact(canvas, wild), target, 4) <= d_prop).all()


def test_visible_area_counts_only_what_the_strokes_above_leave_showing():
    from kaogen.l2p.refine import visible_area

    alpha = torch.zeros(3, 8, 8)
    alpha[0, :4] = 1.0           # 32 px, then fully covered by stroke 2
    alpha[1, :, :2] = 0.5        # 16 px at half opacity; stroke 2 covers 8 of them
    alpha[2, :4] = 1.0           # on top: 32 px
    torch.testing.assert_close(visible_area(alpha), torch.tensor([0.0, 8 * 0.5, 32.0]))


def test_relocation_moves_hidden_strokes_onto_the_error_and_beats_keeping_the_layout():
    """A painting that repeats one stroke 12 times (11 hidden copies) of a target with detail elsewhere:
    relocation puts the hidden copies on the detail (at the end of the order) and refines to a lower
    error than gradient descent on the repeated layout."""
    from kaogen.l2p.refine import relocate_hidden

    g = torch.Generator().manual_seed(0)
    target = torch.ones(3, 32, 32)
    target[:, 4:12, 4:28] = torch.tensor([0.8, 0.1, 0.1])[:, None, None]       # red band at the top
    target[:, 18:30, 18:30] = torch.tensor([0.1, 0.1, 0.5])[:, None, None]     # blue square, bottom right
    one = torch.tensor([0.2, 0.25, 0.5, 0.25, 0.8, 0.25, 0.1, 0.1, 1.0, 1.0, 0.8, 0.1, 0.1])
    s = one.repeat(12, 1)
    moved = relocate_hidden(s, target, 1.0, min_visible=1.0, g=g)
    copies = (moved == one).all(1)
    k = int(copies.sum())              # the top copy, and one whose antialiased rim still shows
    assert moved.shape == s.shape and 1 <= k <= 2 and copies[:k].all()
    new = moved[k:]                    # the hidden copies, moved to the end of the order
    assert torch.allclose(new[:, 8:10], torch.ones(12 - k, 2))                 # opaque
    err = (paint_exact(torch.ones(1, 3, 32, 32), s[None])[0] - target).pow(2).sum(0)
    cx, cy = (new[:, 2] * 32).long(), (new[:, 3] * 32).long()
    assert (err[cy, cx] > 0).all()                                             # placed where the painting is wrong
    torch.testing.assert_close(new[:, 10:13], target[:, cy, cx].T)             # in the target's colour there
    blank = torch.ones(1, 3, 32, 32)
    mse = lambda x: ((paint_exact(blank, x[None])[0] - target) ** 2).mean().item()  # noqa: E731
    kept = refine_strokes(s, target, steps=60, lr=0.05, relocate=False)
    relocated = refine_strokes(s, target, steps=60, lr=0.05, relocate=True, min_visible=1.0)
    assert mse(relocated) < 0.5 * mse(kept)


def test_paint_cli_any_input_and_errors(tmp_path, agent_file):
    runner = CliRunner()
    gray = tmp_path / "gray.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50), np.uint8), "L").save(gray)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (24, 24), (200, 10, 10, 128)).save(rgba)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((20, 20), 40000, np.uint16)).save(deep)
    r = runner.invoke(cli, ["paint", str(gray), "-o", str(tmp_path / "g.gif"), "--checkpoint", str(agent_file),
                            "--size", "64", "--save-strokes", str(tmp_path / "g.json"), "--side-by-side"])
    assert r.exit_code == 0, r.output
    p = Painting.load(tmp_path / "g.json")
    assert len(p) == 6 and p.aspect == pytest.approx(50 / 30)
    for flag, relocated in (([], True), (["--keep-layout"], False)):
        r = runner.invoke(cli, ["paint", str(gray), "-o", str(tmp_path / f"r{len(flag)}.png"), "--checkpoint", str(agent_file),
                                "--refine", "3", "--save-strokes", str(tmp_path / f"r{len(flag)}.json")] + flag)
        assert r.exit_code == 0, r.output
        prov = Painting.load(tmp_path / f"r{len(flag)}.json").provenance
        assert prov["refine"] == 3 and prov["relocate"] is relocated
    frames = Image.open(tmp_path / "g.gif")
    assert frames.size[0] > frames.size[1] * 2              # target left of the painting
    folder = tmp_path / "in"
    folder.mkdir()
    for f in (gray, rgba, deep):
        (folder / f.name).write_bytes(f.read_bytes())
    r = runner.invoke(cli, ["paint", str(folder), "-o", str(tmp_path / "outs"), "--checkpoint", str(agent_file),
                            "--format", "png", "--size", "32", "--batch", "2"])
    assert r.exit_code == 0, r.output
    assert sorted(x.name for x in (tmp_path / "outs").iterdir()) == ["deep.png", "gray.png", "rgba.png"]
    # bad inputs: one line, exit 1, nothing written
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    wrong = save_checkpoint(tmp_path / "gan.pt", Checkpoint("gan", {}, {}))
    for args in (["paint", str(broken), "-o", str(tmp_path / "x.gif"), "--checkpoint", str(agent_file)],
                 ["paint", str(gray), "-o", str(tmp_path / "x.gif"), "--checkpoint", str(wrong)],
                 ["paint", str(gray), "-o", str(tmp_path / "x.xyz"), "--checkpoint", str(agent_file)],
                 ["paint", str(tmp_path / "nope.png"), "-o", str(tmp_path / "x.gif"), "--checkpoint", str(agent_file)]):
        r = runner.invoke(cli, args)
        assert r.exit_code == 1 and r.output.startswith("Error:") and len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "x.gif").exists()


@pytest.mark.parametrize("device", DEVICES)
def test_train_cli_config_and_resume(tmp_path, device):
    """--device explicit (auto would train on a GPU where there is one, unlike what the CPU case tests)."""
    data = make_images(tmp_path / "imgs")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("envs = 2\nbatch = 4\nreplay = 32\nwarmup = 0\nupdates_per_episode = 1\nepisodes = 1\n"
                   "checkpoint_every = 1\nsample_every = 1\n[agent]\ncanvas = 16\nsteps = 2\nstrokes_per_action = 1\n"
                   "actor_width = 8\ncritic_width = 8\nreward = \"l2\"\n")
    runner = CliRunner()
    r = runner.invoke(cli, ["train-l2p", "--config", str(cfg), "--data", str(data), "--outdir", str(tmp_path / "runs"),
                            "--no-progress", "--device", device])
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "00000-l2p"
    r = runner.invoke(cli, ["train-l2p", "--resume", str(run), "--episodes", "2", "--no-progress", "--device", device])
    assert r.exit_code == 0 and "episode 1" in r.output, r.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert __import__("json").loads((run / "config.json").read_text())["data"] == [str(data.resolve())]   # resumable anywhere
    assert Agent.load(run / "agent.pt").cfg.canvas == 16
    # --config on resume: new training settings (here a moving average), but not a new agent
    text = cfg.read_text().replace("episodes = 1\n", "episodes = 3\nema = 0.9\n")
    cfg.write_text(text)
    r = runner.invoke(cli, ["train-l2p", "--resume", str(run), "--config", str(cfg), "--no-progress", "--device", device])
    assert r.exit_code == 0 and "episode 2" in r.output, r.output
    assert __import__("json").loads((run / "config.json").read_text())["config"]["ema"] == 0.9
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    cfg.write_text(text.replace("canvas = 16", "canvas = 32"))
    r = runner.invoke(cli, ["train-l2p", "--resume", str(run), "--config", str(cfg), "--no-progress", "--device", device])
    assert r.exit_code == 1 and "different agent" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    cfg.write_text("episodes = 1\nbogus = 3\n")
    r = runner.invoke(cli, ["train-l2p", "--config", str(cfg), "--data", str(data), "--outdir", str(tmp_path / "runs")])
    assert r.exit_code == 1 and "bogus" in r.output


def test_neural_renderer_learns_the_exact_rasteriser(tmp_path):
    from kaogen.l2p.config import RendererTrainConfig
    from kaogen.l2p.train_renderer import train_renderer

    torch.manual_seed(0)
    cfg = RendererTrainConfig(canvas=16, batch=32, steps=60, lr=1e-3, holdout=64, checkpoint_every=30)
    first = train_renderer(RendererTrainConfig(**{**cfg.__dict__, "steps": 1}), tmp_path / "a", progress=False)
    last = train_renderer(cfg, tmp_path / "b", progress=False)
    assert last["mse"] < 0.5 * first["mse"]
    model = StrokeModel(AgentConfig(canvas=16, renderer="neural", renderer_checkpoint=str(tmp_path / "b" / "renderer.pt")))
    s = random_strokes(4).view(2, 2, 13).requires_grad_(True)
    model.paint(torch.ones(2, 3, 16, 16), s).sum().backward()
    assert s.grad.abs().sum() > 0


def test_metrics():
    a = torch.zeros(2, 3, 16, 16)
    assert psnr(a, a + 0.1).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-4) and (ssim(x, a) < 0.1).all()
    m = mosaic(x, 4)
    assert torch.allclose(m[..., :4, :4].mean((-1, -2)), x[..., :4, :4].mean((-1, -2)), atol=1e-6)
    assert (psnr(mosaic(x, 16), x) > 90).all() and (psnr(mosaic(x, 8), x) > psnr(mosaic(x, 2), x)).all()


def test_demo_paints_offline_with_shipped_checkpoints(tmp_path, agent_file, monkeypatch):
    from kaogen.ist.painter import Generator, NeuralPainter

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "l2p-agent.pt").write_bytes(agent_file.read_bytes())
    torch.manual_seed(0)
    NeuralPainter(Generator(width=8), "classic/kabura").save(shipped / "painter-classic-kabura.pt")
    from kaogen.gan.config import NetworkConfig
    from kaogen.gan.networks import Generator as GanGenerator
    from kaogen.gan.sample import GeneratorBundle

    net = NetworkConfig(resolution=32, z_dim=16, w_dim=16, mapping_layers=1, channel_base=64, channel_max=16)
    GeneratorBundle(GanGenerator(net)).save(shipped / "gan-kaokore.pt")
    monkeypatch.setenv("KAOGEN_CHECKPOINTS", str(shipped))
    r = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path / "demo"), "--size", "64", "--ist-steps", "2"])
    assert r.exit_code == 0, r.output
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"target.png", "l2p.gif", "l2p.mp4", "l2p.svg", "l2p.png", "l2p.json", "l2p-stages.png",
            "ist.gif", "ist.png", "ist.json", "gan-samples.png"} <= names
    assert len(Painting.load(tmp_path / "demo" / "l2p.json")) == 6
    assert Image.open(tmp_path / "demo" / "gan-samples.png").size == (4 * 32, 4 * 32)   # 16 faces, 4 x 4
    monkeypatch.setenv("KAOGEN_CHECKPOINTS", str(tmp_path / "empty"))
    r = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path / "demo2")])
    assert r.exit_code == 1 and "no shipped painting agent" in r.output
