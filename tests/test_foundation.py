"""Config, checkpoints, atomic writes, devices, run folders."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from kaogen.atomic import atomic_path, clean_stale_temporaries
from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.config import from_dict, load_config
from kaogen.device import resolve_device
from kaogen.errors import KaogenError
from kaogen.runs import next_run_dir, record_run

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])


@dataclass
class Cfg:
    steps: int = 10
    name: str = "x"
    opt: Inner = field(default_factory=Inner)


def test_config_file_then_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('steps = 5\nname = "file"\n[opt]\nlr = 2\n')
    cfg = load_config(Cfg, f, name="flag", steps=None)
    assert cfg.steps == 5 and cfg.name == "flag" and cfg.opt.lr == 2.0 and isinstance(cfg.opt.lr, float)


@pytest.mark.parametrize("data, word", [
    ({"stepz": 1}, "stepz"), ({"steps": "ten"}, "steps"), ({"opt": {"lrr": 1}}, "opt.lrr"),
    ({"opt": {"betas": [1, "a"]}}, "opt.betas"), ({"steps": True}, "steps"),
])
def test_config_errors_name_the_key(data, word):
    with pytest.raises(KaogenError, match=word.replace(".", r"\.")):
        from_dict(Cfg, data)


def test_config_bad_toml(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("steps = = 1")
    with pytest.raises(KaogenError, match="not valid TOML"):
        load_config(Cfg, f)


def test_checkpoint_round_trip_and_half(tmp_path):
    net = torch.nn.Linear(64, 64)
    ck = Checkpoint("test", {"width": 3}, {"net": net.state_dict(), "step": torch.tensor(7)}, {"cmd": "x"})
    p = save_checkpoint(tmp_path / "a.pt", ck)
    back = load_checkpoint(p, kind="test")
    assert back.config == {"width": 3} and back.meta["cmd"] == "x"
    assert torch.equal(back.state["net"]["weight"], net.weight.detach())
    save_checkpoint(tmp_path / "h.pt", ck, half=True)
    h = load_checkpoint(tmp_path / "h.pt")
    assert h.state["net"]["weight"].dtype == torch.float32
    assert torch.allclose(h.state["net"]["weight"], net.weight.detach(), atol=1e-3)
    assert h.state["step"].dtype == torch.int64
    assert (tmp_path / "h.pt").stat().st_size < (tmp_path / "a.pt").stat().st_size


def test_checkpoint_errors(tmp_path):
    ck = Checkpoint("gan", {}, {"w": torch.ones(100)})
    p = save_checkpoint(tmp_path / "a.pt", ck)
    with pytest.raises(KaogenError, match="'gan' checkpoint, but a 'painter'"):
        load_checkpoint(p, kind="painter")
    trunc = tmp_path / "t.pt"
    trunc.write_bytes(p.read_bytes()[:200])
    with pytest.raises(KaogenError, match="t.pt is not a readable"):
        load_checkpoint(trunc)
    foreign = tmp_path / "f.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(KaogenError, match="not a kaogen checkpoint"):
        load_checkpoint(foreign)
    evil = tmp_path / "e.pt"
    buf = io.BytesIO()
    torch.save({"format": "kaogen-checkpoint", "obj": Inner()}, buf)  # a pickled class: code, refused
    evil.write_bytes(buf.getvalue())
    with pytest.raises(KaogenError, match="pickled code"):
        load_checkpoint(evil)
    with pytest.raises(KaogenError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    (tmp_path / ".x.tmp-abc.jpg").write_text("stale")
    assert clean_stale_temporaries(tmp_path) == 1


def test_device_and_runs(tmp_path):
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(KaogenError, match="no CUDA"):
            resolve_device("cuda")
    a = next_run_dir(tmp_path, "kaokore 256")
    b = next_run_dir(tmp_path, "kaokore 256")
    assert a.name == "00000-kaokore-256" and b.name == "00001-kaokore-256"
    record_run(a, {"x": 1}, ["kaogen", "train", "--x", "1"])
    assert json.loads((a / "config.json").read_text()) == {"x": 1}
    assert (a / "command.txt").read_text().strip() == "kaogen train --x 1"


def test_cuda_index_is_checked_against_the_device_count(monkeypatch):
    """`--device cuda:7` on a one-GPU machine is refused in one line (it was accepted, then failed
    at the first tensor); cuda:0 and cuda are that GPU. A one-GPU machine is emulated."""
    from click.testing import CliRunner

    from kaogen.cli.main import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0) == resolve_device("cuda")
    with pytest.raises(KaogenError, match=r"has 1 CUDA GPU\(s\) \(cuda:0 .. cuda:0\)"):
        resolve_device("cuda:7")
    for bad in ("cuda:x", "cpu:1", "tpu", "auto:0"):
        with pytest.raises(KaogenError, match="unknown device"):
            resolve_device(bad)
    r = CliRunner().invoke(cli, ["sample", "--device", "cuda:7", "-o", "x.png"])
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0 and "has 1 CUDA GPU" in r.output, r.output


def test_rng_states_round_trip_as_cpu_bytes():
    """rng_state / restore_rng: CPU byte tensors, the global and named generators restored exactly."""
    from kaogen.device import restore_rng, rng_state

    g = torch.Generator().manual_seed(5)
    torch.manual_seed(1)
    st = rng_state({"data": g}, "cpu")
    assert all(t.dtype == torch.uint8 and t.device.type == "cpu" for t in st.values())
    want = (torch.rand(3), torch.rand(3, generator=g))
    torch.manual_seed(99)
    g.manual_seed(99)
    restore_rng({k: v.long() for k, v in st.items()}, {"data": g}, "cpu")   # any integer dtype comes back as bytes
    assert torch.equal(torch.rand(3), want[0]) and torch.equal(torch.rand(3, generator=g), want[1])
    with pytest.raises(KaogenError, match="no random state for 'other'"):
        restore_rng(st, {"other": g}, "cpu")


def test_allocator_tuning_applies_on_glibc_and_can_be_turned_off():
    """The CLI's malloc tuning (kaogen/runtime.py): applied on glibc, skipped when turned off."""
    import platform
    import subprocess
    import sys

    code = "from kaogen.runtime import tune_allocator as t; print(t(), t())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    env = {**__import__("os").environ, "KAOGEN_NO_MALLOPT": "1"}
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.split()
    assert off == ["False", "False"]
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert on == ["True", "True"]


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("*/*.toml")))
def test_every_shipped_config_loads_into_its_typed_config(path):
    """A key misspelt or of the wrong type in configs/ would only show up when someone runs it."""
    from kaogen.classify.config import ClassifierConfig
    from kaogen.detect.config import DetectConfig
    from kaogen.gan.config import GANConfig
    from kaogen.ist.train_painter import PainterTrainConfig
    from kaogen.l2p.config import TrainConfig

    cls = {"gan": GANConfig, "ist": PainterTrainConfig, "l2p": TrainConfig, "classify": ClassifierConfig,
           "detect": DetectConfig}[Path(path).parent.name]
    assert load_config(cls, ROOT / path) is not None


