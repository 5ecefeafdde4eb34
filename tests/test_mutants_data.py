"""The data layer's boundaries, found by mutation testing (benchmarks/mutation.sh): each test pins a
behaviour a user sees (which faces land in which split, how many attempts a download makes, which
label rows are refused) that a one-token change in kaogen/data/ used to leave unnoticed."""

from __future__ import annotations

import random

import pytest

from kaogen.data.metadata import Record
from kaogen.data.splits import assign_splits


# ------------------------------------------------------------------------------------------ splits

def _records(sizes: dict[str, int]) -> list[Record]:
    out, k = [], 0
    for work, n in sizes.items():
        for _ in range(n):
            out.append(Record(f"{k:08d}.jpg", 0, 0, "train" if k % 3 else "test", {"work": work} if work else {}))
            k += 1
    return out


def _seed_putting_first(names: list[str], first: list[str]) -> int:
    """A seed whose shuffled work order (the documented `random.Random(seed)` over the sorted works)
    starts with `first`: the cases below then know which work by-work considers first."""
    for seed in range(10_000):
        order = sorted(names)
        random.Random(seed).shuffle(order)
        if order[: len(first)] == first:
            return seed
    raise AssertionError("no seed")


def _sides(out: dict[str, str], recs: list[Record]) -> dict[str, str]:
    return {r.tags.get("work", ""): out[r.image] for r in recs}


# fractions (train, dev, test), works in the order they are considered -> the side of each work.
# 100 faces: a side asked for 10 takes whole works while it has fewer than 10 and stays within
# 10 * 1.5 + 1 = 16 (its first work whatever its size).
BY_WORK_CASES = [
    ((0.8, 0.1, 0.1), {"A": 4, "B": 12, "C": 84}, {"A": "test", "B": "test", "C": "dev"}),     # 16 <= 16: taken
    ((0.8, 0.1, 0.1), {"A": 4, "B": 13, "C": 83}, {"A": "test", "B": "dev", "C": "train"}),    # 17 > 16: next side
    ((0.8, 0.1, 0.1), {"A": 10, "B": 5, "C": 85}, {"A": "test", "B": "dev", "C": "train"}),    # test full at 10
    ((0.9, 0.1, 0.0), {"A": 4, "B": 12, "C": 84}, {"A": "dev", "B": "dev", "C": "train"}),     # the same for dev
    ((0.9, 0.1, 0.0), {"A": 4, "B": 13, "C": 83}, {"A": "dev", "B": "train", "C": "train"}),
    ((0.9, 0.1, 0.0), {"A": 10, "B": 5, "C": 85}, {"A": "dev", "B": "train", "C": "train"}),
    ((0.9, 0.1, 0.0), {"A": 30, "B": 5, "C": 65}, {"A": "dev", "B": "train", "C": "train"}),   # first work: any size
    ((0.7, 0.2, 0.1), {"A": 30, "B": 25, "C": 45}, {"A": "test", "B": "dev", "C": "train"}),
    ((0.7, 0.2, 0.1), {"A": 5, "B": 40, "C": 55}, {"A": "test", "B": "dev", "C": "train"}),    # 45 > 16: dev takes it
]


@pytest.mark.parametrize("fractions, sizes, want", BY_WORK_CASES)
def test_by_work_takes_whole_works_up_to_half_again_what_a_side_asks_for(fractions, sizes, want):
    recs = _records(sizes)
    seed = _seed_putting_first(list(sizes), list(sizes))
    assert _sides(assign_splits(recs, "by-work", seed=seed, fractions=fractions), recs) == want


def test_split_defaults_are_the_official_split_and_seed_0():
    recs = _records({f"w{i}": 3 + i for i in range(12)})
    assert assign_splits(recs) == {r.image: r.split for r in recs}
    for strategy in ("by-work", "within-work"):
        assert assign_splits(recs, strategy) == assign_splits(recs, strategy, seed=0)
        assert assign_splits(recs, strategy) != assign_splits(recs, strategy, seed=1)   # the seed matters


def test_a_published_by_work_split_never_changes():
    """Splits are deterministic given the seed: the same records give the same split in every
    release (faces without a work tag form one group, "(unknown)", sorted with the others)."""
    recs = _records({"": 7, "B": 9, "Zed": 3, "(a": 5, "M": 11, "Y": 4, "b": 6, "[": 5})
    got = _sides(assign_splits(recs, "by-work", seed=0, fractions=(0.6, 0.2, 0.2)), recs)
    assert got == {"": "test", "B": "dev", "Zed": "dev", "(a": "train", "M": "train", "Y": "test", "b": "train",
                   "[": "train"}
    got = _sides(assign_splits(recs, "by-work", seed=3), recs)
    assert got == {"": "train", "B": "train", "Zed": "dev", "(a": "test", "M": "train", "Y": "train", "b": "train",
                   "[": "dev"}
