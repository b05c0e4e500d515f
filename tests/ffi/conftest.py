from __future__ import annotations

import random
import shutil

import pytest


@pytest.fixture(scope="session")
def xdelta3_cli() -> str:
    """Debian's xdelta3 binary: scripts/setup.sh installs it, so its absence is a failure."""
    path = shutil.which("xdelta3")
    if path is None:
        pytest.fail("the xdelta3 binary is missing: run scripts/setup.sh (apt-get install xdelta3)")
    return path


def versioned_pair(size: int, seed: int = 1) -> tuple[bytes, bytes]:
    """A reference and a 'next release' of it: scattered edits plus an insertion that shifts."""
    rng = random.Random(seed)
    source = rng.randbytes(size)
    target = bytearray(source)
    for _ in range(max(1, size // (256 * 1024))):
        at = rng.randrange(len(target))
        target[at : at + 64] = rng.randbytes(64)
    at = rng.randrange(len(target))
    target[at:at] = rng.randbytes(4096)
    return source, bytes(target)
