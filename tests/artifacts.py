"""Deterministic, realistic versioned artifacts for tests (zip releases that differ a little)."""

from __future__ import annotations

import io
import random
import zipfile


def release_zip(version: int, *, files: int = 40, file_size: int = 8 << 10, seed: int = 7) -> bytes:
    """A zip whose members mostly stay the same between versions; a few change per version."""
    rng = random.Random(seed)
    bodies = [rng.randbytes(file_size) for _ in range(files)]
    for v in range(1, version + 1):
        changed = random.Random(seed * 1000 + v)
        for _ in range(2):
            i = changed.randrange(files)
            body = bytearray(bodies[i])
            at = changed.randrange(len(body) - 32)
            body[at : at + 32] = changed.randbytes(32)
            bodies[i] = bytes(body)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        # Fixed timestamps: writestr(name) would stamp the current time and break determinism.
        stamp = (2026, 1, 1, 0, 0, 0)
        zf.writestr(zipfile.ZipInfo("VERSION", date_time=stamp), f"1.{version}.0\n")
        for i, body in enumerate(bodies):
            zf.writestr(zipfile.ZipInfo(f"lib/module_{i:03d}.bin", date_time=stamp), body)
    return out.getvalue()
