#!/usr/bin/env bash
# Benchmarks side by side with the alternatives; results in benchmarks/results/ (JSON + markdown).
# --quick: fewer sizes and repeats (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -c 'import matplotlib' 2>/dev/null || .venv/bin/python -m pip install -q -e '.[bench]'
exec .venv/bin/python -m benchmarks "$@"
