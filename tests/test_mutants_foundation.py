"""kaogen/config.py and kaogen/checkpoint.py at their boundaries, found by mutation testing
(benchmarks/mutation.sh): optional and tuple-typed keys, a saved config that resumes to the same
config, the key an error names, config files read as UTF-8 whatever the locale; checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from kaogen.config import from_dict, load_config, read_toml, to_dict
from kaogen.errors import KaogenError


@dataclass
class Opt:
    size: tuple[int, int] = (4, 4)
    scales: list[float] = field(default_factory=lambda: [1.0])
    seed: int | None = None
    tag: None | str = None          # None first: the union's members in the other order
    resume: str | int | None = None


@dataclass
class Outer:
    steps: int = 10
    opt: Opt = field(default_factory=Opt)


def test_optional_keys_keep_their_value_or_none():
    """An optional key (`int | None`) keeps a given value and accepts None (as a saved config holds
    it); a value of neither type is refused. Guards the union branch: a value turned into None, None
    refused, or the member types skipped so that anything passes."""
    o = from_dict(Opt, {"seed": 3, "tag": "a", "resume": 7})
    assert (o.seed, o.tag, o.resume) == (3, "a", 7)
    assert from_dict(Opt, {"resume": "run-1"}).resume == "run-1"
    n = from_dict(Opt, {"seed": None, "tag": None, "resume": None})
    assert (n.seed, n.tag, n.resume) == (None, None, None)
    for key, bad in (("seed", "3"), ("seed", 2.5), ("tag", 1), ("resume", 1.5)):
        with pytest.raises(KaogenError, match=f"'{key}'"):
            from_dict(Opt, {key: bad})


def test_a_saved_config_resumes_to_the_same_config():
    """`to_dict` -> JSON (run folder, checkpoint) -> `from_dict` gives back an equal config: tuple
    keys come back as tuples, lists as lists, optional values and None as they were (resume reads
    configs this way). Guards tuple/list confusion and the optional branch."""
    from kaogen.gan.config import GANConfig

    for cfg in (Outer(), Outer(steps=3, opt=Opt(size=(2, 5), scales=[0.5, 2.0], seed=9, tag="t", resume=None))):
        back = from_dict(Outer, json.loads(json.dumps(to_dict(cfg))))
        assert back == cfg
        assert isinstance(back.opt.size, tuple) and isinstance(back.opt.scales, list)
    gan = GANConfig()
    assert from_dict(GANConfig, json.loads(json.dumps(to_dict(gan)))) == gan


def test_errors_name_exactly_the_key():
    """The key an error names is the key as written in the file: 'stepz', 'opt.sise' (no prefix
    of any kind before a top-level key)."""
    for data, key in (({"stepz": 1}, "stepz"), ({"steps": "x"}, "steps"), ({"opt": {"sise": 1}}, "opt.sise"),
                      ({"opt": {"size": [1, "a"]}}, r"opt.size\[1\]")):
        with pytest.raises(KaogenError, match=f"key '{key}'"):
            from_dict(Outer, data)


def test_load_config_without_a_file_takes_defaults_and_flags():
    """No config file: the defaults, with the flags that were given (None means not given)."""
    cfg = load_config(Outer, None, steps=4)
    assert cfg == Outer(steps=4)
    assert load_config(Outer, steps=None) == Outer()


def test_config_files_are_utf8_whatever_the_locale(tmp_path):
    """A config with Japanese text loads the same under an ASCII locale (LC_ALL=C without UTF-8
    mode, as on many servers; cp1252 on Windows): TOML files are UTF-8. Guards reading them in the
    locale's encoding."""
    f = tmp_path / "c.toml"
    f.write_text('name = "源氏物語 — 顔"\n', encoding="utf-8")
    assert read_toml(f) == {"name": "源氏物語 — 顔"}
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    code = "import sys; from kaogen.config import read_toml; print(ascii(read_toml(sys.argv[1])['name']))"
    r = subprocess.run([sys.executable, "-c", code, str(f)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ascii("源氏物語 — 顔")


# ---- kaogen/checkpoint.py --------------------------------------------------------------------

import io  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from kaogen.checkpoint import (Checkpoint, checkpoints_dir, load_checkpoint, read_state_dict,  # noqa: E402
                               save_checkpoint)


class _Code:
    """A class: pickled, it is code that torch.load(weights_only=False) would import and run."""


def _raw(path: Path, obj) -> Path:
    buf = io.BytesIO()
    torch.save(obj, buf)
    path.write_bytes(buf.getvalue())
    return path


def _as_if_saved_on_a_gpu(monkeypatch, path: Path, obj) -> Path:
    """torch.save `obj` with every storage tagged 'cuda:0', as a file written on a GPU machine is."""
    import torch.serialization as ser

    with monkeypatch.context() as m:
        m.setattr(ser, "location_tag", lambda storage: "cuda:0")
        return _raw(path, obj)


def _header(state, config="{}", kind="test"):
    return {"format": "kaogen-checkpoint", "format_version": 1, "kind": kind, "config": config,
            "meta": "{}", "state": state}


def _one_line_naming(e: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_checkpoint_keeps_its_kind_meta_and_lists(tmp_path):
    """What was saved comes back: the kind, the meta with the half flag recorded, and lists inside
    the state (an optimiser state dict's param_groups, here written out by hand: building a torch
    optimiser costs seconds), so that an optimiser resumes from it."""
    opt = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.full((2, 3), 0.5)}},
           "param_groups": [{"lr": 0.01, "betas": (0.9, 0.99), "params": [0, 1]}]}
    ck = Checkpoint("test", {"w": 1}, {"opt": opt, "hist": [torch.ones(2), 3]}, {"cmd": "x"})
    for half in (False, True):
        back = load_checkpoint(save_checkpoint(tmp_path / f"{half}.pt", ck, half=half))
        assert back.kind == "test" and back.meta == {"cmd": "x", "half": half}
        assert back.state["hist"][1] == 3 and torch.equal(back.state["hist"][0], torch.ones(2))
        assert back.state["opt"]["param_groups"] == opt["param_groups"]
        assert torch.equal(back.state["opt"]["state"][0]["exp_avg"], opt["state"][0]["exp_avg"])


