#!/usr/bin/env bash
# The main job: set everything up, then run the demo on a local SeaweedFS (see cli/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m deltaglider_cli.demo "$@"
