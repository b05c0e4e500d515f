#!/usr/bin/env bash
# The main job: set everything up, then run the demo on a local SeaweedFS (see scripts/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec .venv/bin/python scripts/demo.py "$@"
