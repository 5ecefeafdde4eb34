"""A painting: a background and an ordered list of strokes, resolution-free, saved as JSON.

Painting file (`kaogen paint --save-strokes P.json`, read by `kaogen render`):

    {
      "format": "kaogen-painting", "version": 1,
      "canvas": {"aspect": 1.0, "background": [1.0, 1.0, 1.0]},   # aspect = width / height
      "stroke_kind": "bezier",
      "fields": ["x0", "y0", "x1", "y1", "x2", "y2", "z0", "z2", "w0", "w2", "r", "g", "b"],
      "strokes": [[13 numbers in [0, 1]], ...],                      # painting order
      "provenance": {"method": ..., "checkpoint": ..., "source": ..., "seed": ..., "kaogen": ...}
    }

Replaying the first k strokes gives stage k of the painting sequence; painted at 128 px, a
painting renders at 2048 px for a print because every coordinate is in canvas units.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from kaogen.atomic import atomic_write_text
from kaogen.errors import KaogenError
from kaogen.render import brush_strokes as B
from kaogen.render import strokes as S
from kaogen.render.composite import composite_crop_
from kaogen.render.rasterize import rasterize_crops

FORMAT, VERSION = "kaogen-painting", 1
# stroke kind -> its fields: Learning to Paint's Bezier strokes, intrinsic style transfer's brush strokes
STROKE_KINDS = {"bezier": S.FIELDS, "neural-brush": B.FIELDS}


def _on(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device`: copied only when it lives elsewhere."""
    return t if t.device == device else t.to(device)


