"""The list of equivalent mutants for benchmarks/mutation.sh: benchmarks/mutation-equivalent.txt.

One line per mutant: `NAME HASH REASON`. HASH is the first 12 hex digits of the SHA-256 of the
mutant's changed lines as `mutmut show NAME` prints them (run in the module's pass folder), so that a
listed name whose mutation is no longer the one judged (mutmut numbers the mutants of a function in
order, and renumbers them when the function changes) is not counted as equivalent.

    python benchmarks/mutation_equivalent.py add LIST NAME "reason"     (in a pass folder)
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path


def diff_hash(name: str) -> str:
    out = subprocess.run(["mutmut", "show", name], capture_output=True, text=True).stdout
    changed = [l for l in out.splitlines() if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    if not changed:
        raise SystemExit(f"mutation_equivalent: mutmut shows no change for {name} (run in its pass folder)")
    return hashlib.sha256("\n".join(changed).encode()).hexdigest()[:12]


def read_equivalents(path: str | Path) -> dict[str, tuple[str, str]]:
    """{name: (hash, reason)}"""
    out = {}
    p = Path(path)
    if p.is_file():
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                name, digest, reason = (line.split(None, 2) + [""])[:3]
                out[name] = (digest, reason)
    return out


def add(path: str, name: str, reason: str) -> None:
    if not reason.strip():
        raise SystemExit("mutation_equivalent: say why the mutant behaves the same")
    entries = read_equivalents(path)
    entries[name] = (diff_hash(name), " ".join(reason.split()))
    p = Path(path)
    head = [l for l in p.read_text(encoding="utf-8").splitlines() if l.startswith("#")] if p.is_file() else []
    body = [f"{n} {d} {r}" for n, (d, r) in sorted(entries.items())]
    tmp = p.with_suffix(".tmp")
    tmp.write_text("\n".join(head + body) + "\n", encoding="utf-8")
    tmp.replace(p)
    print(f"{name} {entries[name][0]} listed as equivalent")


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "add":
        raise SystemExit(__doc__)
    add(*sys.argv[2:])
