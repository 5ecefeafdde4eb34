"""The confusion matrix as a PNG (Pillow only): counts in each cell, shaded by the row's share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kaogen.classify.scores import Scores
from kaogen.images import save_image


def confusion_png(s: Scores, path: str | Path, title: str = "", cell: int = 72) -> Path:
    """Rows: true class, columns: predicted class; a cell's blue is its share of the row (recall on the diagonal)."""
    C = len(s.classes)
    font = ImageFont.load_default(13)
    small = ImageFont.load_default(11)
    title = title or f"accuracy {100 * s.accuracy:.2f} %, macro-F1 {100 * s.macro_f1:.2f} %"
    left, top = 110, 72
    W = max(left + C * cell + 20, int(font.getlength(title)) + 20)
    H = top + C * cell + 50
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    cm = np.asarray(s.confusion, dtype=np.float64)
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    d.text((10, 8), title, fill=(0, 0, 0), font=font)
    d.text((left, top - 40), "predicted", fill=(90, 90, 90), font=small)
    for i in range(C):
        d.text((8, top + i * cell + cell // 2 - 7), s.classes[i][:14], fill=(0, 0, 0), font=small)
        d.text((left + i * cell + 4, top - 6), s.classes[i][:10], fill=(0, 0, 0), font=small, anchor="lb")
        for j in range(C):
            v = share[i, j]
            colour = tuple(int(255 - v * (255 - c)) for c in (33, 102, 172))
            x0, y0 = left + j * cell, top + i * cell
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(200, 200, 200))
            text = (0, 0, 0) if v < 0.55 else (255, 255, 255)
            d.text((x0 + cell // 2, y0 + cell // 2 - 6), f"{int(cm[i, j]):,}", fill=text, font=font, anchor="mm")
            d.text((x0 + cell // 2, y0 + cell // 2 + 10), f"{100 * v:.0f}%", fill=text, font=small, anchor="mm")
    d.text((left, top + C * cell + 8), "rows: true class; shade: share of the row", fill=(90, 90, 90), font=small)
    return save_image(path, np.asarray(img))
