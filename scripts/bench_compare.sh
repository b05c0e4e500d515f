#!/usr/bin/env bash
# Side-by-side check that a change made nothing slower: the quick sdk, transfers and cache parts
# of an older revision and of the working tree's HEAD, alternated for ROUNDS rounds (each run
# in its own worktree with this checkout's compiled codec; which goes first alternates), medians
# written to benchmarks/results/compare.md.  Usage: scripts/bench_compare.sh OLD_REV [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/setup.sh >/dev/null
old=$(git rev-parse --short "${1:?usage: scripts/bench_compare.sh OLD_REV [ROUNDS]}")
new=$(git rev-parse --short HEAD)
rounds=${2:-3}
work=$(mktemp -d)
trap 'for r in "$old" "$new"; do git worktree remove --force "$work/$r" 2>/dev/null || true; done; rm -rf "$work"' EXIT
for rev in "$old" "$new"; do
  git worktree add -f "$work/$rev" "$rev" >/dev/null 2>&1
  ln -sfn "$work/$rev/cli" "$work/$rev/deltaglider_cli"
  cp xdelta_ffi/*.so "$work/$rev/xdelta_ffi/"
  mkdir -p benchmarks/.cache && ln -sfn "$root/benchmarks/.cache" "$work/$rev/benchmarks/.cache"
done
log="$work/runs.log"
for round in $(seq "$rounds"); do
  # Which revision goes first alternates, so that neither always runs on a machine the other
  # has just warmed (or loaded).
  order="$new $old"
  [ $((round % 2)) -eq 0 ] && order="$old $new"
  for rev in $order; do
    for part in sdk transfers cache; do
      echo "== $rev $part" >>"$log"
      if ! (cd "$work/$rev" && PYTHONPATH="$work/$rev" "$root/.venv/bin/python" -m "benchmarks.$part" \
        --quick 2>&1 | grep -E '^\| (64 MiB|20 ms) ' >>"$log"); then
        echo "benchmarks.$part failed at $rev" >&2
        exit 1
      fi
    done
  done
done
.venv/bin/python - "$log" "$old" "$new" "$rounds" <<'PY'
import re, statistics, sys
from pathlib import Path
log, old, new, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows: dict[tuple[str, str], list[list[str]]] = {}
current = None
for line in Path(log).read_text().splitlines():
    if line.startswith("== "):
        current = tuple(line[3:].split())
        continue
    cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
    rows.setdefault(current, []).append(cells)
def med(rev, part, row, col):
    runs = rows.get((rev, part), [])
    picked = [runs[i] for i in range(row, len(runs), {"sdk": 1, "transfers": 3, "cache": 1}[part])]
    return statistics.median(float(re.match(r"[-+]?[\d.]+", p[col].replace("+-", "-")).group()) for p in picked)
measures = [
    ("SDK put 64 MiB, s", "sdk", 0, 1), ("SDK get 64 MiB, s", "sdk", 0, 4),
    ("put × deltaglider 6.2", "sdk", 0, 3), ("get × deltaglider 6.2", "sdk", 0, 6),
    ("upload 256 MiB @20 ms, MB/s", "transfers", 0, 1), ("upload × boto3", "transfers", 0, 3),
    ("download 256 MiB @20 ms, MB/s", "transfers", 0, 4), ("download × boto3", "transfers", 0, 6),
    ("client CPU, upload, s", "transfers", 1, 1), ("client CPU, download, s", "transfers", 1, 3),
    ("bulk 20 releases @20 ms, s", "transfers", 2, 2), ("bulk × 6.2 CLI", "transfers", 2, 6),
    ("encode from the encrypted cache, overhead %", "cache", 0, 3),
]
lines = [f"## Before and after: {old} vs {new}", "",
         f"`scripts/bench_compare.sh {old}`: the quick sdk, transfers and cache parts of both "
         f"revisions alternated for {rounds} rounds on one machine (each round's first alternates); medians.", "",
         f"| measure | {old} | {new} |", "|---|---|---|"]
for name, part, row, col in measures:
    lines.append(f"| {name} | {med(old, part, row, col):.2f} | {med(new, part, row, col):.2f} |")
out = Path("benchmarks/results/compare.md")
out.write_text("\n".join(lines) + "\n")
print(out.read_text())
PY
