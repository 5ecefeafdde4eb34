"""A KaoKore-style root whose label is a planted visual cue: a check that training and Grad-CAM work.

    planted_cue_root("../shared/kaokore/samples", "cue-root")

Each of the 30 real sample faces appears twice: as it is (gender 0, "male") and with a solid green
square of side `cue` x 256 px in its top-left corner (gender 1, "female"). Face i is on the official
side train (i % 5 < 3), dev (i % 5 == 3) or test (i % 5 == 4), both of its versions together, so dev
and test faces are faces never seen in training; works "A", "B", "C" by i % 3. A classifier that
learns the task must look at the corner, and its Grad-CAM map should lie there.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from kaogen.errors import KaogenError

CUE_COLOUR = (0, 255, 0)


def planted_cue_root(samples: str | Path, root: str | Path, cue: float = 0.22) -> Path:
    samples, root = Path(samples), Path(root)
    if not (samples / "labels.csv").is_file():
        raise KaogenError(f"{samples} has no labels.csv (the sample faces: ../shared/kaokore/samples)")
    (root / "images_256").mkdir(parents=True)
    rows = list(csv.DictReader((samples / "labels.csv").open(encoding="utf-8")))
    side_px = int(256 * cue)
    with (root / "labels.csv").open("w", newline="", encoding="utf-8") as f, \
            (root / "original_tags.txt").open("w", encoding="utf-8") as t:
        w = csv.writer(f)
        w.writerow(["image", "gender", "status", "set"])
        n = 0
        for i, row in enumerate(rows):
            img = Image.open(samples / row["image"]).convert("RGB").resize((256, 256))
            side = "train" if i % 5 < 3 else "dev" if i % 5 == 3 else "test"
            for has_cue in (0, 1):
                im = img.copy()
                if has_cue:
                    im.paste(CUE_COLOUR, (0, 0, side_px, side_px))
                name = f"{n:08d}.jpg"
                im.save(root / "images_256" / name, quality=95)
                w.writerow([name, has_cue, i % 4, side])
                t.write(f"{name}:原典={'ABC'[i % 3]};制作年=江戸\n")
                n += 1
    return root
