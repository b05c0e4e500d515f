"""Where the compressed members of a zip or gzip file lie: pure parsing, no I/O (but for
:func:`file_expected_expansion`, which reads the few parts of a file that parsing needs).

Nothing here trusts the archive: a span is only a candidate (the archive format inflates it and
deflates it again, and keeps it only if that gives back the very bytes).  Whatever does not parse
is simply not a span, so every byte string has an answer.
"""

from __future__ import annotations

import io
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from xdelta_ffi import ZlibError, inflate_raw

#: zip members: stored and deflated; gzip members are always deflate
STORED: Final = 0
DEFLATED: Final = 8

_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64_LOCATOR = struct.Struct("<4sIQI")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_GZIP_FIXED = 10


@dataclass(frozen=True)
class Span:
    """``length`` bytes at ``offset`` that are one member's data, ``method`` compressed."""

    offset: int
    length: int
    method: int
    #: the level the container hints at (gzip's XFL), or None
    hint: int | None = None


def is_gzip(data: bytes | memoryview) -> bool:
    return len(data) >= 18 and data[0] == 0x1F and data[1] == 0x8B and data[2] == 8


def find_spans(data: bytes | memoryview) -> list[Span]:
    """Candidate member spans of ``data`` (zip or gzip), sorted, never overlapping."""
    view = memoryview(data)
    if is_gzip(view):
        return _gzip_spans(view)
    return _zip_spans(view)


def expected_expansion(data: bytes | memoryview) -> int:
    """The bytes ``data`` (zip or gzip) expands to if every deflated member re-deflates, as its
    container records the members' sizes (a zip's central directory, a gzip's ISIZE trailer),
    found without inflating anything; archives nested in members expand further.  Tells whether
    an expansion can be afforded before it is made."""
    view = memoryview(data)
    if is_gzip(view):
        return max(len(view), int.from_bytes(view[-4:], "little"))
    grown = sum(
        usize - csize for method, csize, usize, _ in _central_entries(view) if method == DEFLATED
    )
    return len(view) + max(0, grown)


def file_expected_expansion(file: io.BufferedIOBase, size: int) -> int:
    """:func:`expected_expansion` of an open file of ``size`` bytes, which reads its first bytes,
    its last 64 KiB and its central directory, into anonymous memory whose other pages are never
    touched (a file mapped instead would crash the process if it shrank meanwhile)."""
    if not size:
        return 0
    with mmap.mmap(-1, size) as buffer, memoryview(buffer) as view:

        def fill(start: int, stop: int) -> None:
            file.seek(start)
            file.readinto(view[start:stop])

        fill(0, min(size, _GZIP_FIXED + 8))
        fill(max(0, size - (0xFFFF + _EOCD.size + _EOCD64.size + _EOCD64_LOCATOR.size)), size)
        found = _find_eocd(view)
        if found is not None:
            fill(found[0], found[1])
        return expected_expansion(view)


def _central_entries(view: memoryview) -> Iterator[tuple[int, int, int, int]]:
    """(method, compressed size, size, local header offset in ``view``) of each entry of a
    zip's central directory, as far as it parses."""
    found = _find_eocd(view)
    if found is None:
        return
    cd_start, cd_end, base, entries = found
    pos = cd_start
    for _ in range(entries):
        if pos + _CENTRAL.size > cd_end:
            return
        fields = _CENTRAL.unpack_from(view, pos)
        if fields[0] != b"PK\x01\x02":
            return
        method, csize, usize = fields[4], fields[8], fields[9]
        name_len, extra_len, comment_len, local = fields[10], fields[11], fields[12], fields[16]
        extra = bytes(view[pos + 46 + name_len : pos + 46 + name_len + extra_len])
        usize, csize, local = _zip64_sizes(extra, usize, csize, local)
        pos += 46 + name_len + extra_len + comment_len
        yield method, csize, usize, base + local


def _zip_spans(view: memoryview) -> list[Span]:
    spans: list[Span] = []
    for method, csize, _, local in _central_entries(view):
        span = _member_data(view, local, csize, method)
        if span is not None:
            spans.append(span)
    spans.sort(key=lambda s: s.offset)
    kept: list[Span] = []
    for span in spans:  # duplicate or overlapping entries: keep the first of each region
        if not kept or span.offset >= kept[-1].offset + kept[-1].length:
            kept.append(span)
    return kept


