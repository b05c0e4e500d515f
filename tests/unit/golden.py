"""Archives whose bytes are the same on every machine (built with the extension's own pinned
deflaters, never the system's zlib), and objects the archive format wrote for them: the golden
files under ``data/`` must decode forever.  ``python -m tests.unit.golden`` writes them; run it
only for a new stream version, never to "fix" a failing test."""

from __future__ import annotations

import binascii
import io
import struct
import zipfile
from pathlib import Path

import xdelta_ffi

from ..artifacts import source_tree

DATA = Path(__file__).parent / "data"
#: (level, mem_level) of the deflaters the members take turns with: zlib, GNU gzip, miniz
DEFLATERS = ((6, 8), (9, xdelta_ffi.GNU_GZIP), (6, xdelta_ffi.MINIZ))


class _Pinned:
    def __init__(self, level: int, mem_level: int) -> None:
        self._deflater = xdelta_ffi.Deflater(level, mem_level)

    def compress(self, data: bytes) -> bytes:
        return self._deflater.compress(data)

    def flush(self) -> bytes:
        return self._deflater.compress(b"", finish=True)


def gzip_pinned(data: bytes, level: int = 9, mtime: int = 0) -> bytes:
    """What GNU ``gzip -n -<level>`` writes (no name) at ``mtime``."""
    xfl = {9: 2, 1: 4}.get(level, 0)
    header = b"\x1f\x8b\x08\x00" + mtime.to_bytes(4, "little") + bytes([xfl, 3])
    body = xdelta_ffi.deflate_raw(data, level, xdelta_ffi.GNU_GZIP)
    return header + body + struct.pack("<II", binascii.crc32(data), len(data) & 0xFFFFFFFF)


def golden_archive(version: int) -> bytes:
    """A wheel-like zip: text members deflated in turn by each pinned deflater, a large one by
    GNU gzip's (small ones come out the same from zlib), and a stored ``.json.gz`` nested in it."""
    tree = source_tree(version, files=6, lines=300)
    members = [
        (name, body, DEFLATERS[i % len(DEFLATERS)]) for i, (name, body) in enumerate(tree.items())
    ]
    members.append(("pkg/all.txt", b"".join(tree.values()), DEFLATERS[1]))
    chosen = iter([params for _, _, params in members])
    original = zipfile._get_compressor  # type: ignore[attr-defined]

    def compressor(compress_type: int, level: int | None = None) -> _Pinned | None:
        if compress_type != zipfile.ZIP_DEFLATED:
            return None
        return _Pinned(*next(chosen))

    stamp = (2026, 1, 1, 0, 0, 0)
    out = io.BytesIO()
    zipfile._get_compressor = compressor  # type: ignore[attr-defined]
    try:
        with zipfile.ZipFile(out, "w") as zf:
            for name, body, _ in members:
                zf.writestr(zipfile.ZipInfo(name, date_time=stamp), body, zipfile.ZIP_DEFLATED)
            model = b"".join(source_tree(version + 50, files=3, lines=60).values())
            zf.writestr(
                zipfile.ZipInfo("pkg/data/model.json.gz", date_time=stamp),
                gzip_pinned(model),
                zipfile.ZIP_STORED,
            )
    finally:
        zipfile._get_compressor = original  # type: ignore[attr-defined]
    return out.getvalue()


def golden_tarball(version: int) -> bytes:
    """A ``.tar.gz`` as ``tar cf - | gzip -n -6`` writes it."""
    import tarfile

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, body in source_tree(version, files=6, lines=300).items():
            info = tarfile.TarInfo(f"pkg-1.{version}/{name}")
            info.size, info.mtime, info.mode = len(body), 1_767_225_600, 0o644
            info.uname = info.gname = "build"
            archive.addfile(info, io.BytesIO(body))
    return gzip_pinned(tar.getvalue(), 6)


def golden_gzipped_data(version: int) -> bytes:
    """A zip of ``gzip -6`` files, as botocore's wheels hold its models: zlib and GNU gzip
    deflate the small ones alike, only GNU gzip reproduces the large ones (stream version 3
    expands those)."""
    small = source_tree(version, files=8, lines=12)
    large = source_tree(version + 20, files=2, lines=4000, seed=23)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for folder, name, body in [
            *(("small", n, b) for n, b in small.items()),
            *(("large", n, b) for n, b in large.items()),
        ]:
            zf.writestr(
                zipfile.ZipInfo(f"{folder}/{name}.gz", date_time=(2026, 1, 1, 0, 0, 0)),
                gzip_pinned(body, 6),
                zipfile.ZIP_STORED,
            )
    return out.getvalue()