@dataclass
class Painting:
    strokes: torch.Tensor                                       # (N, 13) in [0, 1], painting order
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB in [0, 1]
    aspect: float = 1.0                                         # width / height
    kind: str = "bezier"
    provenance: dict = field(default_factory=dict)
    painter: object = field(default=None, repr=False, compare=False)   # neural-brush: a loaded painter (not saved)

    def __post_init__(self):
        n = len(STROKE_KINDS[self.kind])
        if not isinstance(self.strokes, torch.Tensor) or self.strokes.dim() != 2 or self.strokes.shape[1] != n:
            raise ValueError(f"a {self.kind} painting's strokes are (N, {n}), got {tuple(getattr(self.strokes, 'shape', ()))}")

    @property
    def fields(self) -> tuple[str, ...]:
        return STROKE_KINDS[self.kind]

    def render_device(self, device=None) -> torch.device:
        """Where rendering happens: `device`, or by default the strokes' device."""
        return self.strokes.device if device is None else torch.device(device)

    def crops(self, H: int, W: int, device=None) -> list:
        """Every stroke's alpha in its own window at H x W (StrokeCrops, painting order), on `device`
        (default: the strokes')."""
        dev = self.render_device(device)
        if not len(self.strokes):
            return []
        if self.kind == "bezier":
            return rasterize_crops(_on(self.strokes, dev).float(), H, W)
        if self.painter is None:
            self.painter = B.load_painter(self.provenance, dev, self.kind)
        return B.brush_crops(self.strokes, H, W, self.painter, dev)

    def colors(self) -> torch.Tensor:
        """(N, 3) RGB of every stroke."""
        return S.color(self.strokes) if self.kind == "bezier" else B.color(self.strokes)

    def __len__(self) -> int:
        return len(self.strokes)

    def canvas_size(self, size: int) -> tuple[int, int]:
        """(H, W) with the longer side `size` px."""
        if self.aspect >= 1:
            return max(1, round(size / self.aspect)), size
        return size, max(1, round(size * self.aspect))

    def blank(self, H: int, W: int, device=None) -> torch.Tensor:
        """The background (3, H, W) on `device` (default: the strokes'), filled from Python numbers: no host tensor."""
        canvas = torch.empty(3, H, W, dtype=torch.float32, device=self.render_device(device))
        for c, v in enumerate(self.background):
            canvas[c].fill_(float(v))
        return canvas

    def stages(self, size: int, every: int = 1, device=None) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (k, canvas (3, H, W) in [0, 1]) for k = 0, every, 2*every, ..., N (always ending at N).

        Every stroke is rasterised once, in its own window; stages are snapshots of one canvas, on
        `device` (default: the strokes' device). Host synchronisations are a fixed few per call,
        none per stroke.
        """
        if every < 1:
            raise KaogenError("strokes per frame must be at least 1")
        H, W = self.canvas_size(size)
        device = self.render_device(device)
        canvas = self.blank(H, W, device)
        crops = self.crops(H, W, device)
        colors = _on(self.colors(), device).float()
        yield 0, canvas.clone()
        for k, crop in enumerate(crops, start=1):
            composite_crop_(canvas, crop.alpha, colors[k - 1], crop.top, crop.left)
            if k % every == 0 or k == len(crops):
                yield k, canvas.clone()

    def render(self, size: int, upto: int | None = None, device=None) -> torch.Tensor:
        """The canvas after the first `upto` strokes (all by default): (3, H, W) in [0, 1], on `device`
        (default: the strokes' device)."""
        sub = self if upto is None else Painting(self.strokes[:upto], self.background, self.aspect, self.kind,
                                                 self.provenance, self.painter)
        *_, (_, canvas) = sub.stages(size, every=max(1, len(sub)), device=device)
        return canvas

    # ------------------------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION,
            "canvas": {"aspect": self.aspect, "background": list(self.background)},
            "stroke_kind": self.kind,
            "fields": list(self.fields),
            "strokes": [[round(v, 6) for v in row] for row in self.strokes.detach().cpu().tolist()],
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> Path:
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False) + "\n")
        return Path(path)

    @classmethod
    def from_dict(cls, d: dict, where: str = "painting") -> "Painting":
        def bad(msg: str):
            return KaogenError(f"{where} is not a valid kaogen painting: {msg}")

        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise bad(f"no \"format\": \"{FORMAT}\"")
        if d.get("version") != VERSION:
            raise bad(f"version {d.get('version')!r} (this kaogen reads {VERSION})")
        kind = d.get("stroke_kind", "bezier")
        if kind not in STROKE_KINDS:
            raise bad(f"unknown stroke kind {kind!r}")
        fields = list(STROKE_KINDS[kind])
        if d.get("fields", fields) != fields:
            raise bad(f"fields must be {fields}")
        canvas = d.get("canvas", {})
        aspect = canvas.get("aspect", 1.0)
        bg = canvas.get("background", [1.0, 1.0, 1.0])
        if not isinstance(aspect, (int, float)) or not (0.01 <= aspect <= 100) or not math.isfinite(aspect):
            raise bad(f"canvas aspect {aspect!r} is not a number in [0.01, 100]")
        if not (isinstance(bg, list) and len(bg) == 3 and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in bg)):
            raise bad("background must be three numbers in [0, 1]")
        rows = d.get("strokes")
        if not isinstance(rows, list):
            raise bad("\"strokes\" must be a list")
        for i, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == len(fields)
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)):
                raise bad(f"stroke {i} is not a list of {len(fields)} numbers")
            if not all(math.isfinite(v) and -1e-6 <= v <= 1 + 1e-6 for v in row):
                raise bad(f"stroke {i} has a value outside [0, 1]")
        strokes = torch.tensor(rows, dtype=torch.float32).reshape(-1, len(fields)).clamp(0, 1)
        prov = d.get("provenance", {})
        return cls(strokes, tuple(float(v) for v in bg), float(aspect), kind, prov if isinstance(prov, dict) else {})

    @classmethod
    def load(cls, path: str | Path) -> "Painting":
        path = Path(path)
        if not path.is_file():
            raise KaogenError(f"painting file {path} does not exist")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise KaogenError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(d, where=str(path))
