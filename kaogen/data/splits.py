"""Train/dev/test split strategies over KaoKore records.

* `official`     the `set` column of labels.csv (v1.3: 7,405 / 926 / 926).
* `by-work`      whole source works (原典) held out: no work is on two sides. The "inter-book"
                 split art historians need to ask whether a model generalises to an unseen scroll.
* `within-work`  every work split on its own, so each work with >= 3 faces is on all three sides
                 ("intra-book").

`by-work` and `within-work` are deterministic given `seed` and `fractions`.
"""

from __future__ import annotations

import random
from collections import defaultdict

from kaogen.data.metadata import SPLITS, Record
from kaogen.errors import KaogenError

STRATEGIES = ("official", "by-work", "within-work")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def _work(r: Record) -> str:
    return r.tags.get("work") or "(unknown)"


def assign_splits(
    records: list[Record],
    strategy: str = "official",
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> dict[str, str]:
    """Return {image name: "train" | "dev" | "test"} under `strategy` (records without one are absent)."""
    if strategy not in STRATEGIES:
        raise KaogenError(f"unknown split strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise KaogenError(f"split fractions must be three non-negative numbers summing to 1, not {fractions}")
    if strategy == "official":
        return {r.image: r.split for r in records if r.split in SPLITS}

    rng = random.Random(seed)
    groups: dict[str, list[str]] = defaultdict(list)
    for r in records:
        groups[_work(r)].append(r.image)
    works = sorted(groups)
    out: dict[str, str] = {}
    if strategy == "by-work":
        rng.shuffle(works)
        total = sum(len(groups[w]) for w in works)
        want_test, want_dev = fractions[2] * total, fractions[1] * total
        n_test = n_dev = 0
        for w in works:  # fill test, then dev, with whole works (at least one each); the rest is train
            n = len(groups[w])
            if n_test < want_test and (n_test == 0 or n_test + n <= want_test * 1.5 + 1):
                side, n_test = "test", n_test + n
            elif n_dev < want_dev and (n_dev == 0 or n_dev + n <= want_dev * 1.5 + 1):
                side, n_dev = "dev", n_dev + n
            else:
                side = "train"
            out.update((img, side) for img in groups[w])
        return out

    for w in works:  # within-work
        imgs = sorted(groups[w])
        rng.shuffle(imgs)
        n = len(imgs)
        n_test = max(1, round(fractions[2] * n)) if n >= 3 and fractions[2] > 0 else 0
        n_dev = max(1, round(fractions[1] * n)) if n >= 3 and fractions[1] > 0 else 0
        for i, img in enumerate(imgs):
            out[img] = "test" if i < n_test else "dev" if i < n_test + n_dev else "train"
    return out