def test_the_same_checkpoint_gives_the_same_file(tmp_path):
    """A checkpoint's bytes do not depend on the order in which the config or meta keys were
    inserted (reproducible files, comparable by hash)."""
    state = {"w": torch.arange(4.0)}
    a = save_checkpoint(tmp_path / "a.pt", Checkpoint("t", {"a": 1, "b": {"y": 2, "x": 3}}, state, {"m": 1, "n": 2}))
    b = save_checkpoint(tmp_path / "b.pt", Checkpoint("t", {"b": {"x": 3, "y": 2}, "a": 1}, state, {"n": 2, "m": 1}))
    assert a.read_bytes() == b.read_bytes()
    c = save_checkpoint(tmp_path / "c.pt", Checkpoint("t", {"b": {"x": 3, "y": 2}, "a": 1}, state, {"zz": 2, "m": 1}))
    assert c.read_bytes() != a.read_bytes()
    assert load_checkpoint(c).meta == {"zz": 2, "m": 1, "half": False}


def test_a_checkpoint_written_on_a_gpu_loads_on_the_cpu(tmp_path, monkeypatch):
    """Tensors saved from a GPU are loaded to the CPU (a CPU-only machine can read them; RNG states
    and step counters stay on the CPU): load_checkpoint and read_state_dict."""
    w = torch.arange(6.0).view(2, 3)
    p = _as_if_saved_on_a_gpu(monkeypatch, tmp_path / "g.pt", _header({"net": {"w": w}}))
    back = load_checkpoint(p, kind="test")
    assert back.state["net"]["w"].device.type == "cpu" and torch.equal(back.state["net"]["w"], w)
    q = _as_if_saved_on_a_gpu(monkeypatch, tmp_path / "sd.pt", {"w": w})
    sd = read_state_dict(q)
    assert sd["w"].device.type == "cpu" and torch.equal(sd["w"], w)


