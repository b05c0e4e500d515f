"""The streaming body: every way of reading it is checked, and big pieces are passed on whole."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from deltaglider_async import IntegrityError
from deltaglider_async._body import StreamingBody

PIECES = [b"a" * 10, b"b" * 3, b"c" * 2, b"d" * 40, b"e"]
DATA = b"".join(PIECES)


async def _stream() -> AsyncIterator[bytes]:
    for piece in PIECES:
        yield piece


def _body(sha256: str = hashlib.sha256(DATA).hexdigest()) -> StreamingBody:
    return StreamingBody(
        _stream(),
        what="s3://b/k",
        expected_sha256=sha256,
        expected_size=len(DATA),
        content_length=None,
    )


async def test_pieces_join_small_ones_and_pass_big_ones_whole() -> None:
    body = _body()
    got = [piece async for piece in body.pieces(12)]
    assert got == [b"a" * 10 + b"b" * 3, b"c" * 2 + b"d" * 40, b"e"]
    assert body.verified


async def test_pieces_after_a_read_start_with_what_the_read_left() -> None:
    body = _body()
    assert await body.read(4) == b"aaaa"
    rest = [piece async for piece in body.pieces()]
    assert b"".join(rest) == DATA[4:]
    assert rest[1:] == PIECES[1:]
    assert body.verified


async def test_reads_of_exact_pieces_and_of_slices_agree() -> None:
    body = _body()
    assert await body.read(10) == PIECES[0]
    assert await body.read(4) == b"bbbc"
    assert await body.read() == DATA[14:]
    assert body.verified


async def test_a_wrong_digest_fails_at_the_end_of_the_pieces() -> None:
    body = _body("0" * 64)
    with pytest.raises(IntegrityError, match="SHA-256 mismatch"):
        async for _ in body.pieces():
            pass