def test_torchrun_backend_follows_the_device(monkeypatch):
    """On a machine with GPUs, `--device cpu` under torchrun joins with gloo (NCCL refuses CPU
    tensors); auto and cuda join with NCCL and take GPU LOCAL_RANK. GPUs emulated."""
    from kaogen import distributed

    seen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend: seen.append(backend))
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: seen.append(i))
    for device in ("cpu", "auto", "cuda:1"):
        distributed.setup_distributed(device)
    assert seen == ["gloo", "nccl", 1, "nccl", 1]


_LEAVE_THEN_RUN = """
import sys, tempfile, torch
from kaogen.distributed import left_process_group, teardown_distributed
store = torch.distributed.FileStore(tempfile.mktemp(), 1)
torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
teardown_distributed()
assert left_process_group()
sys.argv = ["kaogen", *sys.argv[1:]]
from kaogen.cli.main import main
try:
    main()
except SystemExit:
    pass
print("not reached: the process ends in main")
"""


@pytest.mark.parametrize("args,code,stream,text", [(["--version"], 0, "stdout", "kaogen, version"),
                                                   (["no-such-command"], 2, "stderr", "No such command")])
def test_a_process_that_left_its_group_exits_with_the_commands_code_and_output(args, code, stream, text):
    """A torchrun worker that has left its process group ends in main() with os._exit (skipping the
    C++ teardown that aborted 2 of 40 finished two-process runs at exit): with the command's exit
    code, its output flushed, and nothing after main() run."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _LEAVE_THEN_RUN, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == code, r.stderr[-2000:]
    assert text in getattr(r, stream) and "not reached" not in r.stdout
