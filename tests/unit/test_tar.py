"""The archive format's ``TAR`` documents (stream version 4): any bytes split and join back
exactly, real tars of every flavour are taken apart record by record, and a release series whose
mtimes move stores far smaller deltas than before the transform."""

from __future__ import annotations

import gzip
import io
import random
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaglider_async._exceptions import IntegrityError
from deltaglider_async._formats import _document as document
from deltaglider_async._formats._tar import BLOCK, TarJoiner, _size, tar_split
from deltaglider_async._formats.archive import _encode_sync

from ..artifacts import source_tree
from .test_archive_format import PLAN, roundtrip


def _tar(version: int, fmt: int, *, stamp: float, files: int = 8) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        tree = source_tree(version, files=files, lines=960 // files)
        tree["pkg/" + "long-directory-name/" * 8 + "file.txt"] = b"long\n"
        tree["pkg/empty"] = b""
        for i, (name, body) in enumerate(tree.items()):
            info = tarfile.TarInfo(f"pkg-1.{version}/{name}")
            info.size, info.mtime = len(body), stamp + i + 0.5
            info.uname = "builder-" + "x" * (40 if fmt == tarfile.PAX_FORMAT else 8)
            archive.addfile(info, io.BytesIO(body))
        for kind, name in ((tarfile.SYMTYPE, "sym"), (tarfile.LNKTYPE, "hard")):
            link = tarfile.TarInfo(f"pkg-1.{version}/{name}")
            link.type, link.linkname, link.mtime = kind, f"pkg-1.{version}/pkg/empty", stamp
            archive.addfile(link)
        folder = tarfile.TarInfo(f"pkg-1.{version}/dir")
        folder.type, folder.mtime = tarfile.DIRTYPE, stamp
        archive.addfile(folder)
    return out.getvalue()


def _join(payload: bytes, count: int, chunk: int) -> bytes:
    joiner = TarJoiner(count, "t")
    out = [
        bytes(p)
        for at in range(0, len(payload), chunk)
        for p in joiner.feed(payload[at : at + chunk])
    ]
    joiner.finish()
    return b"".join(out)


def _splits_and_joins(data: bytes, chunks: tuple[int, ...] = (1 << 30, 4096, 777)) -> int:
    split = tar_split(data)
    if split is None:
        return 0
    count, parts = split
    payload = b"".join(parts)
    for chunk in chunks:
        assert _join(payload, count, chunk) == data, chunk
    return count


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tars_of_every_format_split_into_their_records_and_join_back(fmt: int) -> None:
    data = _tar(1, fmt, stamp=1_767_225_600)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = len(archive.getmembers())
    count = _splits_and_joins(data)
    # every header (and the extended ones a format needs) is a record: the walk reached the end
    assert count >= members
    split = tar_split(data)
    assert split is not None
    tail = bytes(split[1][-1])  # what follows the last record: the end blocks
    assert len(tail) < 20 * BLOCK and tail == bytes(len(tail))


def test_a_damaged_or_cut_tar_still_joins_exactly() -> None:
    data = bytearray(_tar(1, tarfile.PAX_FORMAT, stamp=1_767_225_600))
    whole = _splits_and_joins(bytes(data))
    cut = _splits_and_joins(bytes(data[: len(data) // 2 + 77]))
    assert 0 < cut < whole
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as archive:
        inside = archive.getmembers()[4].offset
    data[inside + 148] ^= 0x01  # a header's checksum somewhere inside: the walk stops there
    assert 0 < _splits_and_joins(bytes(data)) < whole
    assert _splits_and_joins(b"") == 0 and _splits_and_joins(bytes(4096)) == 0
    assert _splits_and_joins(b"\x1f\x8b" + bytes(1000)) == 0


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=3 * BLOCK),
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=1, max_value=2 * BLOCK),
)
def test_any_bytes_after_a_header_join_back_however_fed(noise: bytes, cut: int, chunk: int) -> None:
    header = _tar(1, tarfile.USTAR_FORMAT, stamp=0)[: BLOCK * cut]
    _splits_and_joins(header + noise, (chunk,))
    _splits_and_joins(noise, (chunk,))


def test_a_tar_segment_that_lies_fails_loudly() -> None:
    data = _tar(1, tarfile.GNU_FORMAT, stamp=1_767_225_600)
    split = tar_split(data)
    assert split is not None
    count, payload = split[0], b"".join(split[1])
    with pytest.raises(IntegrityError):
        _join(payload[: BLOCK * count - 1], count, 4096)
    with pytest.raises(IntegrityError):
        _join(payload[: BLOCK * count + 100], count, 4096)  # the body is cut short


def test_size_fields_octal_and_base_256() -> None:
    assert _size(b"00000001750\0") == 1000
    assert _size(b"     1750 \0\0") == 1000
    assert _size(b"\0" * 12) == 0
    assert _size(b"\x80" + (8 << 30).to_bytes(11, "big")) == 8 << 30
    assert _size(b"12a45\0\0\0\0\0\0\0") is None
    assert _size(b"\xff" * 12) is None


def test_a_release_series_whose_mtimes_move_stores_small_deltas(tmp_path: Path) -> None:
    def release(version: int) -> bytes:
        stamp = 1_767_225_600 + version * 3_600
        return gzip.compress(_tar(version, tarfile.PAX_FORMAT, stamp=stamp, files=96), mtime=0)

    old, new = release(1), release(2)
    assert roundtrip(old, new, tmp_path) == "archive"
    v4 = (tmp_path / "delta").stat().st_size
    form = document.reference_form(old, version=3)
    (tmp_path / "new").write_bytes(new)
    assert _encode_sync(form, tmp_path / "new", tmp_path / "v3", None, PLAN).result is not None
    assert v4 * 2 < (tmp_path / "v3").stat().st_size, (v4, (tmp_path / "v3").stat().st_size)


def test_gnu_tar_archives_round_trip(tmp_path: Path) -> None:
    rng = random.Random(3)
    for version in (1, 2):
        tree = tmp_path / f"src{version}" / "pkg"
        for name, body in source_tree(version, files=5, lines=80).items():
            path = tree / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        (tree / ("n" * 120)).write_bytes(rng.randbytes(3000))  # a GNU long name ('L')
        subprocess.run(
            ["tar", "czf", str(tmp_path / f"r{version}.tgz"), "-C", str(tree.parent), "."],
            check=True,
        )
    old, new = (tmp_path / "r1.tgz").read_bytes(), (tmp_path / "r2.tgz").read_bytes()
    assert _splits_and_joins(gzip.decompress(new)) > 10
    assert roundtrip(old, new, tmp_path) == "archive"


def test_mutated_tarballs_round_trip_or_fall_back(tmp_path: Path) -> None:
    from .golden import gzip_pinned

    rng = random.Random(4)
    tar = _tar(1, tarfile.PAX_FORMAT, stamp=1_767_225_600)
    reference = gzip_pinned(tar, 6)
    outcomes: dict[str, int] = {}
    for _ in range(250):
        mutated = bytearray(tar)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(mutated))
            if rng.random() < 0.7:  # headers too: sizes, checksums, types
                mutated[at] = rng.randrange(256)
            else:
                mutated[at:at] = rng.randbytes(rng.randint(1, 600))
        result = roundtrip(reference, gzip_pinned(bytes(mutated), 6), tmp_path)
        outcomes[result.split(" (")[0]] = outcomes.get(result.split(" (")[0], 0) + 1
    assert outcomes.get("archive", 0) > 225, outcomes
