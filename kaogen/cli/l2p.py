"""`kaogen train-l2p` and `kaogen train-renderer`: training the Learning to Paint agent and its neural renderer."""

from __future__ import annotations

import click

from kaogen.cli.common import device_option, seed_option


@click.command("train-l2p")
@click.option("--data", multiple=True, type=click.Path(file_okay=False),
              help="KaoKore root or image folder (repeatable; both kinds may be mixed).")
@click.option("--outdir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Parent of the numbered run folder.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML TrainConfig (see configs/l2p/). With --resume: new training settings (schedule, "
                   "ema, ...) for the rest of the run; its [agent] must be the run's.")
@click.option("--resume", type=click.Path(file_okay=False), default=None,
              help="Run folder to continue (exactly where its last state left off).")
@click.option("--episodes", type=int, default=None, help="Train until this many episodes in total.")
@click.option("--split", default="all", show_default=True, type=click.Choice(["train", "dev", "test", "all"]),
              help="KaoKore split to train on.")
@click.option("--holdout-every", type=int, default=0, show_default=True,
              help="Keep every k-th image out of training (the sample sheets show them).")
@click.option("--progress/--no-progress", default=True)
@click.option("--amp/--no-amp", default=None,
              help="bfloat16 autocast of the networks, on any device (CPU too) [default: the config's `amp`].")
@device_option
@seed_option
def train_l2p(data, outdir, config_path, resume, episodes, split, holdout_every, progress, amp, device, seed):
    """Train a Learning to Paint agent (model-based DDPG); checkpoints and resumes exactly."""
    import json
    from dataclasses import asdict, replace
    from pathlib import Path

    from kaogen.config import from_dict, load_config
    from kaogen.device import resolve_device
    from kaogen.errors import KaogenError
    from kaogen.l2p.config import TrainConfig
    from kaogen.l2p.train import Trainer, find_run
    from kaogen.runs import next_run_dir, record_run

    if resume:
        run = find_run(resume)
        saved = json.loads((run / "config.json").read_text())
        cfg = from_dict(TrainConfig, {**saved["config"], **({"episodes": episodes} if episodes else {})})
        if config_path:
            new = load_config(TrainConfig, config_path, episodes=episodes)
            if new.agent != cfg.agent:
                raise KaogenError(f"{config_path} describes a different agent from the one {run} trains; "
                                  "only training settings can change on --resume")
            cfg = new
        data = data or saved["data"]        # --data on resume: the data moved
        split, holdout_every, seed = saved["split"], saved["holdout_every"], saved["seed"]
    else:
        if not data:
            raise KaogenError("give --data ROOT_OR_FOLDER (or --resume RUN)")
        cfg = load_config(TrainConfig, config_path, episodes=episodes) if config_path else from_dict(
            TrainConfig, {"agent": {}, **({"episodes": episodes} if episodes else {})})
        run = next_run_dir(outdir, "l2p")
    if amp is not None:                 # recorded in config.json: a resumed run keeps it
        cfg = replace(cfg, amp=amp)
    trainer = Trainer(cfg, list(data), run, resolve_device(device), seed, split, holdout_every)
    if resume:
        trainer.resume()
        click.echo(f"resuming {run} at episode {trainer.episode}")
    record_run(run, {"config": asdict(cfg), "data": [str(Path(d).resolve()) for d in data], "split": split,
                     "holdout_every": holdout_every, "seed": seed})
    trainer.train(progress=progress)
    click.echo(f"done: {run}/agent.pt (episode {trainer.episode})")


@click.command("train-renderer")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder (created; an existing one with state.pt is resumed).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML RendererTrainConfig.")
@click.option("--steps", type=int, default=None, help="Total training steps.")
@click.option("--canvas", type=int, default=None, help="Output size in px (16 x a power of 2).")
@click.option("--progress/--no-progress", default=True)
@click.option("--amp/--no-amp", default=None,
              help="bfloat16 autocast of the network, on any device (CPU too) [default: the config's `amp`].")
@device_option
@seed_option
def train_renderer_cmd(out, config_path, steps, canvas, progress, amp, device, seed):
    """Train the neural renderer of Learning to Paint on strokes drawn by the exact rasteriser."""
    from kaogen.config import load_config
    from kaogen.device import resolve_device
    from kaogen.l2p.config import RendererTrainConfig
    from kaogen.l2p.train_renderer import train_renderer

    cfg = load_config(RendererTrainConfig, config_path, steps=steps, canvas=canvas, amp=amp)
    err = train_renderer(cfg, out, resolve_device(device), seed, progress)
    click.echo(f"held-out strokes vs the exact rasteriser: mse {err['mse']:.3e}, mae {err['mae']:.3e} -> {out}/renderer.pt")
