"""Reading a VCDIFF header for xdelta3's external-compression marker (deltaglider 6.2's
``.tar.gz`` deltas were made of the decompressed contents)."""

from __future__ import annotations

import xdelta_ffi
from deltaglider_async._core.vcdiff_header import app_header, external_compression


def _header(indicator: int, app: bytes, secondary: bool = True) -> bytes:
    head = b"\xd6\xc3\xc4\x00" + bytes([indicator]) + (b"\x02" if secondary else b"")
    return head + bytes([len(app)]) + app + b"\x00" * 16


def test_the_62_tar_gz_marker_is_found() -> None:
    # as deltaglider 6.2 (xdelta3 3.0.11 -e -9 -s) writes it for pkg-0.2.tar.gz
    head = _header(0x05, b"pkg-0.2.tar.gz/G/940b94038dd5/G/")
    assert app_header(head) == b"pkg-0.2.tar.gz/G/940b94038dd5/G/"
    assert external_compression(head) == "gzip"


def test_plain_deltas_have_no_marker() -> None:
    assert external_compression(_header(0x05, b"app-1.2.zip//0216d26c74b7/")) is None
    assert external_compression(_header(0x04, b"x//y/", secondary=False)) is None
    assert external_compression(_header(0x01, b"")) is None
    ours = xdelta_ffi.encode(b"reference bytes " * 100, b"reference bytes! " * 100)
    assert external_compression(ours) is None


def test_short_or_foreign_input_says_nothing() -> None:
    for head in (
        b"",
        b"\xd6\xc3",
        b"\xd6\xc3\xc4\x00\x05",
        b"PK\x03\x04" * 8,
        b"\xd6\xc3\xc4\x00\x07\x02",
    ):
        assert app_header(head) is None
        assert external_compression(head) is None
    truncated = _header(0x05, b"pkg.tar.gz/G/ref/G/")[:12]
    assert external_compression(truncated) is None
