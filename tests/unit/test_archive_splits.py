"""Split points (stream version 6): a large zlib member's deflate resumes at byte-aligned block
boundaries, so that several cores rebuild it, chunk by chunk, to the very bytes; anything that
does not resume exactly is joined to the chunk before it or kept unsplit, never stored wrong."""

from __future__ import annotations

import binascii
import itertools
from pathlib import Path

import pytest

import xdelta_ffi
from deltaglider_async._exceptions import IntegrityError
from deltaglider_async._formats import _document as document
from deltaglider_async._formats._document import (
    DEFLATE,
    RAW,
    Segment,
    parse_table,
    reference_form,
)

from ..artifacts import source_tree
from .golden import GOLDEN, golden_python_tarball
from .test_archive_format import assert_rebuilds_however_fed, encoded_expansion, roundtrip

GNU = xdelta_ffi.GNU_GZIP
SPLITTABLE = [(4, 8), (6, 8), (9, 8), (6, 9), (4, GNU), (6, GNU), (9, GNU)]


@pytest.fixture(scope="module")
def tar() -> bytes:
    """3.6 MB of source text: several deflate blocks that end on a byte, at every level."""
    return b"".join(source_tree(1, files=20, lines=2500).values())


def _segment(
    data: bytes, compressed: bytes, params: document.Params, splits: tuple[document.Split, ...]
) -> Segment:
    crc = binascii.crc32(compressed)
    return Segment(DEFLATE, len(compressed), len(data), 0, *params, crc, len(data), splits=splits)


def _match(
    data: bytes, compressed: bytes, params: document.Params
) -> tuple[document.Split, ...] | None:
    view = memoryview(compressed)
    return document._split_match(data, view, params, document._split_points(len(data), view))


@pytest.mark.parametrize("params", SPLITTABLE)
def test_members_rebuild_chunk_by_chunk_however_they_are_fed(
    tar: bytes, params: document.Params
) -> None:
    compressed = xdelta_ffi.deflate_raw(tar, *params)
    splits = _match(tar, compressed, params)
    assert splits
    assert all(b[0] - a[0] >= document.SPLIT_CHUNK for a, b in itertools.pairwise(splits))
    seg = _segment(tar, compressed, params, splits)
    assert document._deflate_split(seg, tar, "t") == compressed
    for piece in (1_000, 300_000, len(tar)):
        deflater = document._SplitDeflater(seg, "t")
        out = [deflater.compress(tar[i : i + piece]) for i in range(0, len(tar), piece)]
        assert b"".join(out) + deflater.compress(b"", finish=True) == compressed


def test_other_settings_do_not_match_when_split(tar: bytes) -> None:
    compressed = xdelta_ffi.deflate_raw(tar, 9)
    for other in [(6, 8), (9, GNU), (4, 8)]:
        assert _match(tar, compressed, other) is None
    assert not document.splittable((1, 8))  # deflate_fast does not hash every position
    assert not document.splittable((3, GNU))
    assert not document.splittable((6, xdelta_ffi.MINIZ))


def test_a_point_that_does_not_resume_is_dropped(
    tar: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    compressed = xdelta_ffi.deflate_raw(tar, 9)
    points = document._split_points(len(tar), memoryview(compressed))
    assert len(points) >= 3
    bad = points[1][0]
    resume = xdelta_ffi.deflate_resume

    def flaky(contents: memoryview, begin: int, *args: object, **kw: object) -> bytes | None:
        at = bad - 32768
        if begin == 32768 and bytes(contents[:64]) == tar[at : at + 64]:
            return None  # as if zlib's lazy-match state at ``bad`` were not all in its window
        return resume(contents, begin, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(document, "deflate_resume", flaky)
    splits = _match(tar, compressed, (9, 8))
    assert splits is not None and bad not in [p[0] for p in splits]
    assert splits == tuple(p for p in points[1:] if p[0] != bad)
    monkeypatch.undo()
    assert (
        document._deflate_split(_segment(tar, compressed, (9, 8), splits), tar, "t") == compressed
    )


def test_wrong_split_points_fail_loudly(tar: bytes) -> None:
    compressed = xdelta_ffi.deflate_raw(tar, 9)
    splits = _match(tar, compressed, (9, 8))
    assert splits
    (contents, at), *rest = splits
    for wrong in [((contents, at + 1), *rest), ((contents + 1, at), *rest)]:
        with pytest.raises(IntegrityError, match="does not rebuild byte-exact"):
            document._deflate_split(_segment(tar, compressed, (9, 8), tuple(wrong)), tar, "t")


def test_the_table_carries_split_points_and_refuses_misplaced_ones(tar: bytes) -> None:
    compressed = xdelta_ffi.deflate_raw(tar, 9)
    splits = _match(tar, compressed, (9, 8))
    assert splits
    seg = _segment(tar, compressed, (9, 8), splits)
    raw = Segment(RAW, 5, 5)
    assert parse_table(raw.encode(0) + seg.encode(0)) == [raw, seg]
    entry = seg.encode(0)
    points = document._encode_splits(splits)
    assert entry.startswith(points)
    for table in (
        points + raw.encode(0),  # before a RAW
        raw.encode(0) + points,  # at the end
        points + points + entry[len(points) :],  # twice
        bytes([document.SPLITS, 0]) + entry[len(points) :],  # none
    ):
        with pytest.raises(IntegrityError, match="split points"):
            parse_table(table)
    miniz = Segment(DEFLATE, len(compressed), len(tar), 0, 9, xdelta_ffi.MINIZ, 0, len(tar))
    with pytest.raises(IntegrityError, match="split points"):
        parse_table(points + miniz.encode(0))


@pytest.mark.parametrize("kind", ["pytgz", "gnutgz"])
def test_large_tarballs_are_stored_split_and_rebuild_as_a_stream(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = GOLDEN[kind](1), GOLDEN[kind](2)
    assert roundtrip(old, new, tmp_path) == "archive"
    form, segments, expanded = encoded_expansion(old, new, tmp_path)
    [tar_member] = [s for s in segments if s.kind == document.DEFLATE_NESTED]
    assert tar_member.splits
    monkeypatch.setattr(document, "STREAM_MEMBER", 1 << 20)  # the tar's document is streamed
    assert_rebuilds_however_fed(form, segments, expanded, new)


def test_version_5_writes_no_split_points() -> None:
    old, new = golden_python_tarball(1), golden_python_tarball(2)
    form = reference_form(old, version=5)
    head, _ = document.Expander(form, version=5).expand(new)
    assert not any(s.splits for s in document.parse_head(head).segments)


def test_a_member_that_differs_inside_a_chunk_is_tried_as_one_stream(
    tar: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    compressed = xdelta_ffi.deflate_raw(tar, 9)
    points = document._split_points(len(tar), memoryview(compressed))
    assert len(points) >= 3
    resume = xdelta_ffi.deflate_resume
    calls = []

    def diverging(contents: memoryview, begin: int, *args: object, **kw: object) -> bytes | None:
        # as if the producer had differed from zlib near the end: a resumed chunk that runs to
        # the end fails, however the chunks are joined
        calls.append(begin)
        if begin and kw["finish"]:
            return None
        return resume(contents, begin, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(document, "deflate_resume", diverging)
    assert _match(tar, compressed, (9, 8)) == ()  # the one stream (not resumed) does match
    assert len(calls) <= 2 * len(points)