def golden_pax_tarball(version: int) -> bytes:
    """A pax ``.tar.gz`` as an sdist build writes it: every member's mtime (in its header and in
    an extended header) moves with each release, a long name, a directory and a symlink."""
    import tarfile

    tar = io.BytesIO()
    stamp = 1_767_225_600 + version * 86_400
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as archive:
        folder = tarfile.TarInfo(f"pkg-1.{version}")
        folder.type, folder.mtime, folder.mode = tarfile.DIRTYPE, stamp, 0o755
        archive.addfile(folder)
        tree = source_tree(version, files=6, lines=300)
        tree["pkg/" + "deeply/" * 20 + "nested.txt"] = b"a name longer than 100 bytes\n"
        for i, (name, body) in enumerate(tree.items()):
            info = tarfile.TarInfo(f"pkg-1.{version}/{name}")
            info.size, info.mode = len(body), 0o644
            info.mtime = stamp + i + 0.25  # fractional: a pax mtime record for every member
            archive.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo(f"pkg-1.{version}/latest")
        link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "pkg/VERSION", stamp
        archive.addfile(link)
    return gzip_pinned(tar.getvalue(), 6)


def _vendored_tar(version: int) -> bytes:
    """4 MiB of tar: large enough that its deflate stream gets split points (stream version 6),
    of vendored copies of one tree further apart than deflate's window, so that xz keeps the
    golden files small."""
    import tarfile

    base = source_tree(version, files=3, lines=1200)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for copy in range(16):
            for name, body in base.items():
                body = body.replace(b"def ", b"def v%d_" % copy)
                info = tarfile.TarInfo(f"pkg-1.{version}/vendor{copy}/{name}")
                info.size, info.mtime, info.mode = len(body), 1_767_225_600, 0o644
                archive.addfile(info, io.BytesIO(body))
    return tar.getvalue()


def golden_python_tarball(version: int) -> bytes:
    """That tar as Python's ``tarfile`` (``w:gz``: zlib at level 9) writes it."""
    data = _vendored_tar(version)
    header = b"\x1f\x8b\x08\x00" + (1_767_225_600).to_bytes(4, "little") + b"\x02\xff"
    body = xdelta_ffi.deflate_raw(data, 9)
    return header + body + struct.pack("<II", binascii.crc32(data), len(data) & 0xFFFFFFFF)


GOLDEN = {
    "zip": golden_archive,
    "tgz": golden_tarball,
    "gzdata": golden_gzipped_data,
    "paxtgz": golden_pax_tarball,
    "pytgz": golden_python_tarball,
    "gnutgz": lambda version: gzip_pinned(_vendored_tar(version), 5),  # tar c | gzip -5
}


def _write() -> None:
    """Writes only what is missing: the files of earlier versions are what readers must read."""
    DATA.mkdir(exist_ok=True)
    for kind, make in GOLDEN.items():
        _write_one(kind, make(1), make(2))


def _write_one(kind: str, old: bytes, new: bytes) -> None:
    import hashlib
    import tempfile

    from deltaglider_async._engine.codec import encoder_plan
    from deltaglider_async._engine.memory import DEFAULT_LIMIT
    from deltaglider_async._formats._document import STREAM_VERSIONS, reference_form
    from deltaglider_async._formats.archive import _encode_sync, encode_reference_sync

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "old").write_bytes(old)
        (Path(tmp) / "new").write_bytes(new)
        reference = DATA / f"golden-{kind}-reference.bin"
        if not reference.exists():
            assert encode_reference_sync(Path(tmp) / "old", Path(tmp) / "ref") is not None
            reference.write_bytes((Path(tmp) / "ref").read_bytes())
        print(
            kind,
            "reference",
            hashlib.sha256(old).hexdigest(),
            "file",
            hashlib.sha256(new).hexdigest(),
        )
        for version in STREAM_VERSIONS:
            form = reference_form(old, version=version)
            print(kind, version, "source form", hashlib.sha256(form.source).hexdigest())
            delta = DATA / f"golden-{kind}-delta-v{version}.bin"
            if delta.exists():
                continue
            plan = encoder_plan(len(form.source), DEFAULT_LIMIT, in_memory=True)
            encoded = _encode_sync(form, Path(tmp) / "new", Path(tmp) / "delta", None, plan)
            assert encoded.result is not None
            delta.write_bytes((Path(tmp) / "delta").read_bytes())


if __name__ == "__main__":
    _write()
