"""The older tool, deltaglider==6.2.0, in a venv of its own (for interop tests and benchmarks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OLD_VENV = Path(__file__).resolve().parents[1] / ".work" / "dg62"


def ensure_old_tool() -> Path:
    """Create ``.work/dg62`` with deltaglider 6.2.0 on first use; return the venv directory."""
    if not (OLD_VENV / "bin" / "deltaglider").exists():
        subprocess.run([sys.executable, "-m", "venv", str(OLD_VENV)], check=True)
        subprocess.run(
            [str(OLD_VENV / "bin" / "pip"), "install", "-q", "deltaglider==6.2.0"],
            check=True,
            capture_output=True,
        )
    return OLD_VENV
