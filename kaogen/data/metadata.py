"""KaoKore metadata: labels.csv, original_tags.txt, urls.txt, labels.metadata.en.txt.

A KaoKore root looks like:

    ROOT/labels.csv            image,gender,status,set   (one row per labelled face)
    ROOT/original_tags.txt     NNNNNNNN.jpg:key=value;key=value;...   (the experts' tags, Japanese)
    ROOT/urls.txt              one IIIF URL per line; line i is image %08d.jpg
    ROOT/images_256/           downloaded faces (images_S/ for other sizes)
    ROOT/kaokore_version.txt   kaogen's stamp: the version, and the SHA-256 of labels.csv and
                               urls.txt the images were fetched for (the official tools write none)

An empty line in urls.txt is a withdrawn face (v1.0 and v1.1 have 272): its number is kept, so the
next line is still the next file name. Malformed rows are skipped and counted (`Metadata.problems`),
never silently dropped.
"""

from __future__ import annotations

import csv
import hashlib
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

METADATA_FILES = ("labels.csv", "original_tags.txt", "urls.txt", "labels.metadata.en.txt", "labels.metadata.ja.txt")
STAMP = "kaokore_version.txt"
STAMPED_FILES = ("labels.csv", "urls.txt")
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
    urls: list[str]             # one per line of urls.txt, "" where a face was withdrawn
    problems: list[str]         # one line per skipped row

    @property
    def withdrawn(self) -> set[str]:
        """File names whose line in urls.txt is empty (faces withdrawn, numbering kept)."""
        return withdrawn_images(self.urls)


@dataclass
class Stamp:
    version: str
    digests: dict[str, str]     # file name -> sha256 hex when the stamp was written (empty: old stamp)
    changed: list[str]          # stamped files whose content differs now (or that are gone)

    @property
    def valid(self) -> bool:
        return not self.changed


def check_image_name(name: str) -> str:
    """Refuse names that are not plain file names (`../x.jpg`, `a/b.jpg`, absolute paths)."""
    if not _IMAGE_NAME.match(name):
        raise KaogenError(f"image name {name!r} is not a plain file name")
    return name


def _label(value: str, n: int, what: str) -> int | None:
    value = value.strip()
    if value == "":
        return None
    if not (value.isascii() and value.isdigit()) or int(value) >= n:      # "١" (U+0661) is a digit to isdigit
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
    """Lines of urls.txt, stripped; an empty line (withdrawn face) stays as "" so numbering is kept."""
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]


def withdrawn_images(urls: list[str]) -> set[str]:
    return {f"{i:08d}.jpg" for i, u in enumerate(urls) if not u}


def file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def read_stamp(root: str | Path) -> Stamp | None:
    """kaogen's version stamp of a root, checked against the files it names; None when absent."""
    path = Path(root) / STAMP
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    version = lines[0].strip() if lines else ""
    digests = {}
    for line in lines[1:]:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "sha256":
            digests[parts[1]] = parts[2]
    changed = [n for n, d in digests.items() if file_digest(Path(root) / n) != d]
    return Stamp(version, digests, changed)


def stamp_text(root: str | Path, version: str) -> str:
    lines = [version] + [f"sha256 {n} {file_digest(Path(root) / n)}" for n in STAMPED_FILES
                         if (Path(root) / n).is_file()]
    return "\n".join(lines) + "\n"


def stamp_problem(root: str | Path) -> str | None:
    """One line when the root's metadata changed after kaogen fetched its images for a version."""
    st = read_stamp(root)
    if st is None or st.valid:
        return None
    return (f"{Path(root) / STAMP} says KaoKore {st.version}, but {', '.join(st.changed)} changed since its "
            f"images were fetched (another tool or version wrote them?): faces and labels may not match; "
            f"run `kaogen data download --root {root} --version VERSION` to reconcile")


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
