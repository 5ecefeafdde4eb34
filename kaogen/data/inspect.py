"""`kaogen data verify` and `kaogen data info`: what a KaoKore root holds, checked against disk."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kaogen.data.metadata import GENDERS, STATUSES, image_dir, load_metadata, read_stamp, stamp_problem
from kaogen.images import image_size as _image_size


@dataclass
class VerifyReport:
    checked: int = 0                                     # labelled images that should be on disk
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # malformed metadata rows
    withdrawn: list[str] = field(default_factory=list)  # labelled, but their urls.txt line is empty
    version: str | None = None                          # kaogen's stamp; None for an unstamped root
    mixed: str | None = None                            # the stamp disagrees with the metadata (one line)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt and not self.mixed


def verify(root: str | Path, size: int = 256, workers: int = 4) -> VerifyReport:
    """Every labelled image present and decodable in ROOT/images_S, and metadata of one version."""
    meta = load_metadata(root)
    folder = image_dir(root, size)
    withdrawn = meta.withdrawn
    records = [r for r in meta.records if r.image not in withdrawn]
    st = read_stamp(root)
    report = VerifyReport(checked=len(records), problems=list(meta.problems),
                          withdrawn=sorted(r.image for r in meta.records if r.image in withdrawn),
                          version=st.version if st else None, mixed=stamp_problem(root))
    paths = [folder / r.image for r in records]
    present = [p for p in paths if p.is_file()]
    report.missing = sorted(p.name for p in paths if not p.is_file())
    with ThreadPoolExecutor(workers) as pool:
        sizes = list(pool.map(_image_size, present))
    report.corrupt = sorted(p.name for p, s in zip(present, sizes) if s is None)
    return report


def info(root: str | Path, size: int = 256) -> dict:
    """Counts per split and label value, image sizes on disk, and the tag vocabularies."""
    meta = load_metadata(root)
    recs = meta.records
    splits = Counter(r.split or "none" for r in recs)
    by_split: dict[str, dict] = {}
    for split in sorted(splits):
        rs = [r for r in recs if (r.split or "none") == split]
        by_split[split] = {
            "images": len(rs),
            "gender": {GENDERS[k]: v for k, v in sorted(Counter(r.gender for r in rs if r.gender is not None).items())},
            "status": {STATUSES[k]: v for k, v in sorted(Counter(r.status for r in rs if r.status is not None).items())},
        }
    folder = image_dir(root, size)
    sizes: Counter = Counter()
    on_disk = 0
    if folder.is_dir():
        files = sorted(folder.glob("*.jpg"))
        on_disk = len(files)
        with ThreadPoolExecutor(4) as pool:
            for s in pool.map(_image_size, files):
                sizes["corrupt" if s is None else f"{s[0]}x{s[1]}"] += 1

    def vocab(key: str) -> dict[str, int]:
        return dict(Counter(r.tags.get(key, "") or "(none)" for r in recs).most_common())

    withdrawn = meta.withdrawn
    urls = sum(1 for u in meta.urls if u)
    st = read_stamp(root)
    return {
        "root": str(Path(root)),
        "version": st.version if st else None,
        "version_problem": stamp_problem(root),
        "labelled_images": len(recs),
        "urls": urls,
        "withdrawn_urls": len(withdrawn),
        "unlabelled_urls": max(0, urls - sum(1 for r in recs if r.image not in withdrawn)),
        "splits": by_split,
        "joint": {f"{GENDERS[g]}-{STATUSES[s]}": n for (g, s), n in sorted(
            Counter((r.gender, r.status) for r in recs if r.gender is not None and r.status is not None).items())},
        "images_dir": str(folder),
        "images_on_disk": on_disk,
        "image_sizes": dict(sizes.most_common()),
        "tags": {k: vocab(k) for k in ("orientation", "work", "holder", "period")},
        "skipped_rows": meta.problems,
    }


def format_info(d: dict, top: int = 10) -> str:
    """A human-readable rendering of `info()`."""
    version = f"KaoKore {d['version']}" if d.get("version") else "KaoKore (no kaogen version stamp)"
    withdrawn = f", {d['withdrawn_urls']} withdrawn" if d.get("withdrawn_urls") else ""
    lines = [f"{version} root {d['root']}: {d['labelled_images']} labelled images, {d['urls']} URLs "
             f"({d['unlabelled_urls']} without labels{withdrawn})"]
    if d.get("version_problem"):
        lines.append(f"  warning: {d['version_problem']}")
    for split, s in d["splits"].items():
        g = ", ".join(f"{k} {v}" for k, v in s["gender"].items())
        st = ", ".join(f"{k} {v}" for k, v in s["status"].items())
        lines.append(f"  {split:<5} {s['images']:>6}   gender: {g}   status: {st}")
    lines.append(f"  images on disk in {d['images_dir']}: {d['images_on_disk']} "
                 f"({', '.join(f'{k}: {v}' for k, v in d['image_sizes'].items()) or 'none'})")
    for key, vocab in d["tags"].items():
        items = list(vocab.items())
        shown = ", ".join(f"{k} {v}" for k, v in items[:top])
        more = f", ... ({len(items)} values)" if len(items) > top else ""
        lines.append(f"  {key}: {shown}{more}")
    if d["skipped_rows"]:
        lines.append(f"  {len(d['skipped_rows'])} malformed rows skipped, first: {d['skipped_rows'][0]}")
    return "\n".join(lines)
