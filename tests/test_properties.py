"""Properties that must hold for every input, checked with hypothesis on a small fixed budget.

Every test draws a fixed, derandomised set of examples (`derandomize=True`, no example database),
so a run is deterministic and the whole file takes a few seconds: the exact rasteriser against a
dense float64 search of the curve, splits as partitions (by-work keeps works whole), label parsing
refusing every out-of-range value, images of any mode and EXIF orientation loading to the pixels of
their plain RGB twin, and "never worse" for refine and plan on random targets.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kaogen.data.metadata import Record, read_labels
from kaogen.data.splits import assign_splits
from kaogen.errors import KaogenError
from kaogen.images import load_rgb
from kaogen.render import strokes as S
from kaogen.render.rasterize import rasterize


def budget(n: int):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


unit = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False, width=32)


# ------------------------------------------------------------------------------------- rasteriser

@st.composite
def strokes(draw, max_n: int = 3) -> torch.Tensor:
    """1..max_n strokes (N, 13) in [0, 1]: free, straight (P1 midway), dots and doubled-back ones."""
    n = draw(st.integers(1, max_n))
    rows = []
    for _ in range(n):
        v = [draw(unit) for _ in range(S.NUM_FIELDS)]
        kind = draw(st.sampled_from(["free", "free", "straight", "dot", "back"]))
        if kind == "straight":
            v[2], v[3] = (v[0] + v[4]) / 2, (v[1] + v[5]) / 2
        elif kind == "dot":
            v[2:6] = v[0:2] * 2
        elif kind == "back":
            v[4:6] = v[0:2]
        rows.append(v)
    return torch.tensor(rows, dtype=torch.float32)


def dense_bounds(s: torch.Tensor, H: int, W: int, samples: int = 2001, tie_px: float = 0.02):
    """The coverage model of coverage.py by dense float64 sampling of each curve: per pixel the
    (lowest, highest) alpha over the curve points within `tie_px` of the closest one. Where two arms
    of a tapered stroke are equally close, alpha may take either value: the bounds hold both."""
    s = s.double()
    t = torch.linspace(0, 1, samples, dtype=torch.float64)
    scale = torch.tensor([W, H], dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5,
                            torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
    pix = torch.stack([xs, ys], -1).reshape(-1, 2)
    lo, hi = [], []
    for m in range(len(s)):
        p0, p1, p2 = (p * scale for p in S.points(s[m]))
        curve = (1 - t)[:, None] ** 2 * p0 + (2 * (1 - t) * t)[:, None] * p1 + (t ** 2)[:, None] * p2
        d = torch.cdist(pix, curve)                                                  # (P, T) px
        r0, r1 = (S.radius(s[m]) * min(H, W)).tolist()
        w0, w1 = S.opacity(s[m]).tolist()
        a = ((r0 + (r1 - r0) * t) - d + 0.5).clamp(0, 1) * (w0 + (w1 - w0) * t)      # (P, T)
        near = d <= d.min(1, keepdim=True).values + tie_px
        lo.append(torch.where(near, a, torch.inf).min(1).values.reshape(H, W))
        hi.append(torch.where(near, a, -torch.inf).max(1).values.reshape(H, W))
    return torch.stack(lo), torch.stack(hi)


@budget(20)
@given(s=strokes(), size=st.sampled_from([(16, 16), (12, 20), (21, 9), (8, 8)]))
def test_exact_rasteriser_equals_a_dense_search_for_random_strokes(s, size):
    H, W = size
    lo, hi = dense_bounds(s, H, W)
    tol = 0.02          # the dense search's own sampling error, as in test_render.py
    for tiled in (True, False):
        a = rasterize(s, H, W, tiled=tiled).double()
        assert a.shape == (len(s), H, W)
        assert bool((a >= lo - tol).all()) and bool((a <= hi + tol).all()), \
            f"tiled={tiled}: off by {float(torch.maximum(lo - a, a - hi).max()):.3f}"


@budget(10)
@given(s=strokes(max_n=4), size=st.sampled_from([(16, 16), (13, 27)]))
def test_exact_rasteriser_dense_tiled_and_windowed_paths_agree(s, size):
    H, W = size
    tiled = rasterize(s, H, W, tiled=True)
    torch.testing.assert_close(rasterize(s, H, W, tiled=False), tiled, atol=1e-6, rtol=0)
    torch.testing.assert_close(rasterize(s, H, W, dense=True), tiled, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ splits

@st.composite
def records(draw):
    sizes = draw(st.lists(st.integers(1, 25), min_size=1, max_size=14))
    out, k = [], 0
    for w, n in enumerate(sizes):
        for _ in range(n):
            tags = {"work": f"work{w}"} if w or draw(st.booleans()) else {}   # work0 may be untagged
            out.append(Record(f"{k:08d}.jpg", 0, 0, draw(st.sampled_from(["train", "dev", "test", None])), tags))
            k += 1
    return out


@st.composite
def fractions(draw):
    test = draw(st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3]) | st.floats(0.0, 0.5))
    dev = draw(st.sampled_from([0.0, 0.1, 0.25]) | st.floats(0.0, 0.5))
    return (1.0 - test - dev, dev, test)


def _work(r: Record) -> str:
    return r.tags.get("work") or "(unknown)"


@budget(60)
@given(recs=records(), fr=fractions(), seed=st.integers(0, 2 ** 31))
def test_by_work_split_is_a_partition_that_keeps_works_whole(recs, fr, seed):
    out = assign_splits(recs, "by-work", seed=seed, fractions=fr)
    assert sorted(out) == sorted(r.image for r in recs)                # every face, once
    assert set(out.values()) <= {"train", "dev", "test"}
    side_of_work: dict[str, set] = {}
    for r in recs:
        side_of_work.setdefault(_work(r), set()).add(out[r.image])
    assert all(len(v) == 1 for v in side_of_work.values())             # no work on two sides
    assert out == assign_splits(recs, "by-work", seed=seed, fractions=fr)   # deterministic
    total, biggest = len(recs), max(sum(1 for r in recs if _work(r) == w) for w in side_of_work)
    for name, f in (("test", fr[2]), ("dev", fr[1])):
        n = sum(1 for v in out.values() if v == name)
        if f == 0:
            assert n == 0, f"{name} got {n} faces with fraction 0"
        # whole works: at most one work's size or half as much again as asked for
        assert n <= max(biggest, f * total * 1.5 + 1)
    if fr[2] > 0:
        assert "test" in out.values()                                  # at least one work is held out


@budget(60)
@given(recs=records(), fr=fractions(), seed=st.integers(0, 2 ** 31))
def test_within_work_split_is_a_partition_with_every_work_on_every_side(recs, fr, seed):
    out = assign_splits(recs, "within-work", seed=seed, fractions=fr)
    assert sorted(out) == sorted(r.image for r in recs)
    assert out == assign_splits(recs, "within-work", seed=seed, fractions=fr)
    works: dict[str, list[str]] = {}
    for r in recs:
        works.setdefault(_work(r), []).append(out[r.image])
    for sides in works.values():
        n = len(sides)
        for name, f in (("test", fr[2]), ("dev", fr[1])):
            want = max(1, round(f * n)) if n >= 3 and f > 0 else 0
            assert sides.count(name) == want, (name, f, n, sides)
        assert sides.count("train") == n - sides.count("test") - sides.count("dev")


@budget(30)
@given(recs=records(), seed=st.integers(0, 2 ** 31))
def test_official_split_is_the_set_column(recs, seed):
    out = assign_splits(recs, "official", seed=seed)
    assert out == {r.image: r.split for r in recs if r.split is not None}


@budget(40)
@given(fr=st.tuples(st.floats(-1, 2), st.floats(-1, 2), st.floats(-1, 2)))
def test_split_fractions_must_be_non_negative_and_sum_to_one(fr):
    recs = [Record(f"{i:08d}.jpg", 0, 0, "train", {"work": f"w{i % 3}"}) for i in range(9)]
    ok = all(f >= 0 for f in fr) and abs(sum(fr) - 1) <= 1e-6
    for strategy in ("by-work", "within-work", "official"):
        if ok:
            assign_splits(recs, strategy, fractions=fr)
        else:
            with pytest.raises(KaogenError, match="fractions"):
                assign_splits(recs, strategy, fractions=fr)


# ---------------------------------------------------------------------------------- label parsing

def _labels(rows: list[list[str]]) -> tuple[list, list[str]]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "labels.csv"
        with p.open("w", newline="") as f:
            csv.writer(f).writerows([["image", "gender", "status", "set"]] + rows)
        return read_labels(p)


label_text = (st.integers(-10 ** 6, 10 ** 6).map(str)
              | st.text(st.characters(codec="ascii", exclude_characters="\r\n\x00\"", exclude_categories=["Cc"]),
                        max_size=4)
              | st.sampled_from(["1.0", "+1", "-0", "0x1", " 1 ", "01", "١", "²", "1e0", "one"]))


@budget(80)
@given(gender=label_text, status=label_text)
def test_label_parsing_accepts_exactly_the_values_in_range(gender, status):
    rows, problems = _labels([["00000000.jpg", "0", "0", "train"], ["00000001.jpg", gender, status, "dev"]])

    def parsed(v: str, n: int):
        v = v.strip()
        if v == "":
            return None
        if v.isascii() and v.isdecimal() and int(v) < n:       # ASCII digits only (U+0661 is refused)
            return int(v)
        return "refused"

    g, s = parsed(gender, 2), parsed(status, 4)
    assert rows[0] == ("00000000.jpg", 0, 0, "train")
    if "refused" in (g, s):
        assert len(rows) == 1 and len(problems) == 1 and "00000001" not in str(rows)
        assert problems[0].startswith("labels.csv:3: skipped")
    else:
        assert rows[1] == ("00000001.jpg", g, s, "dev") and problems == []


@budget(30)
@given(value=st.integers(-10 ** 9, 10 ** 9), column=st.sampled_from(["gender", "status"]))
def test_every_out_of_range_label_is_refused(value, column):
    n = 2 if column == "gender" else 4
    row = ["00000007.jpg", "0", "0", "test"]
    row[1 if column == "gender" else 2] = str(value)
    rows, problems = _labels([row])
    if 0 <= value < n:
        assert len(rows) == 1 and rows[0][1 if column == "gender" else 2] == value and not problems
    else:
        assert rows == [] and len(problems) == 1 and column in problems[0]


# ------------------------------------------------------------------------------------------ images

def _stored(d: np.ndarray, orientation: int) -> np.ndarray:
    """The array a camera stores for the displayed picture `d` under EXIF orientation 1..8."""
    return np.ascontiguousarray({
        1: d, 2: d[:, ::-1], 3: d[::-1, ::-1], 4: d[::-1], 5: d.swapaxes(0, 1),
        6: np.rot90(d, 1), 7: np.rot90(d, 2).swapaxes(0, 1), 8: np.rot90(d, -1)}[orientation])


@st.composite
def pictures(draw):
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2 ** 31))
    mode = draw(st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "I;16", "I", "I:16bit", "I:wide", "F", "F:255",
                                 "F:nan", "1"]))
    orientation = draw(st.integers(1, 8))
    return h, w, seed, mode, orientation


def _picture(h: int, w: int, seed: int, mode: str):
    """(the image in `mode`, the RGB uint8 pixels it must load to)."""
    rng = np.random.RandomState(seed % (2 ** 32))
    rgb = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
    gray = rng.randint(0, 256, (h, w)).astype(np.uint8)
    clear = rng.rand(h, w) < 0.3                                   # fully transparent pixels: white
    if mode == "RGB":
        return rgb, rgb
    if mode == "RGBA":
        a = np.where(clear, 0, 255).astype(np.uint8)
        return np.dstack([rgb, a]), np.where(clear[..., None], 255, rgb).astype(np.uint8)
    if mode == "LA":
        a = np.where(clear, 0, 255).astype(np.uint8)
        return np.dstack([gray, a]), np.repeat(np.where(clear, 255, gray)[..., None], 3, 2).astype(np.uint8)
    twin = np.repeat(gray[..., None], 3, 2)
    if mode == "L":
        return gray, twin
    if mode == "1":
        b = gray >= 128
        return b, np.repeat(np.where(b, 255, 0)[..., None], 3, 2).astype(np.uint8)
    if mode == "I;16":
        return gray.astype(np.uint16) * 257, twin                  # 16-bit: 0..65535
    if mode == "I":
        return gray.astype(np.int32), twin                         # 32-bit integers in 0..255
    if mode == "I:16bit":                                          # 32-bit integers in 0..65535 (one at the top)
        gray.flat[0], twin.flat[:3] = 255, 255
        return gray.astype(np.int32) * 257, twin
    if mode == "I:wide":                                           # beyond 16 bits: scaled by the largest
        gray.flat[0], twin.flat[:3] = 255, 255
        return gray.astype(np.int32) * 1000, twin
    if mode == "F":
        return gray.astype(np.float32) / 255, twin                 # float in [0, 1]
    if mode == "F:255":                                            # float in [0, 255] (one above 1)
        gray.flat[0], twin.flat[:3] = 255, 255
        return gray.astype(np.float32), twin
    if mode == "F:nan":                                            # NaN and infinities are black
        f = gray.astype(np.float32) / 255
        f.flat[0] = np.nan
        f.flat[-1] = np.inf if f.size > 1 else np.nan
        twin = np.repeat(np.where(np.isfinite(f), gray, 0)[..., None], 3, 2).astype(np.uint8)
        return f, twin
    palette = rng.randint(0, 256, (5, 3)).astype(np.uint8)         # "P": five colours
    idx = rng.randint(0, 5, (h, w)).astype(np.uint8)
    return (idx, palette), palette[idx]


@budget(80)
@given(pic=pictures())
def test_any_mode_and_orientation_loads_to_the_pixels_of_its_plain_rgb_twin(pic):
    h, w, seed, mode, orientation = pic
    data, want = _picture(h, w, seed, mode)
    if mode == "P":
        idx, palette = data
        stored = _stored(idx, orientation)
        img = Image.frombytes("P", stored.shape[::-1], stored.tobytes())
        img.putpalette(palette.flatten().tolist())
    else:
        arr = _stored(data, orientation)
        img = Image.fromarray(arr)                                  # bool -> "1", uint16 -> "I;16", ...
    mode = mode.split(":")[0]
    assert img.mode == mode
    exif = Image.Exif()
    exif[0x0112] = orientation
    fmt = "TIFF" if mode in ("I", "F") else "PNG"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"picture.{fmt.lower()}"
        img.save(path, format=fmt, exif=exif)
        x = load_rgb(path)
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, h, w)
    got = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------- refine and plan

@st.composite
def targets(draw, size: int = 16, batch: int | None = None):
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31)))
    shape = (3, size, size) if batch is None else (batch, 3, size, size)
    kind = draw(st.sampled_from(["noise", "blocks", "flat", "edge"]))
    if kind == "noise":
        return torch.rand(shape, generator=g)
    if kind == "flat":
        return torch.rand(shape[:-2] + (1, 1), generator=g).expand(shape).clone()
    if kind == "edge":
        t = torch.rand(shape[:-2] + (1, 1), generator=g).expand(shape).clone()
        t[..., :, size // 2:] = torch.rand(shape[:-2] + (1, 1), generator=g)
        return t
    small = torch.rand(shape[:-2] + (4, 4), generator=g)
    return torch.nn.functional.interpolate(small.reshape(-1, 3, 4, 4), size=(size, size)).reshape(shape)


@budget(12)
@given(target=targets(), n=st.integers(1, 10), steps=st.integers(0, 14), lr=st.sampled_from([0.01, 0.1, 1.0, 5.0]),
       relocate=st.booleans(), seed=st.integers(0, 2 ** 31), background=st.sampled_from([0.0, 1.0]))
def test_refine_is_never_worse_on_random_targets(target, n, steps, lr, relocate, seed, background):
    from kaogen.l2p.refine import _mse_exact, refine_strokes

    s = S.random_strokes(n, torch.Generator().manual_seed(seed))
    out = refine_strokes(s, target, steps=steps, lr=lr, relocate=relocate, background=background, seed=seed)
    assert out.shape == s.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert float(_mse_exact(out, target, background)) <= float(_mse_exact(s, target, background))


@budget(8)
@given(target=targets(batch=3), k=st.integers(1, 4), steps=st.integers(0, 6), lr=st.sampled_from([0.02, 0.5, 5.0]),
       levels=st.integers(1, 3), seed=st.integers(0, 2 ** 31))
def test_plan_is_never_worse_on_random_targets(target, k, steps, lr, levels, seed):
    from kaogen.l2p.config import AgentConfig
    from kaogen.l2p.distance import pyramid_distance
    from kaogen.l2p.plan import plan_action
    from kaogen.l2p.stroke_model import StrokeModel, paint_exact

    g = torch.Generator().manual_seed(seed)
    canvas = torch.rand(3, 3, 1, 1, generator=g).expand(3, 3, 16, 16).clone()
    a = S.random_strokes(3 * k, g).view(3, k, S.NUM_FIELDS)
    planned, after = plan_action(StrokeModel(AgentConfig(canvas=16)), canvas, target, a, steps=steps,
                                 levels=levels, lr=lr)
    assert planned.shape == a.shape and float(planned.min()) >= 0 and float(planned.max()) <= 1
    torch.testing.assert_close(after, paint_exact(canvas, planned), atol=0, rtol=0)
    d = lambda x: pyramid_distance(paint_exact(canvas, x), target, levels)  # noqa: E731
    assert bool((d(planned) <= d(a)).all())
