"""KaoKore metadata: labels.csv, original_tags.txt, urls.txt, labels.metadata.en.txt.

A KaoKore root looks like:

    ROOT/labels.csv            image,gender,status,set   (one row per labelled face)
    ROOT/original_tags.txt     NNNNNNNN.jpg:key=value;key=value;...   (the experts' tags, Japanese)
    ROOT/urls.txt              one IIIF URL per line; line i is image %08d.jpg
    ROOT/images_256/           downloaded faces (images_S/ for other sizes)

Malformed rows are skipped and counted (`Metadata.problems`), never silently dropped.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from kaogen.errors import KaogenError

GENDERS = ("male", "female")
STATUSES = ("noble", "warrior", "incarnation", "commoner")
SPLITS = ("train", "dev", "test")
LABEL_NAMES = {"gender": GENDERS, "status": STATUSES}

# The experts' tags worth using beyond the labels: Japanese key -> our name.
TAG_KEYS = {"向き": "orientation", "原典": "work", "所蔵": "holder", "制作年": "period"}
ORIENTATIONS = {"四分の三": "three-quarter", "横": "profile", "後": "back", "正面": "front"}

METADATA_FILES = ("labels.csv", "original_tags.txt", "urls.txt", "labels.metadata.en.txt")
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(jpg|jpeg|png)$")


@dataclass(frozen=True)
class Record:
    image: str                  # file name, e.g. "00000042.jpg" (never a path)
    gender: int | None          # 0 male, 1 female, None when not labelled
    status: int | None          # 0 noble, 1 warrior, 2 incarnation, 3 commoner, None
    split: str | None           # official split: train / dev / test, or None
    tags: dict[str, str] = field(default_factory=dict, compare=False)  # orientation, work, holder, period


@dataclass
class Metadata:
    root: Path
    records: list[Record]
    urls: list[str]
    problems: list[str]         # one line per skipped row


def check_image_name(name: str) -> str:
    """Refuse names that are not plain file names (`../x.jpg`, `a/b.jpg`, absolute paths)."""
    if not _IMAGE_NAME.match(name):
        raise KaogenError(f"image name {name!r} is not a plain file name")
    return name


def _label(value: str, n: int, what: str) -> int | None:
    value = value.strip()
    if value == "":
        return None
    if not value.isdigit() or int(value) >= n:
        raise ValueError(f"{what} {value!r} is not in 0..{n - 1}")
    return int(value)


def read_labels(path: Path) -> tuple[list[tuple[str, int | None, int | None, str | None]], list[str]]:
    """Parse labels.csv (header `image,gender,status[,set]`); returns rows and skipped-row notes."""
    rows, problems = [], []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise KaogenError(f"{path} is not UTF-8 text") from None
    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader, [])]
    if "image" not in header:
        raise KaogenError(f"{path} has no 'image' column in its header (got {header})")
    col = {h: i for i, h in enumerate(header)}
    seen = set()
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        try:
            if len(row) != len(header):
                raise ValueError(f"{len(row)} cells, header has {len(header)}")
            name = check_image_name(row[col["image"]].strip())
            if name in seen:
                raise ValueError(f"duplicate image {name}")
            gender = _label(row[col["gender"]], 2, "gender") if "gender" in col else None
            status = _label(row[col["status"]], 4, "status") if "status" in col else None
            split = row[col["set"]].strip() if "set" in col else None
            if split is not None and split not in SPLITS:
                raise ValueError(f"unknown set {split!r}")
        except (ValueError, KaogenError) as e:
            problems.append(f"{path.name}:{lineno}: skipped ({e})")
            continue
        seen.add(name)
        rows.append((name, gender, status, split or None))
    return rows, problems


def read_tags(path: Path) -> dict[str, dict[str, str]]:
    """Parse original_tags.txt into {image: {orientation, work, holder, period, <raw keys>...}}."""
    tags: dict[str, dict[str, str]] = {}
    if not path.is_file():
        return tags
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if ":" not in line:
            continue
        name, rest = line.split(":", 1)
        d: dict[str, str] = {}
        for item in rest.split(";"):
            if "=" in item:
                k, v = item.split("=", 1)
                d[k.strip()] = v.strip()
        mine = {ours: d.get(jp, "") for jp, ours in TAG_KEYS.items()}
        mine["orientation"] = ORIENTATIONS.get(mine["orientation"], mine["orientation"])
        tags[name.strip()] = {**d, **mine}
    return tags


def read_urls(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]


def load_metadata(root: str | Path) -> Metadata:
    """Read a KaoKore root's metadata; KaogenError when the root or labels.csv is missing."""
    root = Path(root)
    if not root.is_dir():
        raise KaogenError(f"KaoKore root {root} does not exist")
    labels = root / "labels.csv"
    if not labels.is_file():
        raise KaogenError(f"{root} has no labels.csv: is it a KaoKore root? (kaogen data download --root {root})")
    rows, problems = read_labels(labels)
    tags = read_tags(root / "original_tags.txt")
    records = [Record(n, g, s, sp, tags.get(n, {})) for n, g, s, sp in rows]
    return Metadata(root=root, records=records, urls=read_urls(root / "urls.txt"), problems=problems)


def image_dir(root: str | Path, size: int = 256) -> Path:
    return Path(root) / f"images_{size}"
