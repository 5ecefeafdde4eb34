"""`kaogen make-strokes`: (action, stroke) pairs drawn by libmypaint, in parallel, resumable.

Output folder:
    strokes.json              brush, canvas, count, shard size, seed (a re-run must match them)
    shard-00000.npz ...       actions float32 (n, 12) and alpha uint8 (n, 64, 64), written atomically

Shard i is drawn from seed (seed, i), so a killed run re-draws exactly its missing shards and the
data set does not depend on the number of workers.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from kaogen.atomic import atomic_write_bytes, atomic_write_text, clean_stale_temporaries
from kaogen.errors import KaogenError
from kaogen.ist import actions as A

SHARD = 1000


def draw_alpha(brush, action: np.ndarray, size: int = A.CANVAS) -> np.ndarray:
    """Alpha (size, size) float32 in [0, 1] of one action drawn by libmypaint."""
    rgba = brush.lib.draw(brush, A.events(action, size), size, radius_log=A.radius_log(action, size))
    return rgba[..., 3]


def _shard(args) -> str:
    out, brush_name, i, n, seed = args
    from kaogen.ist.mypaint import MyPaint

    lib = MyPaint.load()
    brush = lib.brush(brush_name)
    rng = np.random.default_rng([seed, i])
    acts = A.random_actions(n, rng)
    alpha = np.stack([draw_alpha(brush, a) for a in acts])
    buf = io.BytesIO()
    np.savez_compressed(buf, actions=acts, alpha=np.round(alpha * 255).astype(np.uint8))
    path = Path(out) / f"shard-{i:05d}.npz"
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def make_strokes(brush: str, count: int, out: str | Path, workers: int = 2, seed: int = 0, progress: bool = True) -> Path:
    from tqdm import tqdm

    from kaogen.ist.mypaint import MyPaint

    MyPaint.load().brush(brush)                     # fail early: no library or no such brush
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out)
    info = {"brush": brush, "canvas": A.CANVAS, "count": count, "shard": SHARD, "seed": seed,
            "fields": list(A.FIELDS)}
    meta = out / "strokes.json"
    if meta.is_file():
        old = json.loads(meta.read_text())
        if {k: old.get(k) for k in ("brush", "canvas", "shard", "seed")} != {k: info[k] for k in ("brush", "canvas", "shard", "seed")}:
            raise KaogenError(f"{out} holds strokes made with other settings ({old.get('brush')}, seed {old.get('seed')}): "
                              "use another folder")
    atomic_write_text(meta, json.dumps(info, indent=2) + "\n")
    jobs = [(str(out), brush, i, min(SHARD, count - i * SHARD), seed) for i in range(-(-count // SHARD))]
    todo = [j for j in jobs if not (out / f"shard-{j[2]:05d}.npz").is_file()]
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="strokes", unit="shard", disable=not progress) as bar:
        if workers <= 1:
            for j in todo:
                _shard(j)
                bar.update(1)
        else:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_shard, todo):
                    bar.update(1)
    return out


def load_strokes(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All shards of a make-strokes folder: actions (n, 12) float32, alpha (n, 64, 64) uint8."""
    folder = Path(folder)
    shards = sorted(folder.glob("shard-*.npz"))
    if not shards:
        raise KaogenError(f"{folder} holds no stroke shards (make them with `kaogen make-strokes`)")
    acts, alphas = [], []
    for s in shards:
        try:
            with np.load(s) as z:
                acts.append(z["actions"])
                alphas.append(z["alpha"])
        except Exception as e:
            raise KaogenError(f"{s} is not a readable stroke shard ({type(e).__name__})") from None
    return np.concatenate(acts), np.concatenate(alphas)