def test_pickled_code_is_refused_even_when_torch_is_told_to_allow_it(tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns torch.load's safe default off for callers that do
    not ask for weights_only explicitly; kaogen always asks, so a file with a pickled class is still
    refused (it would run code)."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    evil = _raw(tmp_path / "e.pt", {**_header({}), "obj": _Code()})
    with pytest.raises(KaogenError, match="pickled code") as e:
        load_checkpoint(evil)
    _one_line_naming(e, evil)
    with pytest.raises(KaogenError, match="pickled code") as e:
        read_state_dict(_raw(tmp_path / "e2.pt", {"w": torch.ones(1), "obj": _Code()}))


def test_unreadable_checkpoints_say_why_in_one_line(tmp_path):
    """A truncated file passes on torch's reason (not a claim of pickled code); an empty file says
    EOFError; random bytes are refused without torch's advice to retry with weights_only=False
    (kaogen never does that). Every refusal is one line naming the file."""
    good = save_checkpoint(tmp_path / "a.pt", Checkpoint("t", {}, {"w": torch.ones(50)}))
    trunc = tmp_path / "t.pt"
    trunc.write_bytes(good.read_bytes()[:300])
    try:
        torch.load(trunc, map_location="cpu", weights_only=True)
    except Exception as e:  # what torch says about it
        first = str(e).strip().splitlines()[0][:100]
    with pytest.raises(KaogenError) as e:
        load_checkpoint(trunc)
    msg = _one_line_naming(e, trunc)
    assert first in msg and "pickled code" not in msg and "weights_only" not in msg
    with pytest.raises(KaogenError) as e:
        read_state_dict(trunc)
    msg = _one_line_naming(e, trunc)
    assert first[:80] in msg and "pickled code" not in msg
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(KaogenError, match="EOFError") as e:
        load_checkpoint(empty)
    _one_line_naming(e, empty)
    with pytest.raises(KaogenError, match="EOFError") as e:
        read_state_dict(empty)
    _one_line_naming(e, empty)
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(torch.randint(0, 256, (200,), generator=torch.Generator().manual_seed(0)).tolist()))
    for load in (load_checkpoint, read_state_dict):
        with pytest.raises(KaogenError) as e:
            load(noise)
        msg = _one_line_naming(e, noise)
        assert "weights_only" not in msg and "trusted source" not in msg, msg


def test_read_state_dict_finds_the_tensors_in_each_layout(tmp_path):
    """--pretrained FILE: a plain {name: tensor} dict, a {"state_dict": ...} wrapper, or a kaogen
    checkpoint's state[model_key] gives that dict of tensors."""
    sd = {"a.weight": torch.ones(2, 2), "a.bias": torch.zeros(2)}
    plain = read_state_dict(_raw(tmp_path / "p.pt", sd))
    assert plain.keys() == sd.keys() and all(torch.equal(plain[k], sd[k]) for k in sd)
    wrapped = read_state_dict(_raw(tmp_path / "w.pt", {"state_dict": sd, "epoch": 3}))
    assert wrapped.keys() == sd.keys()
    other = {"b": torch.full((1,), 2.0)}
    ck = save_checkpoint(tmp_path / "k.pt", Checkpoint("classifier", {}, {"net": sd, "model": other}))
    assert read_state_dict(ck, model_key="net").keys() == sd.keys()
    assert read_state_dict(ck).keys() == other.keys()
    assert read_state_dict(ck, model_key="model")["b"].item() == 2.0


@pytest.mark.parametrize("obj", [
    {}, {"state_dict": {}}, [torch.ones(1)], torch.ones(2), {"w": torch.ones(1), "step": 3}, {"state_dict": 5},
    {"state_dict": {"w": 1}}, {"format": "kaogen-checkpoint", "state": {"other": {"w": torch.ones(1)}}},
    {"format": "kaogen-checkpoint", "state": {}}, {"format": "kaogen-checkpoint", "kind": "gan"},
], ids=["empty", "empty-wrapper", "list", "tensor", "mixed", "wrapper-not-dict", "wrapper-not-tensors",
        "checkpoint-without-key", "checkpoint-empty", "checkpoint-without-state"])
def test_read_state_dict_refuses_what_holds_no_tensors(tmp_path, obj):
    """A file without a non-empty dict of tensors (under the key asked for) is refused in one line."""
    p = _raw(tmp_path / "x.pt", obj)
    with pytest.raises(KaogenError, match="holds no state dict of tensors") as e:
        read_state_dict(p, model_key="model")
    _one_line_naming(e, p)


def test_read_state_dict_of_a_missing_file(tmp_path):
    with pytest.raises(KaogenError, match="no such file") as e:
        read_state_dict(tmp_path / "nope.pt")
    _one_line_naming(e, tmp_path / "nope.pt")
    with pytest.raises(KaogenError, match="no such file"):
        read_state_dict(tmp_path)          # a folder is not a weights file


def test_where_shipped_checkpoints_live(tmp_path, monkeypatch):
    """$KAOGEN_CHECKPOINTS when set (and not empty), else the checkpoints/ folder of the repository
    that holds the kaogen package in use."""
    import kaogen

    monkeypatch.setenv("KAOGEN_CHECKPOINTS", str(tmp_path))
    assert checkpoints_dir() == tmp_path
    for unset in (None, ""):
        if unset is None:
            monkeypatch.delenv("KAOGEN_CHECKPOINTS")
        else:
            monkeypatch.setenv("KAOGEN_CHECKPOINTS", unset)
        d = checkpoints_dir()
        assert d == Path(kaogen.__file__).resolve().parents[1] / "checkpoints", d   # beside the package
