#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then lint, format check, mypy --strict, and the whole pytest suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k codec -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "== ruff" >&2
ruff check .
ruff format --check .
echo "== mypy --strict" >&2
mypy
echo "== pytest" >&2
pytest -q -p no:cacheprovider "$@"
