"""`kaogen data add --root LOCAL --review review.csv`: reviewed crops join a local KaoKore-style root.

The review CSV is the one `kaogen detect` writes (crops/NAME_K.jpg beside it). A row joins when its
`keep` cell says yes (yes, y, true, 1, x, keep), or when `keep` is empty and the historian changed
`gender` or `status` from the prediction (a correction confirms the face); `keep = no` never joins.
`gender` / `status` are names (male, female; noble, warrior, incarnation, commoner) or numbers, or
empty (unlabelled: still a face for `train-gan`).

The root gets, numbered after everything already in it: images_256/NNNNNNNN.jpg (the crop, checked
to decode), a labels.csv row (image, gender, status, set), an original_tags.txt line with the
source page and box (`page=`, `source=`, `canvas=`, `box=x,y,w,h`, `region=`, `score=`; `原典` the
work when given) and a urls.txt line (the crop's IIIF region URL, or `file://PAGE#xywh=...` for a
local page). A face already added (same source and box) is not added twice. Images are written
first, labels.csv last, each file atomically: a crash leaves a root that a re-run completes.

A root downloaded by `kaogen data download` (it holds kaokore_version.txt) is refused: its images
belong to an official version, and added faces would be taken for that version's.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from kaogen.atomic import atomic_write_bytes, atomic_write_text
from kaogen.data.metadata import GENDERS, SPLITS, STAMP, STATUSES, image_dir, read_labels, read_tags, read_urls
from kaogen.errors import KaogenError

YES = {"yes", "y", "true", "1", "x", "keep", "ok"}
NO = {"no", "n", "false", "0", "drop", "reject"}
_NUMBERED = re.compile(r"^(\d{8})\.jpg$")


@dataclass
class AddReport:
    added: list[str] = field(default_factory=list)      # new image names
    skipped: list[str] = field(default_factory=list)    # one line per row not added, and why
    duplicates: int = 0

    def summary(self) -> str:
        return (f"{len(self.added)} faces added, {self.duplicates} already in the root, "
                f"{len(self.skipped)} rows not kept or refused")


def _label(value: str, names: tuple[str, ...], what: str, where: str) -> int | None:
    v = (value or "").strip().lower()
    if not v:
        return None
    if v.isdigit() and int(v) < len(names):
        return int(v)
    if v in names:
        return names.index(v)
    raise KaogenError(f"{where}: {what} {value!r} is not one of {', '.join(names)}")


def _kept(row: dict) -> bool:
    keep = (row.get("keep") or "").strip().lower()
    if keep in YES:
        return True
    if keep in NO:
        return False
    if keep:
        raise KaogenError(f"keep {row.get('keep')!r} is neither yes nor no")
    return any((row.get(k) or "").strip() and (row.get(k) or "").strip() != (row.get(f"pred_{k}") or "").strip()
               for k in ("gender", "status"))


def add_reviewed(root: str | Path, review: str | Path, split: str = "train", work: str = "") -> AddReport:
    root, review = Path(root), Path(review)
    if split not in SPLITS:
        raise KaogenError(f"--set must be one of {', '.join(SPLITS)}, not {split!r}")
    if not review.is_file():
        raise KaogenError(f"review file {review} does not exist")
    if (root / STAMP).is_file():
        raise KaogenError(f"{root} is a downloaded KaoKore root ({STAMP}): add reviewed faces to a separate local "
                          f"root, e.g. --root {root}-local")
    try:
        rows = list(csv.DictReader(io.StringIO(review.read_text(encoding="utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as e:
        raise KaogenError(f"{review} is not a readable CSV: {e}") from None
    need = {"crop", "source", "x", "y", "w", "h", "keep", "gender", "status"}
    if rows and not need <= set(rows[0]):
        raise KaogenError(f"{review} lacks the columns {', '.join(sorted(need - set(rows[0])))} "
                          f"(is it the review.csv of `kaogen detect`?)")
    root.mkdir(parents=True, exist_ok=True)
    images = image_dir(root, 256)
    images.mkdir(exist_ok=True)
    labels_path, tags_path, urls_path = root / "labels.csv", root / "original_tags.txt", root / "urls.txt"
    labels, _ = read_labels(labels_path) if labels_path.is_file() else ([], [])
    tags = read_tags(tags_path)
    urls = read_urls(urls_path)
    numbers = [int(m.group(1)) for n in [r[0] for r in labels] + [p.name for p in images.iterdir()]
               if (m := _NUMBERED.match(n))]
    nxt = max([len(urls) - 1, *numbers], default=-1) + 1
    seen = {(t.get("source", ""), t.get("box", "")) for t in tags.values()}
    report = AddReport()
    new_labels, new_tags, new_urls = [], [], []
    from kaogen.images import open_rgb

    for lineno, row in enumerate(rows, start=2):
        where = f"{review.name}:{lineno}"
        try:
            if not _kept(row):
                report.skipped.append(f"{where}: not kept")
                continue
            gender = _label(row.get("gender", ""), GENDERS, "gender", where)
            status = _label(row.get("status", ""), STATUSES, "status", where)
            box = ",".join(str(int(float(row[k]))) for k in ("x", "y", "w", "h"))
        except (KaogenError, ValueError) as e:
            report.skipped.append(f"{where}: {e}")
            continue
        key = (row["source"], box)
        if key in seen:
            report.duplicates += 1
            continue
        crop = (review.parent / row["crop"]).resolve()
        try:
            img = open_rgb(crop)
        except KaogenError as e:
            report.skipped.append(f"{where}: {e}")
            continue
        if img.size != (256, 256):
            img = img.resize((256, 256))
        name = f"{nxt:08d}.jpg"
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=95)
        atomic_write_bytes(images / name, buf.getvalue())
        nxt += 1
        seen.add(key)
        region = ",".join(str(row.get(k, "")) for k in ("crop_x", "crop_y", "crop_w", "crop_h"))
        fields = {"原典": work, "page": row.get("page", ""), "source": row["source"], "canvas": row.get("canvas", ""),
                  "box": box, "region": region, "score": row.get("score", "")}
        new_tags.append(f"{name}:" + ";".join(f"{k}={v.replace(';', ',')}" for k, v in fields.items()))
        url = (row.get("url") or "").strip()
        if not url:
            src = row["source"]
            url = (src if "://" in src else Path(src).resolve().as_uri()) + f"#xywh={region}"
        new_urls.append((int(name[:8]), url))
        new_labels.append(f"{name},{'' if gender is None else gender},{'' if status is None else status},{split}")
        report.added.append(name)
    if not report.added:
        return report
    # urls.txt: line i is image i; lines between the old end and the new faces stay empty (withdrawn)
    lines = list(urls)
    for i, url in new_urls:
        lines += [""] * (i + 1 - len(lines))
        lines[i] = url
    tags_text = tags_path.read_text(encoding="utf-8-sig") if tags_path.is_file() else ""
    atomic_write_text(tags_path, tags_text + ("" if not tags_text or tags_text.endswith("\n") else "\n")
                      + "\n".join(new_tags) + "\n")
    atomic_write_text(urls_path, "\n".join(lines) + "\n")
    old = labels_path.read_text(encoding="utf-8-sig") if labels_path.is_file() else "image,gender,status,set\n"
    atomic_write_text(labels_path, old + ("" if old.endswith("\n") else "\n") + "\n".join(new_labels) + "\n")
    return report