def _find_eocd(view: memoryview) -> tuple[int, int, int, int] | None:
    """(central directory start, end, offset of the zip inside ``view``, entry count)."""
    size = len(view)
    if size < _EOCD.size:
        return None
    tail_start = max(0, size - (0xFFFF + _EOCD.size))
    tail = bytes(view[tail_start:])
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0:
        eocd = tail_start + at
        if eocd + _EOCD.size <= size:
            _, _, _, _, entries, cd_size, cd_offset, comment = _EOCD.unpack_from(view, eocd)
            if eocd + _EOCD.size + comment == size:
                anchor = eocd
                if 0xFFFF in (entries,) or 0xFFFFFFFF in (cd_size, cd_offset):
                    zip64 = _zip64_eocd(view, eocd)
                    if zip64 is None:
                        return None
                    anchor, entries, cd_size, cd_offset = zip64
                base = anchor - cd_size - cd_offset
                cd_start = base + cd_offset
                if base >= 0 and cd_start >= 0:
                    return cd_start, anchor, base, entries
                return None
        at = tail.rfind(b"PK\x05\x06", 0, at)
    return None


def _zip64_eocd(view: memoryview, eocd: int) -> tuple[int, int, int, int] | None:
    locator = eocd - _EOCD64_LOCATOR.size
    if locator < 0:
        return None
    sig, _, record, _ = _EOCD64_LOCATOR.unpack_from(view, locator)
    if sig != b"PK\x06\x07":
        return None
    # The record's offset is relative to the zip's start; with prepended data it sits just before
    # the locator, which is where zipfile looks for it too.
    at = locator - _EOCD64.size
    if at < 0 or bytes(view[at : at + 4]) != b"PK\x06\x06":
        at = record
        if at < 0 or at + _EOCD64.size > len(view) or bytes(view[at : at + 4]) != b"PK\x06\x06":
            return None
    fields = _EOCD64.unpack_from(view, at)
    return at, fields[7], fields[8], fields[9]


def _zip64_sizes(extra: bytes, usize: int, csize: int, local: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 1:
            values = [usize, csize, local]
            index = 0
            for slot in range(3):
                if values[slot] == 0xFFFFFFFF and index + 8 <= len(body):
                    values[slot] = struct.unpack_from("<Q", body, index)[0]
                    index += 8
            return values[0], values[1], values[2]
        pos += 4 + length
    return usize, csize, local


def _member_data(view: memoryview, local: int, csize: int, method: int) -> Span | None:
    if method not in (STORED, DEFLATED) or csize <= 0 or local < 0:
        return None
    if local + _LOCAL.size > len(view):
        return None
    fields = _LOCAL.unpack_from(view, local)
    if fields[0] != b"PK\x03\x04":
        return None
    start = local + _LOCAL.size + fields[9] + fields[10]
    if start + csize > len(view):
        return None
    return Span(start, csize, method)


def _gzip_spans(view: memoryview) -> list[Span]:
    """Each member's deflate stream of a (multi-member) gzip file."""
    spans: list[Span] = []
    pos = 0
    while is_gzip(view[pos:]):
        start = _gzip_body(view, pos)
        if start is None:
            break
        try:
            _, used = inflate_raw(view[start:])
        except ZlibError:
            break
        if start + used + 8 > len(view):
            break
        xfl = view[pos + 8]
        spans.append(Span(start, used, DEFLATED, 9 if xfl == 2 else 1 if xfl == 4 else None))
        pos = start + used + 8
    return spans


def _gzip_body(view: memoryview, pos: int) -> int | None:
    """Where the deflate data of the gzip member at ``pos`` starts (RFC 1952 header)."""
    flags = view[pos + 3]
    if flags & 0xE0:
        return None
    at = pos + _GZIP_FIXED
    if flags & 4:  # FEXTRA
        if at + 2 > len(view):
            return None
        at += 2 + view[at] + (view[at + 1] << 8)
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            end = bytes(view[at : at + 0x10000]).find(b"\0")
            if end < 0:
                return None
            at += end + 1
    if flags & 2:  # FHCRC
        at += 2
    return at if at < len(view) else None
