"""libmypaint, driven through ctypes: the real brush engine whose strokes the neural painter imitates.

    lib = MyPaint.load()                          # one-line KaogenError when the library is missing
    brush = lib.brush("classic/pencil")           # a .myb brush from the MyPaint collection, by name
    rgba = lib.draw(brush, points, size)          # premultiplied RGBA float32 (size, size, 4) in [0, 1]

Debian: `apt-get install libmypaint-1.5-1 mypaint-brushes` (library libmypaint-1.5.so.1, brushes
under /usr/share/mypaint-data/{1.0,2.0}/brushes). A fixed tiled surface holds 15-bit fixed-point
premultiplied RGBA tiles of 64 x 64; a new surface holds 0xFFFF everywhere, so its tiles are cleared
before painting. The engine is not thread-safe: make-strokes runs one process per worker.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

import numpy as np

from kaogen.errors import KaogenError

INSTALL_HINT = "install libmypaint: apt-get install libmypaint-1.5-1 mypaint-brushes"
LIBRARY_NAMES = ("libmypaint-1.5.so.1", "libmypaint-1.6.so.1", "libmypaint.so")
BRUSH_DIRS = ("/usr/share/mypaint-data/2.0/brushes", "/usr/share/mypaint-data/1.0/brushes")
TILE = 64
ONE = float(1 << 15)


class TileRequest(ctypes.Structure):
    _fields_ = [("tx", ctypes.c_int), ("ty", ctypes.c_int), ("readonly", ctypes.c_int),
                ("buffer", ctypes.POINTER(ctypes.c_uint16)), ("context", ctypes.c_void_p),
                ("thread_id", ctypes.c_int), ("mipmap_level", ctypes.c_int)]


def brush_dirs() -> list[Path]:
    extra = os.environ.get("KAOGEN_MYPAINT_BRUSHES")
    return [Path(p) for p in ((extra,) if extra else ()) + BRUSH_DIRS if Path(p).is_dir()]


def find_brush(name: str) -> Path:
    """A brush by name: 'classic/pencil', 'deevad/2B_pencil', or a path to a .myb file."""
    p = Path(name)
    if p.suffix == ".myb" and p.is_file():
        return p
    for d in brush_dirs():
        cand = d / f"{name}.myb"
        if cand.is_file():
            return cand
    known = sorted({str(q.relative_to(d))[:-4] for d in brush_dirs() for q in d.glob("*/*.myb")})
    hint = f" (known: {', '.join(known[:12])}, ...)" if known else f"; {INSTALL_HINT}"
    raise KaogenError(f"no MyPaint brush named {name!r}{hint}")


class MyPaint:
    _instance: "MyPaint | None" = None

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        c = ctypes
        sig = {
            "mypaint_brush_new": (c.c_void_p, []),
            "mypaint_brush_unref": (None, [c.c_void_p]),
            "mypaint_brush_from_defaults": (None, [c.c_void_p]),
            "mypaint_brush_from_string": (c.c_int, [c.c_void_p, c.c_char_p]),
            "mypaint_brush_reset": (None, [c.c_void_p]),
            "mypaint_brush_new_stroke": (None, [c.c_void_p]),
            "mypaint_brush_stroke_to": (c.c_int, [c.c_void_p, c.c_void_p, c.c_float, c.c_float, c.c_float,
                                                  c.c_float, c.c_float, c.c_double]),
            "mypaint_brush_set_base_value": (None, [c.c_void_p, c.c_int, c.c_float]),
            "mypaint_brush_get_base_value": (c.c_float, [c.c_void_p, c.c_int]),
            "mypaint_brush_setting_from_cname": (c.c_int, [c.c_char_p]),
            "mypaint_fixed_tiled_surface_new": (c.c_void_p, [c.c_int, c.c_int]),
            "mypaint_surface_unref": (None, [c.c_void_p]),
            "mypaint_surface_begin_atomic": (None, [c.c_void_p]),
            "mypaint_surface_end_atomic": (None, [c.c_void_p, c.c_void_p]),
            "mypaint_tile_request_init": (None, [c.POINTER(TileRequest), c.c_int, c.c_int, c.c_int, c.c_int]),
            "mypaint_tiled_surface_tile_request_start": (None, [c.c_void_p, c.POINTER(TileRequest)]),
            "mypaint_tiled_surface_tile_request_end": (None, [c.c_void_p, c.POINTER(TileRequest)]),
        }
        for name, (res, args) in sig.items():
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        if hasattr(lib, "mypaint_init"):
            lib.mypaint_init.restype, lib.mypaint_init.argtypes = None, []
            lib.mypaint_init()
        self._settings: dict[str, int] = {}

    @classmethod
    def load(cls) -> "MyPaint":
        if cls._instance is None:
            names = list(LIBRARY_NAMES)
            found = ctypes.util.find_library("mypaint-1.5") or ctypes.util.find_library("mypaint")
            if found:
                names.insert(0, found)
            for name in names:
                try:
                    cls._instance = cls(ctypes.CDLL(name))
                    break
                except OSError:
                    continue
            else:
                raise KaogenError(f"libmypaint is not installed: {INSTALL_HINT}")
        return cls._instance

    def setting(self, cname: str) -> int:
        if cname not in self._settings:
            i = self.lib.mypaint_brush_setting_from_cname(cname.encode())
            if i < 0:
                raise KaogenError(f"libmypaint has no brush setting {cname!r}")
            self._settings[cname] = i
        return self._settings[cname]

    def brush(self, name: str) -> "Brush":
        path = find_brush(name)
        b = self.lib.mypaint_brush_new()
        self.lib.mypaint_brush_from_defaults(b)
        if not self.lib.mypaint_brush_from_string(b, path.read_bytes()):
            self.lib.mypaint_brush_unref(b)
            raise KaogenError(f"{path} is not a brush libmypaint can read")
        return Brush(self, b, name)

    def draw(self, brush: "Brush", events: np.ndarray, size: int, color_hsv: tuple[float, float, float] = (0, 0, 0),
             radius_log: float | None = None) -> np.ndarray:
        """One stroke through `events` (n, 4): x, y (px), pressure [0, 1], dtime (s).

        Returns premultiplied RGBA float32 (size, size, 4) in [0, 1] on a transparent surface.
        """
        lib = self.lib
        n_tiles = -(-size // TILE)
        surf = lib.mypaint_fixed_tiled_surface_new(n_tiles * TILE, n_tiles * TILE)
        if not surf:
            raise KaogenError("libmypaint could not create a surface")
        try:
            self._clear(surf, n_tiles)
            b = brush.ptr
            h, s, v = color_hsv
            for cname, val in (("color_h", h), ("color_s", s), ("color_v", v)):
                lib.mypaint_brush_set_base_value(b, self.setting(cname), float(val))
            if radius_log is not None:
                lib.mypaint_brush_set_base_value(b, self.setting("radius_logarithmic"), float(radius_log))
            lib.mypaint_brush_reset(b)
            lib.mypaint_brush_new_stroke(b)
            lib.mypaint_surface_begin_atomic(surf)
            x0, y0 = float(events[0, 0]), float(events[0, 1])
            lib.mypaint_brush_stroke_to(b, surf, x0, y0, 0.0, 0.0, 0.0, 1.0)   # pen down, no paint
            for x, y, p, dt in events.tolist():
                lib.mypaint_brush_stroke_to(b, surf, x, y, p, 0.0, 0.0, dt)
            lib.mypaint_surface_end_atomic(surf, None)
            return self._read(surf, n_tiles)[:size, :size]
        finally:
            lib.mypaint_surface_unref(surf)

    def _tiles(self, surf, n_tiles: int, readonly: bool):
        for ty in range(n_tiles):
            for tx in range(n_tiles):
                req = TileRequest()
                self.lib.mypaint_tile_request_init(ctypes.byref(req), 0, tx, ty, int(readonly))
                self.lib.mypaint_tiled_surface_tile_request_start(surf, ctypes.byref(req))
                if not req.buffer:
                    raise KaogenError("libmypaint returned an empty tile")
                yield tx, ty, req
                self.lib.mypaint_tiled_surface_tile_request_end(surf, ctypes.byref(req))

    def _clear(self, surf, n_tiles: int) -> None:
        for _, _, req in self._tiles(surf, n_tiles, readonly=False):
            ctypes.memset(req.buffer, 0, TILE * TILE * 4 * 2)

    def _read(self, surf, n_tiles: int) -> np.ndarray:
        out = np.zeros((n_tiles * TILE, n_tiles * TILE, 4), np.float32)
        for tx, ty, req in self._tiles(surf, n_tiles, readonly=True):
            a = np.ctypeslib.as_array(req.buffer, shape=(TILE, TILE, 4))
            out[ty * TILE:(ty + 1) * TILE, tx * TILE:(tx + 1) * TILE] = a / ONE
        return np.clip(out, 0, 1)


class Brush:
    def __init__(self, lib: MyPaint, ptr, name: str):
        self.lib, self.ptr, self.name = lib, ptr, name

    def __del__(self):
        try:
            self.lib.lib.mypaint_brush_unref(self.ptr)
        except Exception:
            pass
