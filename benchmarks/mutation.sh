#!/usr/bin/env bash
# Mutation testing of kaogen's core with mutmut 3 (pip install -e '.[test,mutation]').
#
#   bash benchmarks/mutation.sh data/download         # one module: kaogen/data/download.py
#   bash benchmarks/mutation.sh all                   # every module below, one after the other
#   bash benchmarks/mutation.sh list                  # the modules and the tests each is run with
#   bash benchmarks/mutation.sh data/download results # survivors of the last pass (no run)
#   bash benchmarks/mutation.sh data/download show kaogen.data.download.x_fetch_one__mutmut_12
#   bash benchmarks/mutation.sh data/download run 'kaogen.data.download.x_fetch_one__mutmut_12'
#   bash benchmarks/mutation.sh data/download rerun   # the current tests against the last survivors
#                                                     # (and the mutants no test reached;
#                                                     # `rerun unchecked`: and those never run here)
#   bash benchmarks/mutation.sh render/export equivalent NAME 'why it behaves the same'
#
# Too slow for CI (minutes to an hour per module on 2 cores); it is not part of .ci/run. Each
# module is run with only its own test files (MODULES below), in build/mutation/<module>/, a
# snapshot of the working tree: its pyproject.toml is this repository's [tool.mutmut] section
# with `only_mutate` and `pytest_add_cli_args_test_selection` set for the module, and a link
# `shared` -> ../shared, so that tests/conftest.py (SHARED = parents[2] / "shared") finds the
# real KaoKore material from mutants/tests/. Shipped checkpoints are read from this checkout
# (KAOGEN_CHECKPOINTS). One mutmut worker by default (MUTATION_JOBS=N for more).
# Each pass ends with mutmut's summary and writes build/mutation/<module>/summary.txt
# (killed / survived / no tests / timeout, kill rate) and survivors.txt, and appends the summary
# line to build/mutation/history.txt (time, commit, action), the record of before and after.
# Equivalent mutants (same behaviour for every input) are listed by name in
# benchmarks/mutation-equivalent.txt with a hash of their diff and the reason; a survivor counts as
# equivalent only while its diff is the one judged (mutmut renumbers mutants when a function changes).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"

# module (under kaogen/, without .py) -> the test files it is mutated against
# (MUTATION_TESTS="tests/a.py tests/b.py" overrides the list for one run)
R="tests/test_render.py tests/test_render_device.py tests/test_properties.py tests/test_mutants_render.py"
D="tests/test_data.py tests/test_data_compat.py tests/test_properties.py tests/test_mutants_data.py"
L="tests/test_l2p.py tests/test_l2p_device.py tests/test_properties.py tests/test_mutants_l2p.py"
G="tests/test_gan.py tests/test_gan_fidelity.py tests/test_mutants_gan.py tests/test_mutants_ada.py"
F="tests/test_foundation.py tests/test_mutants_foundation.py"
declare -A MODULES=(
  [render/coverage]="$R"
  [render/tiles]="$R"
  [render/composite]="$R"
  [render/export]="$R"
  [data/download]="tests/test_download.py tests/test_mutants_data.py tests/test_mutants_download.py"
  [data/metadata]="$D tests/test_download.py"
  [data/splits]="$D"
  [data/iiif]="$D tests/test_download.py tests/test_pages.py"
  [data/datasets]="$D"
  [images]="tests/test_data.py tests/test_data_compat.py tests/test_properties.py tests/test_mutants_images.py"
  [checkpoint]="$F"
  [config]="$F"
  [l2p/refine]="$L"
  [l2p/plan]="$L"
  [l2p/distance]="$L"
  [l2p/networks]="$L"
  [gan/augment]="$G"
  [gan/ada]="tests/test_gan_fidelity.py tests/test_mutants_ada.py"   # the pipeline's values (test_gan.py: minutes a mutant)
  [gan/train]="$G"
  [gan/sample]="$G"
  [ist/transfer]="tests/test_ist.py tests/test_ist_device.py tests/test_mutants_ist.py"
)
# modules of which only some functions are in scope: mutmut's name patterns (fnmatch)
declare -A ONLY=(
  [l2p/networks]="kaogen.l2p.networks.x_pick_free__mutmut_*"
  [gan/train]="kaogen.gan.train.xǁGANTrainerǁsnapshot__mutmut_* kaogen.gan.train.xǁGANTrainerǁresume__mutmut_* kaogen.gan.train.xǁGANTrainerǁtrain__mutmut_*"
)
ORDER="render/coverage render/tiles render/composite render/export data/download data/metadata data/splits data/iiif data/datasets images checkpoint config l2p/refine l2p/plan l2p/distance l2p/networks gan/augment gan/ada gan/train gan/sample ist/transfer"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
MOD="${1%.py}"; MOD="${MOD#kaogen/}"; shift || true

