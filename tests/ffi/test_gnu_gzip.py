"""GNU gzip's deflate, re-implemented in the extension: byte for byte what Debian's ``gzip -N``
writes, at every level, however the input is fed."""

from __future__ import annotations

import random
import shutil
import subprocess
import zlib

import pytest

import xdelta_ffi
from xdelta_ffi import GNU_GZIP, Deflater, deflate_matches, deflate_raw

from ..artifacts import source_tree


def _samples() -> dict[str, bytes]:
    rnd = random.Random(7)
    text = b"".join(source_tree(1).values())
    mixed = b"".join(
        rnd.choice(
            [rnd.randbytes(rnd.randint(1, 4000)), b"abc" * rnd.randint(1, 2000), bytes(5000)]
        )
        for _ in range(120)
    )
    return {
        "empty": b"",
        "one byte": b"x",
        "short text": b"hello hello hello world\n" * 7,
        "source text": text * 3,
        "random": rnd.randbytes(150_000),
        "zeros": bytes(200_000),
        "mixed": mixed,
    }


SAMPLES = _samples()


def gnu_gzip(data: bytes, level: int) -> bytes:
    """The raw deflate body of ``gzip -n -level``: its 10-byte header and 8-byte trailer cut."""
    assert shutil.which("gzip"), "gzip is part of every Debian system"
    out = subprocess.run(
        ["gzip", "-n", f"-{level}"], input=data, capture_output=True, check=True
    ).stdout
    return out[10:-8]


def _fed_in_pieces(data: bytes, level: int, largest: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    deflater = Deflater(level, GNU_GZIP)
    out = []
    pos = 0
    while pos < len(data):
        step = rnd.randint(1, largest)
        out.append(deflater.compress(data[pos : pos + step]))
        pos += step
    out.append(deflater.compress(b"", finish=True))
    assert deflater.finished
    return b"".join(out)


@pytest.mark.parametrize("level", range(1, 10))
def test_every_level_matches_gnu_gzip(level: int) -> None:
    for name, data in SAMPLES.items():
        expected = gnu_gzip(data, level)
        assert deflate_raw(data, level, GNU_GZIP) == expected, name
        assert _fed_in_pieces(data, level, 300, level) == expected, name
        assert _fed_in_pieces(data, level, 70_000, level) == expected, name
        assert deflate_matches(data, expected, level, GNU_GZIP), name
        if expected:
            flipped = expected[:-1] + bytes([expected[-1] ^ 1])
            assert not deflate_matches(data, flipped, level, GNU_GZIP), name
            assert not deflate_matches(data, expected[:-1], level, GNU_GZIP), name


def test_gnu_gzip_is_not_zlib_and_the_output_inflates() -> None:
    data = SAMPLES["source text"] + SAMPLES["mixed"]
    expected = gnu_gzip(data, 6)
    assert zlib.decompress(expected, -15) == data
    assert not deflate_matches(data, expected, 6, 8)
    assert xdelta_ffi.inflate_raw(expected)[0] == data


def test_a_large_input_across_many_window_slides() -> None:
    rnd = random.Random(3)
    words = [rnd.randbytes(rnd.randint(2, 9)) for _ in range(3000)]
    data = b" ".join(rnd.choice(words) for _ in range(1_500_000))[: 9 << 20]
    expected = gnu_gzip(data, 6)
    assert _fed_in_pieces(data, 6, 1 << 20, 1) == expected


def test_bad_levels_are_refused() -> None:
    for level in (0, 10, -1):
        with pytest.raises(xdelta_ffi.ZlibError):
            Deflater(level, GNU_GZIP)
    finished = Deflater(6, GNU_GZIP)
    finished.compress(b"abc", finish=True)
    with pytest.raises(xdelta_ffi.ZlibError):
        finished.compress(b"more")
