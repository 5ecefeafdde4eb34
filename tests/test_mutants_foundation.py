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