if [ "$MOD" = list ]; then
  for m in $ORDER; do printf '%-18s %s\n' "$m" "${MODULES[$m]}"; done; exit 0
fi
if [ "$MOD" = all ]; then
  for m in $ORDER; do bash "$0" "$m" "$@" || echo "mutation.sh: $m failed (exit $?)"; done; exit 0
fi
[ -n "${MODULES[$MOD]+x}" ] || { echo "mutation.sh: unknown module $MOD (see: bash $0 list)" >&2; exit 2; }
command -v mutmut >/dev/null || { echo "mutation.sh: mutmut is not installed: pip install -e '.[mutation]'" >&2; exit 2; }

NAME="${MOD//\//.}"
WORK="$REPO/build/mutation/$NAME"
ACTION="${1:-fresh}"; [ $# -ge 1 ] && shift

TESTS=""
for t in ${MUTATION_TESTS:-${MODULES[$MOD]}}; do [ -f "$t" ] && TESTS="$TESTS $t"; done

export KAOGEN_CHECKPOINTS="$REPO/checkpoints"
# one torch thread per test process: several passes (and mutmut children) share the cores
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

write_pyproject() {
  # pyproject.toml for the pass: pytest's settings, and [tool.mutmut] narrowed to this module
  python - "$REPO/pyproject.toml" "$WORK/pyproject.toml" "kaogen/$MOD.py" $TESTS <<'PY'
import json, sys, tomllib
src, dst, module, *tests = sys.argv[1:]
data = tomllib.load(open(src, "rb"))
mm = dict(data.get("tool", {}).get("mutmut", {}))
mm["only_mutate"] = [module]
mm["pytest_add_cli_args_test_selection"] = tests
def val(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(val(x) for x in v) + "]"
    raise TypeError(f"[tool.mutmut] value {v!r} not supported here")
with open(dst, "w") as f:
    f.write("# written by benchmarks/mutation.sh for one module; edit the repository's pyproject.toml\n")
    f.write("[tool.pytest.ini_options]\n")
    for k, v in data.get("tool", {}).get("pytest", {}).get("ini_options", {}).items():
        f.write(f"{k} = {val(v)}\n")
    f.write("\n[tool.mutmut]\n")
    for k, v in mm.items():
        f.write(f"{k} = {val(v)}\n")
PY
}

if [ "$ACTION" = fresh ]; then
  rm -rf "$WORK"; mkdir -p "$WORK"
  cp -a kaogen tests configs benchmarks cli.py "$WORK"/
  find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
  [ -d "$REPO/../shared" ] && ln -s "$(cd "$REPO/../shared" && pwd)" "$WORK/shared"
  write_pyproject
  ACTION=run FIRST=fresh
fi
[ -d "$WORK" ] || { echo "mutation.sh: no pass for $MOD yet: bash $0 $MOD" >&2; exit 2; }
cd "$WORK"
# (processes the tests start, torchrun or a subprocess CLI, import the installed kaogen: unmutated.
# Pointing PYTHONPATH at mutants/ breaks mutmut's stats collection, so those tests cannot kill.)
export REPO MUTATION_ACTION="${FIRST:-$ACTION}" MUTATION_REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || true)"

summarise() {
  [ "${1:-}" = keep ] || mutmut results --all true > results.txt 2>/dev/null || true
  python - "$MOD" "$REPO/benchmarks/mutation-equivalent.txt" <<'PY'
import collections, datetime, os, re, subprocess, sys
sys.path.insert(0, os.path.join(os.environ["REPO"], "benchmarks"))
from mutation_equivalent import diff_hash, read_equivalents
counts = collections.Counter()
survivors = []
for line in open("results.txt"):
    m = re.match(r"\s*(\S+): (.+)$", line)
    if m:
        counts[m.group(2).strip()] += 1
        if m.group(2).strip() == "survived":
            survivors.append(m.group(1))
# survivors listed as equivalent count as such only while their mutation is still the one judged
known = read_equivalents(sys.argv[2])
equivalent, stale = [], []
for name in survivors:
    if name in known:
        (equivalent if diff_hash(name) == known[name][0] else stale).append(name)
left = [n for n in survivors if n not in equivalent]
killed = counts["killed"] + counts["timeout"] + counts["segfault"] + counts["caught by type check"]
tested = killed + counts["survived"]
rate = f"{100 * killed / tested:.1f} %" if tested else "n/a"
real = tested - len(equivalent)
rate_real = f"{100 * killed / real:.1f} %" if real else "n/a"
line = (f"kaogen/{sys.argv[1]}.py: {sum(counts.values())} mutants, killed {counts['killed']}, "
        f"timeout {counts['timeout']}, survived {counts['survived']} (equivalent {len(equivalent)}), "
        f"no tests {counts['no tests']}, skipped {counts['skipped']}, not checked {counts['not checked']}, "
        f"kill rate {rate} of tested, {rate_real} of the non-equivalent")
for name in stale:
    print(f"mutation.sh: {name} is listed as equivalent, but its mutation changed since: judge it again")
print(line)
open("summary.txt", "w").write(line + "\n")
with open(os.path.join(os.environ["REPO"], "build", "mutation", "history.txt"), "a") as f:
    f.write(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} {os.environ.get('MUTATION_REV', '')} "
            f"{os.environ.get('MUTATION_ACTION', '')} {line}\n")
open("survivors.txt", "w").write("".join(s + "\n" for s in left))
open("equivalent.txt", "w").write("".join(s + "\n" for s in equivalent))
PY
}

