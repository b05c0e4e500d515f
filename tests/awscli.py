"""aws-cli from PyPI, the oracle of the CLI conformance tests, in a venv of its own (its
botocore pin differs from aiobotocore's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

AWSCLI_VERSION = "1.46.3"
AWSCLI_VENV = Path(__file__).resolve().parents[1] / ".work" / f"awscli-{AWSCLI_VERSION}"


def ensure_awscli() -> Path:
    """Create the venv with ``awscli==AWSCLI_VERSION`` on first use; return the ``aws`` script."""
    aws = AWSCLI_VENV / "bin" / "aws"
    if not aws.exists():
        subprocess.run([sys.executable, "-m", "venv", str(AWSCLI_VENV)], check=True)
        subprocess.run(
            [str(AWSCLI_VENV / "bin" / "pip"), "install", "-q", f"awscli=={AWSCLI_VERSION}"],
            check=True,
            capture_output=True,
        )
    return aws
