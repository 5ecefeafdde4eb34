"""Checkpoints as data: state dicts + a JSON config + a format version, never pickled code.

File layout (a `torch.save`d dict, loadable with `weights_only=True`):

    {"format": "kaogen-checkpoint", "format_version": 1, "kind": "<what it holds>",
     "config": "<JSON text>", "meta": "<JSON text>", "state": {name: state_dict or tensor}}

`kind` names the part that wrote it (e.g. "renderer-test", "gan"), so that a generator checkpoint
handed to the painting agent is refused with a clear message instead of a shape error.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaogen.atomic import atomic_path
from kaogen.errors import KaogenError

FORMAT = "kaogen-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    kind: str                                       # which part wrote it
    config: dict[str, Any]                          # JSON-able config needed to rebuild the model
    state: dict[str, Any]                           # name -> state_dict (or tensor / plain value)
    meta: dict[str, Any] = field(default_factory=dict)  # provenance: command, steps, data, ...


def checkpoints_dir() -> Path:
    """Where shipped checkpoints live: $KAOGEN_CHECKPOINTS, else the repository's checkpoints/ folder."""
    env = os.environ.get("KAOGEN_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "checkpoints"


def _to_half(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.half() if obj.is_floating_point() else obj
    if isinstance(obj, dict):
        return {k: _to_half(v) for k, v in obj.items()}
    return obj


def _to_cpu(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint, half: bool = False) -> Path:
    """Write `ckpt` atomically to `path`. `half=True` stores floating tensors as fp16 (shipping)."""
    import torch

    state = _to_cpu(ckpt.state)
    if half:
        state = _to_half(state)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": ckpt.kind,
        "config": json.dumps(ckpt.config, sort_keys=True),
        "meta": json.dumps({**ckpt.meta, "half": half}, sort_keys=True),
        "state": state,
    }
    path = Path(path)
    buf = io.BytesIO()
    torch.save(payload, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def load_checkpoint(path: str | os.PathLike, kind: str | None = None) -> Checkpoint:
    """Load a checkpoint written by `save_checkpoint`, as data only (`weights_only=True`), to the CPU.

    Always to the CPU: RNG states must stay CPU byte tensors and optimiser step counters CPU
    scalars (a `step` on the GPU makes the foreach Adam synchronise once per parameter); callers
    move what belongs on the device (`module.load_state_dict` and `optimizer.load_state_dict` do).

    Raises KaogenError (one line, naming the file) for a missing, truncated, foreign or
    wrong-kind file. fp16-stored tensors are returned as float32.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise KaogenError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with code in it, random bytes...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            reason = "not a torch file, or it contains pickled code, which kaogen never loads"  # pragma: no mutate (message wording)
        raise KaogenError(f"{path} is not a readable kaogen checkpoint: {reason[:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise KaogenError(f"{path} is not a kaogen checkpoint (no '{FORMAT}' header)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise KaogenError(
            f"{path} has checkpoint format version {version}; this kaogen reads version {FORMAT_VERSION}"
        )
    if kind is not None and payload.get("kind") != kind:
        raise KaogenError(f"{path} holds a '{payload.get('kind')}' checkpoint, but a '{kind}' one is needed")
    try:
        config = json.loads(payload["config"])
        meta = json.loads(payload["meta"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise KaogenError(f"{path} has a damaged config or meta section") from None

    def to_float(obj):
        if isinstance(obj, torch.Tensor):
            return obj.float() if obj.dtype == torch.float16 else obj
        if isinstance(obj, dict):
            return {k: to_float(v) for k, v in obj.items()}
        return obj

    return Checkpoint(kind=payload["kind"], config=config, state=to_float(payload["state"]), meta=meta)


def read_state_dict(path: str | os.PathLike, model_key: str = "model") -> dict[str, Any]:
    """A state dict from a weights file given by `--pretrained FILE` (weights_only, to the CPU):
    a plain {name: tensor} dict, a {"state_dict": ...} wrapper, or a kaogen checkpoint (its
    state[model_key]). One-line KaogenError for a missing, unreadable or foreign file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise KaogenError(f"--pretrained {path}: no such file (use none, imagenet or a state dict file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            reason = "not a torch weights file, or it holds pickled code, which kaogen never loads"  # pragma: no mutate (message wording)
        raise KaogenError(f"--pretrained {path} is not a readable state dict: {reason}") from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        state = state.get("state", {}).get(model_key, {})
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise KaogenError(f"--pretrained {path} holds no state dict of tensors")
    return state