case "$ACTION" in
  rerun)                     # the repository's tests now, against the last pass' survivors and untested
    cp -a "$REPO"/tests/. tests/
    find tests -name __pycache__ -prune -exec rm -rf {} +
    # the survivors, and the mutants no test reached (a new test may reach them now); with
    # `rerun unchecked` also those this folder never ran (a pass over some functions only)
    { cat survivors.txt; sed -n 's/^ *\(\S*\): no tests$/\1/p' results.txt
      if [ "${1:-}" = unchecked ]; then sed -n 's/^ *\(\S*\): not checked$/\1/p' results.txt; fi; } > survivors-before.txt
    [ -s survivors-before.txt ] || { echo "mutation.sh: no survivors to rerun"; exit 0; }
    cp summary.txt summary-before.txt; cp results.txt results-before.txt
    write_pyproject          # the module's test files as they are now (mutmut then re-collects its stats)
    mutmut run --max-children "${MUTATION_JOBS:-1}" $(cat survivors-before.txt) || echo "mutation.sh: mutmut exited $?"
    # the verdicts of the last pass, with the survivors' new ones
    mutmut results --all true > results-now.txt 2>/dev/null || true
    python - results-before.txt results-now.txt survivors-before.txt > results.txt <<'PY'
import re, sys
def read(p):
    return dict(m.groups() for m in (re.match(r"\s*(\S+): (.+)$", l) for l in open(p)) if m)
before, now = read(sys.argv[1]), read(sys.argv[2])
for name in open(sys.argv[3]).read().split():
    before[name] = now.get(name, before.get(name))
for k, v in before.items():
    print(f"    {k}: {v}")
PY
    summarise keep
    echo "before: $(cat summary-before.txt)" ;;
  run)
    [ $# -eq 0 ] && [ -n "${ONLY[$MOD]+x}" ] && set -- ${ONLY[$MOD]}
    mutmut run --max-children "${MUTATION_JOBS:-1}" "$@" || echo "mutation.sh: mutmut exited $?"
    summarise ;;
  results) summarise keep; cat survivors.txt ;;   # the verdicts the last run or rerun wrote (mutmut itself
                             # forgets the others' verdicts once a rerun has copied new tests in)
  equivalent)                # equivalent NAME "reason": list a surviving mutant as equivalent (same behaviour)
    [ $# -ge 2 ] || { echo "mutation.sh: usage: $0 $MOD equivalent NAME 'why it behaves the same'" >&2; exit 2; }
    python "$REPO/benchmarks/mutation_equivalent.py" add "$REPO/benchmarks/mutation-equivalent.txt" "$1" "$2" ;;
  show) for m in "$@"; do mutmut show "$m"; done ;;
  *) mutmut "$ACTION" "$@" ;;
esac
