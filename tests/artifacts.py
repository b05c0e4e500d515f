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


def source_tree(
    version: int, *, files: int = 30, lines: int = 300, seed: int = 11
) -> dict[str, bytes]:
    """Text members (like a package's sources) of which a few lines change per version."""
    rng = random.Random(seed)
    words = [rng.randbytes(4).hex() for _ in range(400)]
    tree = {
        f"pkg/module_{i:02d}.py": [
            " ".join(rng.choice(words) for _ in range(8)) for _ in range(lines)
        ]
        for i in range(files)
    }
    for v in range(1, version + 1):
        changed = random.Random(seed * 1000 + v)
        for _ in range(3):
            body = tree[f"pkg/module_{changed.randrange(files):02d}.py"]
            body[changed.randrange(lines)] = f"version = {v}  # {changed.randbytes(6).hex()}"
    tree["pkg/VERSION"] = [f"1.{version}.0"]
    return {name: ("\n".join(body) + "\n").encode() for name, body in tree.items()}


def deflated_zip(version: int, *, level: int = 6, nested: bool = False, seed: int = 11) -> bytes:
    """A wheel-like zip of deflated text members (optionally holding a jar and a .gz); another
    ``seed`` is another project."""
    import gzip

    out = io.BytesIO()
    stamp = (2026, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, body in source_tree(version, seed=seed).items():
            zf.writestr(zipfile.ZipInfo(name, date_time=stamp), body, zipfile.ZIP_DEFLATED)
        if nested:
            inner = deflated_zip(version + 100, level=level)
            zf.writestr(
                zipfile.ZipInfo("lib/inner.jar", date_time=stamp), inner, zipfile.ZIP_DEFLATED
            )
            data = b"".join(source_tree(version, files=4).values())
            zf.writestr(
                zipfile.ZipInfo("data/model.json.gz", date_time=stamp),
                gzip.compress(data, mtime=0),
                zipfile.ZIP_STORED,
            )
    return out.getvalue()


def release_tarball(version: int) -> bytes:
    """A ``.tar.gz`` as Python's tarfile writes it (one gzip stream, level 9)."""
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, body in source_tree(version).items():
            info = tarfile.TarInfo(f"pkg-1.{version}/{name}")
            info.size = len(body)
            info.mtime = 1_767_225_600
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()
