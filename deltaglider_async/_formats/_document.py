"""The archive format's expanded document: an archive as segments that rebuild it byte-exact.

An archive becomes a *document*: a table of segments and their payload.  A segment is bytes kept
as they are (``RAW``), bytes of the space's reference copied by offset (``REF``: a member stored
unchanged), a deflated member kept as its contents plus what re-deflates them exactly
(``DEFLATE``), or the same for a member that is itself an archive, kept as a document of its own
(``DEFLATE_NESTED``, and ``NESTED`` for one stored uncompressed), and a tar as its header
records transposed and its files' data (``TAR``, ``_tar.py``).  Deltas are taken between such
documents, where a one-line change in a member is a one-line change, not kilobytes of new deflate
output.  docs/wire-format.md is the normative description.

Writing expands (only what re-deflates byte-exact with the pinned zlib, or with the extension's GNU
gzip deflate, counts as a member);
reading rebuilds (:class:`Rebuilder`, fed the document in pieces, so memory stays bounded by the
largest nested member, not the archive).  The reference's *source form* is the same expansion
without the byte-exactness test: the bytes every delta of the space is taken against.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import itertools
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Final

from xdelta_ffi import (
    GNU_GZIP,
    MINIZ,
    MINIZ_VERSION,
    ZLIB_VERSION,
    Deflater,
    ZlibError,
    byte_difference,
    byte_sum,
    deflate_block_ends,
    deflate_matches,
    deflate_raw,
    deflate_resume,
    inflate_raw,
    resume_start,
)

from .._exceptions import IntegrityError
from ._containers import DEFLATED, STORED, Span, find_spans, is_gzip
from ._tar import TarJoiner, tar_split

RAW: Final = 0
REF: Final = 1
DEFLATE: Final = 2
DEFLATE_NESTED: Final = 3
NESTED: Final = 4
PATCH: Final = 5
TAR: Final = 6
KNOWN: Final = 7
#: not a segment: the split points of the DEFLATE or DEFLATE_NESTED entry that follows it
SPLITS: Final = 8

#: the first bytes of an expanded stream; its version byte follows
STREAM_MAGIC: Final = b"DGX"
#: the version new streams are written in; 2 added miniz's deflate to the settings expansion
#: tries, which changes the source form of references with members only miniz reproduces; 3
#: tries a large member with every setting when those that worked before fail (botocore's
#: nested ``.json.gz``: zlib's and GNU gzip's output agree on the small ones, only GNU gzip
#: reproduces the large ones); 4 keeps a tar inside a member as a ``TAR`` document (``_tar.py``);
#: 5 names a nested member whose compressed bytes the reference holds as a ``KNOWN`` segment
#: instead of carrying its contents (botocore's ``.json.gz``: a new gzip mtime, the same deflate);
#: 6 gives large zlib members split points, where their deflate resumes, so that several cores
#: rebuild one (a ``.tar.gz``'s single stream)
STREAM_VERSION: Final = 6
#: every version this reader reads (and computes source forms by)
STREAM_VERSIONS: Final = (1, 2, 3, 4, 5, 6)
#: the first stream version whose expansion turns tars into ``TAR`` documents
_TARS_FROM: Final = 4
#: the first stream version with ``KNOWN`` segments
_KNOWN_FROM: Final = 5
#: the first stream version with ``SPLITS``
_SPLITS_FROM: Final = 6
#: stream versions whose source forms are those of a later version (5 and 6 changed only what a
#: writer emits), so that a space holding deltas of several keeps one form in memory
SAME_FORM: Final = {4: 6, 5: 6}
#: what rebuilds DEFLATE members, as every stream records it (memLevel 0: GNU gzip's deflate,
#: our re-implementation, version 1; memLevel 15: miniz's)
REBUILDER: Final = f"zlib {ZLIB_VERSION} + gnu-gzip deflate 1 + miniz {MINIZ_VERSION}"

#: archives inside archives are expanded to this depth (a jar in a war in an ear)
MAX_DEPTH: Final = 3
#: members kept whole in memory to be expanded as archives of their own
NESTED_LIMIT: Final = 64 << 20
#: DEFLATE members larger than this are rebuilt as a stream instead of in one piece
STREAM_MEMBER: Final = 8 << 20
#: total bytes a reference's source form may expand to; beyond, the rest stays as it is
SOURCE_LIMIT: Final = 1 << 30

Params = tuple[int, int]
#: per stream version, (level, memLevel) in the order producers use them: zlib's default first,
#: then the extremes; then GNU gzip's deflate (``gzip``, ``tar czf``, Info-ZIP ``zip``), then (2)
#: miniz's (Rust's miniz_oxide: maturin wheels, the ``zip`` crate), then zlib at memLevel 9
_PARAMS: Final[dict[int, tuple[Params, ...]]] = {
    1: (
        *((level, 8) for level in (6, 9, 1, 5, 4, 3, 2, 7, 8, 0)),
        *((level, GNU_GZIP) for level in (6, 9, 1, 5, 4, 3, 2, 7, 8)),
        *((level, 9) for level in (6, 9, 1, 5, 4, 3, 2, 7, 8, 0)),
    ),
    2: (
        *((level, 8) for level in (6, 9, 1, 5, 4, 3, 2, 7, 8, 0)),
        *((level, GNU_GZIP) for level in (6, 9, 1, 5, 4, 3, 2, 7, 8)),
        *((level, MINIZ) for level in (6, 9, 1, 5, 4, 3, 2, 7, 8, 10, 0)),
        *((level, 9) for level in (6, 9, 1, 5, 4, 3, 2, 7, 8, 0)),
    ),
}
_PARAMS[3] = _PARAMS[4] = _PARAMS[5] = _PARAMS[6] = _PARAMS[2]
#: per stream version, how many large members a producer tries with every setting, once the
#: settings that worked before failed on them, before it tries large members only with those
#: (a miss costs a trial deflate per setting up to its first wrong byte: 0.3 s for 3.5 MB)
_LARGE_RETRIES: Final[dict[int, int]] = {1: 0, 2: 0, 3: 4, 4: 4, 5: 4, 6: 4}
#: after this many members with no exact parameters and none found, an archive's producer is
#: taken to be some other deflater, and its further members are not tried
_GIVE_UP_AFTER: Final = 8
#: members up to this size are tried with every setting even once one setting is known
_CHEAP_TRIAL: Final = 64 << 10

#: a split point: where a member's deflate resumes, as (contents offset, compressed offset)
Split = tuple[int, int]
#: zlib members with at least this much contents are given split points (from version 6)
SPLIT_MIN: Final = 2 << 20
#: contents between split points: at least this much (so a chunk's setup is noise) ...
SPLIT_CHUNK: Final = 1 << 20
#: ... and at most this much (a reader holds a few chunks at once)
SPLIT_MAX: Final = 8 << 20
#: contents a chunk's deflate reads past its end (part of the format: what writers verify with;
#: GNU gzip's deflate reads its input 32 KiB at a time)
SPLIT_LOOKAHEAD: Final = 64 << 10


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise IntegrityError("archive delta: truncated or malformed table")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


@dataclass(frozen=True)
class Segment:
    kind: int
    #: bytes this segment rebuilds to
    out_len: int
    #: bytes of payload it takes from the document
    payload_len: int
    offset: int = 0  # REF
    level: int = 0  # DEFLATE*
    mem_level: int = 8  # zlib's 1-9, or GNU_GZIP
    crc: int = 0  # CRC-32 of the rebuilt (compressed) bytes, DEFLATE* and KNOWN
    inner_len: int = 0  # bytes the nested document rebuilds to (DEFLATE_NESTED)
    records: int = 0  # TAR: transposed 512-byte records at the start of its payload
    #: DEFLATE*: where its deflate resumes (a SPLITS entry before its own)
    splits: tuple[Split, ...] = ()

    @property
    def contents_len(self) -> int:
        """DEFLATE*: the bytes it deflates."""
        return self.inner_len if self.kind == DEFLATE_NESTED else self.payload_len

    def encode(self, ref_cursor: int) -> bytes:
        """The table entry; a REF's offset is written relative to where the previous REF of its
        table ended (``ref_cursor``): unchanged members come in order, so these stay small."""
        head = bytes([self.kind])
        if self.splits:
            head = _encode_splits(self.splits) + head
        if self.kind == RAW:
            return head + varint(self.out_len)
        if self.kind in (REF, PATCH):
            moved = self.offset - ref_cursor
            return head + varint(moved * 2 if moved >= 0 else -moved * 2 - 1) + varint(self.out_len)
        if self.kind == NESTED:
            return head + varint(self.out_len) + varint(self.payload_len)
        if self.kind == TAR:
            return head + varint(self.out_len) + varint(self.payload_len) + varint(self.records)
        if self.kind == KNOWN:
            return head + self.crc.to_bytes(4, "big") + varint(self.out_len)
        params = bytes([self.level | self.mem_level << 4]) + self.crc.to_bytes(4, "big")
        body = head + params + varint(self.out_len) + varint(self.payload_len)
        if self.kind == DEFLATE_NESTED:
            body += varint(self.inner_len)
        return body


def _encode_splits(splits: tuple[Split, ...]) -> bytes:
    out = [bytes([SPLITS]), varint(len(splits))]
    last = (0, 0)
    for point in splits:
        out += [varint(point[0] - last[0]), varint(point[1] - last[1])]
        last = point
    return b"".join(out)


def _parse_splits(table: bytes | memoryview, pos: int) -> tuple[tuple[Split, ...], int]:
    count, pos = read_varint(table, pos)
    if count > len(table):
        raise IntegrityError("archive delta: malformed split points")
    points: list[Split] = []
    contents = compressed = 0
    for _ in range(count):
        step, pos = read_varint(table, pos)
        compressed_step, pos = read_varint(table, pos)
        if not step or not compressed_step or step > SPLIT_MAX:
            raise IntegrityError("archive delta: malformed split points")
        contents, compressed = contents + step, compressed + compressed_step
        points.append((contents, compressed))
    return tuple(points), pos


def _with_splits(seg: Segment, splits: tuple[Split, ...]) -> Segment:
    if not splits:
        return seg
    last_contents, last_compressed = splits[-1]
    if (
        seg.kind not in (DEFLATE, DEFLATE_NESTED)
        or not splittable((seg.level, seg.mem_level))
        or seg.contents_len - last_contents > SPLIT_MAX
        or last_contents + SPLIT_LOOKAHEAD > seg.contents_len
        or last_compressed >= seg.out_len
    ):
        raise IntegrityError("archive delta: split points that fit no member")
    return replace(seg, splits=splits)


def parse_table(table: bytes | memoryview) -> list[Segment]:
    segments: list[Segment] = []
    pos = 0
    cursor = 0
    splits: tuple[Split, ...] = ()
    while pos < len(table):
        kind = table[pos]
        pos += 1
        if splits and kind not in (DEFLATE, DEFLATE_NESTED):
            raise IntegrityError("archive delta: split points that fit no member")
        if kind == SPLITS and not splits:
            splits, pos = _parse_splits(table, pos)
            if not splits:
                raise IntegrityError("archive delta: malformed split points")
        elif kind == RAW:
            n, pos = read_varint(table, pos)
            segments.append(Segment(RAW, n, n))
        elif kind in (REF, PATCH):
            moved, pos = read_varint(table, pos)
            n, pos = read_varint(table, pos)
            offset = cursor + (moved >> 1 if not moved & 1 else -((moved + 1) >> 1))
            if offset < 0:
                raise IntegrityError("archive delta: invalid reference offset")
            cursor = offset + n
            segments.append(Segment(kind, n, n if kind == PATCH else 0, offset=offset))
        elif kind == NESTED:
            n, pos = read_varint(table, pos)
            plen, pos = read_varint(table, pos)
            segments.append(Segment(NESTED, n, plen))
        elif kind == TAR:
            n, pos = read_varint(table, pos)
            plen, pos = read_varint(table, pos)
            records, pos = read_varint(table, pos)
            segments.append(Segment(TAR, n, plen, records=records))
        elif kind == KNOWN:
            if pos + 4 > len(table):
                raise IntegrityError("archive delta: truncated table")
            crc = int.from_bytes(table[pos : pos + 4], "big")
            n, pos = read_varint(table, pos + 4)
            segments.append(Segment(KNOWN, n, 0, crc=crc))
        elif kind in (DEFLATE, DEFLATE_NESTED):
            if pos + 5 > len(table):
                raise IntegrityError("archive delta: truncated table")
            params = table[pos]
            crc = int.from_bytes(table[pos + 1 : pos + 5], "big")
            pos += 5
            clen, pos = read_varint(table, pos)
            plen, pos = read_varint(table, pos)
            inner = plen
            if kind == DEFLATE_NESTED:
                inner, pos = read_varint(table, pos)
            level, mem_level = params & 0x0F, params >> 4
            if not _valid_params(level, mem_level):
                raise IntegrityError("archive delta: invalid deflate parameters")
            seg = Segment(kind, clen, plen, 0, level, mem_level, crc, inner)
            segments.append(_with_splits(seg, splits))
            splits = ()
        else:
            raise IntegrityError(f"archive delta: unknown segment kind {kind}")
    if splits:
        raise IntegrityError("archive delta: split points that fit no member")
    return segments


def _valid_params(level: int, mem_level: int) -> bool:
    if mem_level == MINIZ:
        return level <= 10
    if mem_level == GNU_GZIP:
        return 1 <= level <= 9
    return level <= 9 and mem_level <= 9


def splittable(params: Params) -> bool:
    """Whether members deflated so may get split points: zlib's and GNU gzip's lazy-matching
    levels, whose deflate resumed at a block boundary with the window preset mostly continues
    it exactly."""
    level, mem_level = params
    return 4 <= level <= 9 and (1 <= mem_level <= 9 or mem_level == GNU_GZIP)


def _chunk_input(
    points: Sequence[Split], index: int, size: int, mem_level: int
) -> tuple[int, int, int]:
    """Chunk ``index`` of a member of ``size`` bytes of contents split at ``points`` (its first
    is (0, 0)): the contents its deflate reads (start, stop) and where among them it begins."""
    begin = points[index][0]
    start = resume_start(begin, mem_level)
    last = index + 1 == len(points)
    stop = size if last else min(size, points[index + 1][0] + SPLIT_LOOKAHEAD)
    return start, stop, begin - start


def _chunk_out(points: Sequence[Split], index: int, out_len: int) -> int:
    """The bytes chunk ``index`` deflates to."""
    end = out_len if index + 1 == len(points) else points[index + 1][1]
    return end - points[index][1]


def _split_points(contents_len: int, compressed: memoryview) -> list[Split]:
    """Candidate split points: the first byte-aligned block end past every ``SPLIT_CHUNK``."""
    points: list[Split] = [(0, 0)]
    for point in deflate_block_ends(compressed):
        if point[0] >= points[-1][0] + SPLIT_CHUNK and point[0] + SPLIT_LOOKAHEAD <= contents_len:
            points.append(point)
    return points


def _split_match(
    contents: bytes | memoryview, compressed: memoryview, params: Params, points: list[Split]
) -> tuple[Split, ...] | None:
    """Whether the deflater of ``params`` reproduces the member, found chunk by chunk on every
    core: its split points ((): it does, unsplit), or None.  A chunk that does not reproduce when
    resumed at its point (the lazy-match state there is not all in the window) is joined to the
    one before, and that is tried again; one that does not reproduce from the start is a miss.
    When joined chunks fail again, the member is tried as one stream: a producer that differs
    from the deflater somewhere inside would otherwise cost a round per point."""
    level, mem_level = params
    size, out_len = len(contents), len(compressed)
    verified: dict[tuple[Split, int], bool] = {}

    def verify(index: int) -> bool:
        start, stop, begin = _chunk_input(points, index, size, mem_level)
        made = _chunk_out(points, index, out_len)
        at = points[index][1]
        return (
            deflate_resume(
                memoryview(contents)[start:stop],
                begin,
                level,
                mem_level,
                made,
                finish=index + 1 == len(points),
                expect=compressed[at : at + made],
            )
            is not None
        )

    # The first chunk alone first: a wrong setting fails there, within a block or two, as a
    # plain trial would, instead of in every chunk at once.
    if not verify(0):
        return None
    verified[(points[0], _chunk_out(points, 0, out_len))] = True
    for _ in range(2):
        keys = [(points[i], _chunk_out(points, i, out_len)) for i in range(len(points))]
        todo = [i for i, key in enumerate(keys) if key not in verified]
        for index, ok in zip(todo, split_pool().map(verify, todo), strict=True):
            verified[keys[index]] = ok
        if not verified[keys[0]]:
            return None
        failed = [i for i, key in enumerate(keys) if not verified[key]]
        if not failed:
            bounds = [p[0] for p in points] + [size]
            if all(b - a <= SPLIT_MAX for a, b in itertools.pairwise(bounds)):
                return tuple(points[1:])
            break  # a reader would hold too much of it at once
        points = [point for i, point in enumerate(points) if i not in failed]
    # Rebuilt in one stream, which is not what the chunks proved.
    return () if deflate_matches(contents, compressed, level, mem_level) else None


def _looks_like_archive(data: bytes | memoryview) -> bool:
    return is_gzip(data) or bytes(data[:4]) == b"PK\x03\x04"


def _inflated(data: memoryview, limit: int) -> bytes | None:
    """The contents of one complete raw deflate stream that is exactly ``data``, else None."""
    try:
        out, used = inflate_raw(data, limit)
    except ZlibError:
        return None
    return out if used == len(data) else None


def byte_delta(target: bytes | memoryview, base: bytes | memoryview) -> bytes:
    """Bytewise ``target - base`` (mod 256): zero where they agree, and a field that moved by a
    constant (an offset, a timestamp) differs by the same bytes in every entry."""
    return byte_difference(target, base)


def byte_undelta(delta: bytes | memoryview | bytearray, base: bytes | memoryview) -> bytes:
    return byte_sum(delta, base)


def span_digest(data: bytes | memoryview) -> bytes:
    """What tells members apart in memory (never stored): SHA-256, which runs on the CPU's SHA
    instructions where there are some (2.5x blake2b's speed here; a botocore put hashes 160 MB)."""
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class KnownDeflate:
    """A deflated member of a reference, at any depth, that the pinned zlib was proven to
    reproduce: a target member with these contents and settings deflates to these very bytes,
    so neither a put has to try settings on it nor a get to deflate it again."""

    compressed: memoryview
    contents_digest: bytes
    level: int
    mem_level: int


#: (CRC-32, length) of the compressed bytes -> the member
KnownDeflates = dict[tuple[int, int], KnownDeflate]


@dataclass
class ReferenceForm:
    """What deltas against one reference need: its bytes, its source form, where its compressed
    members lie (by content), so that unchanged members become ``REF`` segments, and its
    reproducible deflated members (:class:`KnownDeflate`)."""

    raw: bytes
    #: a view of the kept form it was loaded from, or bytes
    source: bytes | memoryview
    members: dict[bytes, int]
    is_archive: bool
    #: where the bytes after the last member (a zip's central directory) start
    tail: int
    known: KnownDeflates = field(default_factory=dict)
    #: the stream version whose expansion made ``source``
    version: int = STREAM_VERSION

    @property
    def size(self) -> int:
        return len(self.raw) + len(self.source)


#: the first bytes of a source form kept in the reference cache (:func:`form_pieces`)
_FORM_MAGIC: Final = b"DGFORM1\n"


def form_pieces(form: ReferenceForm) -> list[bytes | memoryview]:
    """``form`` without its reference's bytes, as pieces to store: a process that has the
    reference reads it back (:func:`parse_form`) instead of expanding the reference again.
    Known members that are a slice of the reference are kept as their offset."""
    head = [
        _FORM_MAGIC,
        varint(form.version),
        bytes([form.is_archive]),
        varint(form.tail),
        varint(len(form.members)),
        *(digest + varint(offset) for digest, offset in form.members.items()),
        varint(len(form.known)),
    ]
    inline: list[bytes | memoryview] = []
    raw = memoryview(form.raw)
    for (crc, length), found in form.known.items():
        at = form.members.get(span_digest(found.compressed))
        in_raw = at is not None and raw[at : at + length] == found.compressed
        head.append(
            crc.to_bytes(4, "big")
            + varint(length)
            + found.contents_digest
            + bytes([found.level, found.mem_level])
            + varint(at + 1 if in_raw and at is not None else 0)
        )
        if not in_raw:
            inline.append(found.compressed)
    return [b"".join(head), *inline, varint(len(form.source)), form.source]


def parse_form(data: bytes, raw: bytes) -> ReferenceForm | None:
    """The form :func:`form_pieces` stored, for the reference ``raw``; None if it is not one."""
    if not data.startswith(_FORM_MAGIC):
        return None
    view = memoryview(data)
    try:
        version, pos = read_varint(view, len(_FORM_MAGIC))
        is_archive = bool(view[pos])
        tail, pos = read_varint(view, pos + 1)
        count, pos = read_varint(view, pos)
        members: dict[bytes, int] = {}
        for _ in range(count):
            digest = bytes(view[pos : pos + 32])
            members[digest], pos = read_varint(view, pos + 32)
        count, pos = read_varint(view, pos)
        entries = []
        for _ in range(count):
            crc = int.from_bytes(view[pos : pos + 4], "big")
            length, pos = read_varint(view, pos + 4)
            digest, level, mem_level = bytes(view[pos : pos + 32]), view[pos + 32], view[pos + 33]
            at, pos = read_varint(view, pos + 34)
            entries.append((crc, length, digest, level, mem_level, at))
        known: KnownDeflates = {}
        for crc, length, digest, level, mem_level, at in entries:
            if at:
                compressed = memoryview(raw)[at - 1 : at - 1 + length]
            else:
                # a copy: a view would keep the whole stored form alive beside the source
                compressed, pos = memoryview(bytes(view[pos : pos + length])), pos + length
            if len(compressed) != length:
                return None
            known[(crc, length)] = KnownDeflate(compressed, digest, level, mem_level)
        size, pos = read_varint(view, pos)
    except (IntegrityError, IndexError):
        return None
    if pos + size != len(view) or tail > len(raw) or version not in STREAM_VERSIONS:
        return None
    return ReferenceForm(raw, view[pos:], members, is_archive, tail, known, version)


@dataclass(frozen=True)
class ReferenceExpansion:
    """A reference's own expansion (:func:`expand_reference`)."""

    head: bytes
    payload: bytes
    known: KnownDeflates
    #: top-level members kept as their contents
    expanded: int


def expand_reference(raw: bytes, version: int = STREAM_VERSION) -> ReferenceExpansion:
    expander = Expander(None, learn=True, version=version)
    head, payload = expander.expand(raw)
    return ReferenceExpansion(head, payload, expander.learnt, expander.stats.expanded)


def reference_form(
    raw: bytes, expansion: ReferenceExpansion | None = None, version: int = STREAM_VERSION
) -> ReferenceForm:
    """The reference's source form is the payload of its own expansion: a member a target keeps
    compressed (no setting reproduces it) is compressed in the source too, so similar members
    still match.  This is part of the format: each stream version fixes it (``expansion``, if
    given, must be of that version)."""
    spans = find_spans(raw)
    view = memoryview(raw)
    members = {
        span_digest(view[s.offset : s.offset + s.length]): s.offset
        for s in spans
        if s.method == DEFLATED or _looks_like_archive(view[s.offset : s.offset + 4])
    }
    if expansion is None:
        expansion = expand_reference(raw, version)
    tail = spans[-1].offset + spans[-1].length if spans else 0
    return ReferenceForm(
        raw, expansion.payload, members, bool(spans), tail, expansion.known, version
    )


@dataclass
class ExpandStats:
    """Top-level members: all, expanded (deflated ones re-deflated, or stored archives with
    something expanded inside), unchanged (found in the reference), kept compressed."""

    members: int = 0
    expanded: int = 0
    unchanged: int = 0
    not_reproduced: int = 0


def _common_prefix(a: memoryview, b: memoryview) -> int:
    """How many leading bytes ``a`` and ``b`` share (binary search over slice compares)."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while low < high:  # a[:low] == b[:low] and a[:high] != b[:high]
        mid = (low + high + 1) // 2
        if a[low:mid] == b[low:mid]:
            low = mid
        else:
            high = mid - 1
    return low


@dataclass
class _Doc:
    """A document being built; at the top level, runs of bytes equal to the reference's (unchanged
    members and the headers between them) merge into single ``REF`` segments."""

    reference: bytes | None = None
    segments: list[Segment] = field(default_factory=list)
    payload: list[bytes | memoryview] = field(default_factory=list)
    #: where in the reference the last REF or PATCH ended
    cursor: int = 0

    def raw(self, data: memoryview) -> None:
        if not len(data):
            return
        last = self.segments[-1] if self.segments else None
        if last is not None and last.kind == REF and self.reference is not None:
            end = last.offset + last.out_len
            same = _common_prefix(data, memoryview(self.reference)[end:])
            if same:
                self.segments[-1] = Segment(REF, last.out_len + same, 0, offset=last.offset)
                data = data[same:]
                if not len(data):
                    return
                last = self.segments[-1]
        if last is not None and last.kind == RAW:
            self.segments[-1] = Segment(RAW, last.out_len + len(data), last.payload_len + len(data))
        else:
            self.segments.append(Segment(RAW, len(data), len(data)))
        self.payload.append(data)

    def ref(self, offset: int, length: int) -> None:
        last = self.segments[-1] if self.segments else None
        if last is not None and last.kind == REF and last.offset + last.out_len == offset:
            self.segments[-1] = Segment(REF, last.out_len + length, 0, offset=last.offset)
        else:
            self.segments.append(Segment(REF, length, 0, offset=offset))
        self.cursor = offset + length

    def known(self, crc: int, length: int) -> None:
        self.segments.append(Segment(KNOWN, length, 0, crc=crc))

    def gap(self, data: memoryview, hint: int | None) -> None:
        """Bytes between members (headers, a central directory): stored as their bytewise
        difference from the reference's bytes at ``hint`` when those are mostly the same (a
        header differing only in its timestamp, a directory whose offsets moved), which
        delta-encodes to almost nothing."""
        ref = self.reference
        n = len(data)
        if ref is not None and hint is not None and n >= 8 and 0 <= hint <= len(ref) - n:
            if (
                bytes(data[:4]) != ref[hint : hint + 4]
                or _common_prefix(data, memoryview(ref)[hint : hint + n]) == n
            ):
                self.raw(data)
                return
            patch = byte_delta(data, memoryview(ref)[hint : hint + n])
            if patch.count(0) * 10 >= n * 6:
                self.segments.append(Segment(PATCH, n, n, offset=hint))
                self.payload.append(patch)
                self.cursor = hint + n
                return
        self.raw(data)

    @property
    def useful(self) -> bool:
        return any(s.kind != RAW for s in self.segments)

    def merge_runs(self) -> None:
        """Runs of REF and PATCH segments that follow each other in the reference too (the
        unchanged members and the headers between them) become one PATCH: its payload is mostly
        zeros, which costs the delta next to nothing, and the table stays short."""
        if self.reference is None:
            return
        merged: list[Segment] = []
        payload: list[bytes | memoryview] = []
        pieces = iter(self.payload)
        run: list[tuple[Segment, bytes | memoryview | None]] = []

        def flush() -> None:
            if not run:
                return
            if len(run) == 1:
                seg, body = run[0]
                merged.append(seg)
                if body is not None:
                    payload.append(body)
            else:
                start = run[0][0].offset
                total = sum(seg.out_len for seg, _ in run)
                merged.append(Segment(PATCH, total, total, offset=start))
                payload.extend(
                    body if body is not None else bytes(seg.out_len) for seg, body in run
                )
            run.clear()

        def take(n: int) -> bytes | memoryview | None:
            # A segment's payload may be several pieces (adjacent RAWs merge), never part of one.
            if not n:
                return None
            got = [next(pieces)]
            size = len(got[0])
            while size < n:
                got.append(next(pieces))
                size += len(got[-1])
            return got[0] if len(got) == 1 else b"".join(got)

        for seg in self.segments:
            body = take(seg.payload_len)
            if seg.kind in (REF, PATCH):
                if run and run[-1][0].offset + run[-1][0].out_len != seg.offset:
                    flush()
                run.append((seg, body))
                continue
            flush()
            merged.append(seg)
            if body is not None:
                payload.append(body)
        flush()
        self.segments, self.payload = merged, payload

    def table(self) -> bytes:
        entries = []
        cursor = 0
        for seg in self.segments:
            entries.append(seg.encode(cursor))
            if seg.kind in (REF, PATCH):
                cursor = seg.offset + seg.out_len
        return b"".join(entries)

    def serialize(self) -> bytes:
        table = self.table()
        return b"".join([varint(len(table)), table, *self.payload])


def _drained(pieces: list[bytes | memoryview]) -> bytes:
    """``b"".join(pieces)``, letting go of each piece once it is copied: the pieces and the
    whole are never all held at once (a botocore wheel expands to 80 MiB).  BytesIO grows its
    bytes in place and hands that very object over."""
    out = io.BytesIO()
    pieces.reverse()
    while pieces:
        out.write(pieces.pop())
    return out.getvalue()


@dataclass
class _Found:
    """What discovery (:func:`_discover`) found of one member: its contents, the zlib settings
    that reproduce it (None: none tried did, or it is stored), and the same for the members of
    the archive it holds (by span, None when it is not expanded as one)."""

    contents: bytes | None
    crc: int
    params: Params | None
    inner: _Inner | None
    #: the settings tried, in order
    tried: list[Params] = field(default_factory=list)
    #: a deflated member of the reference, by these very bytes: a ``KNOWN`` segment (never
    #: inflated, so ``contents`` is None)
    known: bool = False
    #: where the deflate that reproduces it resumes (with ``params``)
    splits: tuple[Split, ...] = ()


@dataclass
class _Inner:
    """The spans of an archive inside a member, and what discovery found of each."""

    spans: list[Span]
    found: list[_Found]


def _discover(
    data: memoryview,
    method: int,
    hint: int | None,
    depth: int,
    producer: _Producer,
    producers: Producers,
    known: KnownDeflates,
    refer: bool,
    memo: DeflateMemo | None,
) -> _Found:
    """Inflate one member and find the settings that deflate it back, and so on inside it;
    with ``refer``, a member ``known`` holds is not even inflated, and one the memo holds is
    not tried.

    Pure but for ``producers`` (what worked so far), so it runs on worker threads with copies of
    them: the costly part of an expansion (a trial deflate per member) goes onto every core.
    """
    if method == STORED:
        inner = _discover_inner(data, depth, producers, known, refer, memo)
        return _Found(None, 0, None, inner)
    crc = binascii.crc32(data)
    reproduced = _known_params(known, data, crc)
    if refer and reproduced is not None:
        return _Found(None, crc, reproduced, None, known=True)
    contents = _inflated(data, max(NESTED_LIMIT, 64 * len(data)))
    if contents is None:
        return _Found(None, crc, None, None)
    match = _memo_params(memo, data, crc) if reproduced is None else None
    tried = [] if reproduced is not None or match else list(producer.trials(len(contents), hint))
    if tried:
        match = producer.first_match(tried, contents, data)
    params, splits = match if match is not None else (None, ())
    inner = None
    if reproduced is not None or params is not None:
        inner = _discover_inner(memoryview(contents), depth, producers, known, refer, memo)
    return _Found(contents, crc, params, inner, tried, splits=splits)


def _memo_params(
    memo: DeflateMemo | None, data: memoryview, crc: int
) -> tuple[Params, tuple[Split, ...]] | None:
    """The settings (and split points) of a memoed member with these very compressed bytes."""
    found = memo.find(crc, len(data)) if memo is not None else None
    if found is None or found.deflate.compressed != data:
        return None
    return (found.deflate.level, found.deflate.mem_level), found.splits


def _discover_inner(
    contents: memoryview,
    depth: int,
    producers: Producers,
    known: KnownDeflates,
    refer: bool,
    memo: DeflateMemo | None,
) -> _Inner | None:
    if depth + 1 >= MAX_DEPTH or len(contents) > NESTED_LIMIT:
        return None
    if not _looks_like_archive(contents):
        return None
    producer = producers.of(depth + 1, is_gzip(contents))
    spans = find_spans(contents)
    found = [
        _discover(
            contents[s.offset : s.offset + s.length],
            s.method,
            s.hint,
            depth + 1,
            producer,
            producers,
            known,
            refer,
            memo,
        )
        for s in spans
    ]
    return _Inner(spans, found)


def _known_params(known: KnownDeflates, data: memoryview, crc: int) -> Params | None:
    """The settings of a reference member with these very compressed bytes, if any."""
    found = known.get((crc, len(data)))
    if found is None or found.compressed != data:
        return None
    return found.level, found.mem_level


class _Lookahead:
    """Discovery of a top-level document's members on the worker pool, a window ahead of the
    walk that assembles them.  Each job gets copies of the producers as they are when it is
    submitted, and jobs are submitted at fixed points of the walk, so what is found (and
    stored) does not depend on the threads' timing."""

    def __init__(
        self, view: memoryview, spans: list[Span], todo: list[bool], expander: Expander
    ) -> None:
        self._view, self._spans, self._todo, self._expander = view, spans, todo, expander
        self._window = 4 * WORKERS
        self._jobs: dict[int, Future[_Found]] = {}
        self._next = 0

    def __getitem__(self, index: int) -> _Found:
        while self._next < len(self._spans) and self._next <= index + self._window:
            if self._todo[self._next]:
                self._jobs[self._next] = self._submit(self._spans[self._next])
            self._next += 1
        return self._jobs.pop(index).result()

    def _submit(self, span: Span) -> Future[_Found]:
        expander = self._expander
        producers = expander.producers.copy()
        producer = producers.of(0, is_gzip(self._view))
        data = self._view[span.offset : span.offset + span.length]
        return worker_pool().submit(
            _discover,
            data,
            span.method,
            span.hint,
            0,
            producer,
            producers,
            expander.known,
            expander.refers,
            expander.memo,
        )


class Expander:
    """Turns one archive into its document (``expand``), against a reference's members.

    Discovery (inflating, finding settings) runs on the worker pool; assembly (the segments,
    the budget, what is learnt) follows in order on the calling thread."""

    def __init__(
        self,
        reference: ReferenceForm | None,
        *,
        learn: bool = False,
        version: int = STREAM_VERSION,
        memo: DeflateMemo | None = None,
    ) -> None:
        if reference is not None and reference.version != version:
            raise ValueError("a stream is expanded against a source form of its own version")
        self._reference = reference
        self._version = version
        self.known: KnownDeflates = reference.known if reference is not None else {}
        #: whether members ``known`` holds become ``KNOWN`` segments
        self.refers = reference is not None and version >= _KNOWN_FROM
        self.producers = Producers(
            _PARAMS[version], _LARGE_RETRIES[version], split=version >= _SPLITS_FROM
        )
        self._budget = SOURCE_LIMIT
        self.stats = ExpandStats()
        self._learn = learn
        #: with ``learn``, the reproducible deflated members this expansion found
        self.learnt: KnownDeflates = {}
        #: members deflated lately against ``reference``, and where those found here go
        self.memo = memo

    def expand(self, data: bytes) -> tuple[bytes, bytes]:
        """``data`` as (head, payload): the head holds the rebuilder and the segment table, the
        payload what the segments take, in order.  They are kept apart because the payload is
        what gets delta-encoded: a table in front of it spoils xdelta3's source matching."""
        head, parts = self.expand_parts(data)
        return head, _drained(parts)

    def expand_parts(self, data: bytes) -> tuple[bytes, list[bytes | memoryview]]:
        """:meth:`expand` with the payload as the pieces it is the concatenation of (which an
        encoder can take one by one, never holding the whole)."""
        view = memoryview(data)
        doc = self._document(view, 0, find_spans(view), None)
        doc.merge_runs()
        rebuilder = REBUILDER.encode()
        table = doc.table()
        head = b"".join(
            [
                STREAM_MAGIC,
                bytes([self._version]),
                varint(len(rebuilder)),
                rebuilder,
                varint(len(table)),
                table,
            ]
        )
        return head, doc.payload

    def _document(
        self,
        view: memoryview,
        depth: int,
        spans: list[Span],
        found: Sequence[_Found] | _Lookahead | None,
    ) -> _Doc:
        reference = self._reference.raw if depth == 0 and self._reference is not None else None
        doc = _Doc(reference)
        pos = 0
        producer = self.producers.of(depth, is_gzip(view))
        same_at = [
            self._unchanged(view[s.offset : s.offset + s.length]) if reference is not None else None
            for s in spans
        ]
        if found is None:
            found = _Lookahead(view, spans, [same is None for same in same_at], self)
        for index, span in enumerate(spans):
            gap = view[pos : span.offset]
            pos = span.offset + span.length
            data = view[span.offset : pos]
            same = same_at[index]
            if reference is None:
                doc.raw(gap)
            else:  # the gap before a member found in the reference ends where that member starts
                doc.gap(gap, doc.cursor if same is None else same - len(gap))
            if same is not None:
                doc.ref(same, len(data))
                self.stats.members += 1
                self.stats.unchanged += 1
                continue
            self._member(doc, data, span, depth, producer, found[index])
        tail = view[pos:]
        if reference is None or self._reference is None:
            doc.raw(tail)
        else:
            doc.gap(tail, self._reference.tail)
        return doc

    def _unchanged(self, data: memoryview) -> int | None:
        """Where the reference holds these very member bytes, if it does."""
        assert self._reference is not None
        offset = self._reference.members.get(span_digest(data))
        if offset is not None and self._reference.raw[offset : offset + len(data)] == data:
            return offset
        return None

    def _member(
        self,
        doc: _Doc,
        data: memoryview,
        span: Span,
        depth: int,
        producer: _Producer,
        found: _Found,
    ) -> None:
        if depth == 0:
            self.stats.members += 1
        if found.known:
            doc.known(found.crc, len(data))
            self.stats.unchanged += depth == 0
            return
        if span.method == STORED:
            inner = self._inner(found.inner, data, depth)
            if inner is None:
                doc.raw(data)
            else:
                self.stats.expanded += depth == 0
                body = inner.serialize()
                doc.segments.append(Segment(NESTED, len(data), len(body)))
                doc.payload.append(body)
            return
        contents = found.contents
        if contents is not None and len(contents) > self._budget:
            contents = None
        params = None
        splits: tuple[Split, ...] = ()
        if contents is not None:
            params = _known_params(self.known, data, found.crc)
            if params is None and found.params is not None:
                params, splits = producer.worked(found.params), found.splits
            elif params is None:
                trials = producer.trials(len(contents), span.hint)
                if trials == found.tried:
                    producer.missed(len(contents))
                else:  # the job's copy of the producer knew less than this one
                    match = producer.first_match(trials, contents, data)
                    if match is not None:
                        params, splits = match
                        found = _Found(contents, found.crc, params, None, splits=splits)
        if contents is None or params is None:
            self.stats.not_reproduced += depth == 0
            doc.raw(data)
            return
        self.stats.expanded += depth == 0
        self._budget -= len(contents)
        level, mem_level = params
        digest = span_digest(contents) if self._learn or self.memo is not None else b""
        if self._learn:
            self.learnt[(found.crc, len(data))] = KnownDeflate(data, digest, level, mem_level)
        inner = self._inner(found.inner, memoryview(contents), depth)
        if inner is None:
            if self.memo is not None and (found.crc, len(data)) not in self.known:
                self.memo.add(found.crc, data, digest, params, splits)
            doc.segments.append(
                Segment(
                    DEFLATE,
                    len(data),
                    len(contents),
                    0,
                    level,
                    mem_level,
                    found.crc,
                    len(contents),
                    splits=splits,
                )
            )
            doc.payload.append(contents)
        else:
            body = inner.serialize()
            doc.segments.append(
                Segment(
                    DEFLATE_NESTED,
                    len(data),
                    len(body),
                    0,
                    level,
                    mem_level,
                    found.crc,
                    len(contents),
                    splits=splits,
                )
            )
            doc.payload.append(body)

    def _inner(self, found: _Inner | None, contents: memoryview, depth: int) -> _Doc | None:
        """The document of a member that is an archive itself, if expanding it is worth it."""
        if found is None and self._version >= _TARS_FROM and depth + 1 < MAX_DEPTH:
            split = tar_split(contents) if len(contents) <= NESTED_LIMIT else None
            if split is not None:
                records, parts = split
                doc = _Doc(None)
                doc.segments.append(
                    Segment(TAR, len(contents), sum(map(len, parts)), records=records)
                )
                doc.payload += parts
                return doc
        if found is None:
            found = _discover_inner(
                contents, depth, self.producers, self.known, self.refers, self.memo
            )
            if found is None:
                return None
        inner = self._document(contents, depth + 1, found.spans, found.found)
        return inner if inner.useful else None


class _Producer:
    """What deflated the members of one container (a zip, a gzip stream, at one depth).

    A producer mostly uses one setting for all its members, so once a setting worked, a large
    member is tried with the settings that worked first (a wrong guess costs a deflate up to its
    first wrong byte, tens of milliseconds for a big member), then, for the first
    ``large_retries`` large members those miss, with the others; small members, cheap to try,
    get every setting.  A container none of whose first members matches anything was made by
    another deflater: the rest are not tried at all.
    """

    def __init__(self, order: Sequence[Params], large_retries: int, split: bool) -> None:
        self._order: list[Params] = list(order)
        self._worked: list[Params] = []
        self._misses = 0
        self._large_retries = large_retries
        self._large_misses = 0
        #: whether large members get split points
        self._split = split

    def copy(self) -> _Producer:
        twin = _Producer(self._order, self._large_retries, self._split)
        twin._worked, twin._misses, twin._large_misses = (
            list(self._worked),
            self._misses,
            self._large_misses,
        )
        return twin

    def _large(self, size: int) -> bool:
        return bool(self._worked) and size > _CHEAP_TRIAL

    def trials(self, size: int, hint: int | None) -> list[Params]:
        """The settings to try, in order, on a member of ``size`` bytes of contents."""
        if not self._worked and self._misses >= _GIVE_UP_AFTER:
            return []
        if self._large(size):
            if self._large_misses >= self._large_retries:
                return self._worked
            return self._worked + [p for p in self._order if p not in self._worked]
        if hint is None:
            return self._order
        return [p for p in self._order if p[0] == hint] + [p for p in self._order if p[0] != hint]

    def first_match(
        self, trials: list[Params], contents: bytes, compressed: memoryview
    ) -> tuple[Params, tuple[Split, ...]] | None:
        """The first setting that reproduces the member, and its split points."""
        points: list[Split] | None = None  # found once, for every setting tried
        for params in trials:
            if self._split and len(contents) >= SPLIT_MIN and splittable(params):
                if points is None:
                    points = _split_points(len(contents), compressed)
                splits = _split_match(contents, compressed, params, points)
            else:
                splits = () if deflate_matches(contents, compressed, *params) else None
            if splits is not None:
                return self.worked(params), splits
        self.missed(len(contents))
        return None

    def missed(self, size: int) -> None:
        """No setting tried on a member of ``size`` bytes of contents reproduced it."""
        self._large_misses += self._large(size)
        self._misses += 1

    def worked(self, params: Params) -> Params:
        self._order = [params] + [p for p in self._order if p != params]
        self._worked = [params] + [p for p in self._worked if p != params]
        return params


class Producers:
    """The producers of one expansion, by container (depth, gzip or zip), all starting from the
    settings order of its stream version."""

    def __init__(self, order: Sequence[Params], large_retries: int, split: bool) -> None:
        self._order = order
        self._large_retries = large_retries
        self._split = split
        self._by_container: dict[tuple[int, bool], _Producer] = {}

    def of(self, depth: int, gzip: bool) -> _Producer:
        found = self._by_container.get((depth, gzip))
        if found is None:
            found = _Producer(self._order, self._large_retries, self._split)
            self._by_container[(depth, gzip)] = found
        return found

    def copy(self) -> Producers:
        twin = Producers(self._order, self._large_retries, self._split)
        twin._by_container = {key: p.copy() for key, p in self._by_container.items()}
        return twin


@dataclass(frozen=True)
class Head:
    """An expanded stream's head: its version, what wrote it, its segments."""

    version: int
    rebuilder: str
    segments: list[Segment]


def parse_head(head: bytes) -> Head:
    if head[:3] != STREAM_MAGIC or len(head) < 4 or head[3] not in STREAM_VERSIONS:
        raise IntegrityError("archive delta: unknown head (written by a newer version?)")
    length, pos = read_varint(head, 4)
    rebuilder = head[pos : pos + length].decode("ascii", "replace")
    table_len, pos = read_varint(head, pos + length)
    if pos + table_len != len(head):
        raise IntegrityError("archive delta: malformed head")
    return Head(head[3], rebuilder, parse_table(head[pos:]))


# --- rebuilding ---------------------------------------------------------------------------------

WORKERS: Final = max(1, min(8, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None
_SPLIT_POOL: ThreadPoolExecutor | None = None


def worker_pool() -> ThreadPoolExecutor:
    """Members are independent: inflate, deflate and try them on every core (zlib and xz run
    without the GIL)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="dg-worker")
    return _POOL


def split_pool() -> ThreadPoolExecutor:
    """The chunks of split members, apart from :func:`worker_pool` because jobs there wait for
    them (chunks wait for nothing)."""
    global _SPLIT_POOL
    if _SPLIT_POOL is None:
        _SPLIT_POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="dg-split")
    return _SPLIT_POOL


def _deflate_chunk(
    seg: Segment, points: Sequence[Split], index: int, data: bytes | memoryview, base: int
) -> bytes | None:
    """Chunk ``index`` of a split member, from its contents ``data`` (which start at contents
    offset ``base`` and hold what the chunk reads)."""
    start, stop, begin = _chunk_input(points, index, seg.contents_len, seg.mem_level)
    return deflate_resume(
        memoryview(data)[start - base : stop - base],
        begin,
        seg.level,
        seg.mem_level,
        _chunk_out(points, index, seg.out_len),
        finish=index + 1 == len(points),
    )


def _deflate_split(seg: Segment, contents: bytes | memoryview, what: str) -> bytes:
    points = [(0, 0), *seg.splits]
    if len(contents) != seg.contents_len:
        return _check_member(seg, b"", what)
    chunks = list(
        split_pool().map(lambda i: _deflate_chunk(seg, points, i, contents, 0), range(len(points)))
    )
    made = [chunk for chunk in chunks if chunk is not None]
    return _check_member(seg, b"".join(made) if len(made) == len(chunks) else b"", what)


class _SplitDeflater:
    """A large split member's deflate, fed its contents as they come: each chunk goes to the
    split pool once its contents (and lookahead) are in, and comes out in order.  At most one
    chunk per worker, and 16 MiB of their contents, are in flight, besides the chunk being
    collected (at most ``SPLIT_MAX`` and the lookahead)."""

    def __init__(self, seg: Segment, what: str) -> None:
        self._seg, self._what = seg, what
        self._points: list[Split] = [(0, 0), *seg.splits]
        self._held = bytearray()  # the contents from offset _base on
        self._base = 0
        self._next = 0  # the next chunk to submit
        self._jobs: deque[tuple[Future[bytes | None], int]] = deque()
        self._in_flight = 0  # contents bytes the jobs hold

    def compress(self, data: Piece, *, finish: bool = False) -> bytes:
        self._held += data
        out = []
        while self._next < len(self._points):
            start, stop, _ = _chunk_input(
                self._points, self._next, self._seg.contents_len, self._seg.mem_level
            )
            if self._base + len(self._held) < stop and not finish:
                break
            chunk = bytes(self._held[start - self._base : stop - self._base])
            while self._jobs and (
                len(self._jobs) >= WORKERS or self._in_flight + len(chunk) > 2 * SPLIT_MAX
            ):
                out.append(self._take())
            job = split_pool().submit(
                _deflate_chunk, self._seg, self._points, self._next, chunk, start
            )
            self._jobs.append((job, len(chunk)))
            self._in_flight += len(chunk)
            self._next += 1
            keep = (
                _chunk_input(self._points, self._next, self._seg.contents_len, self._seg.mem_level)[
                    0
                ]
                if self._next < len(self._points)
                else self._base + len(self._held)
            )
            del self._held[: keep - self._base]
            self._base = keep
        while self._jobs and (finish or self._jobs[0][0].done()):
            out.append(self._take())
        return b"".join(out)

    def _take(self) -> bytes:
        job, size = self._jobs.popleft()
        self._in_flight -= size
        made = job.result()
        if made is None:
            _check_member(self._seg, b"", self._what)
        assert made is not None
        return made


def _check_member(seg: Segment, out: bytes, what: str) -> bytes:
    if len(out) != seg.out_len or binascii.crc32(out) != seg.crc:
        raise IntegrityError(
            f"{what}: a member does not rebuild byte-exact with this build's {REBUILDER}: "
            "it cannot reproduce the object (see docs/wire-format.md, archive format)"
        )
    return out


def _deflate_member(
    seg: Segment,
    contents: bytes | memoryview,
    known: KnownDeflates,
    memo: DeflateMemo | None,
    what: str,
) -> bytes:
    """The member's compressed bytes: the reference's own where it holds this very member, or
    the memo's (deflate is deterministic, so they are what deflating would give), else
    deflated (and memoed)."""
    found = _known_member(known, seg) or _memo_member(memo, seg)
    digest = span_digest(contents) if found is not None or memo is not None else b""
    if found is not None and found.contents_digest == digest:
        return bytes(found.compressed)
    if seg.splits:
        out = _deflate_split(seg, contents, what)
    else:
        out = _check_member(seg, deflate_raw(contents, seg.level, seg.mem_level), what)
    if memo is not None:
        memo.add(seg.crc, out, digest, (seg.level, seg.mem_level), seg.splits)
    return out


def _known_member(known: KnownDeflates, seg: Segment) -> KnownDeflate | None:
    """The known member this segment would rebuild to, if its contents are the known ones."""
    found = known.get((seg.crc, seg.out_len))
    if found is not None and (found.level, found.mem_level) == (seg.level, seg.mem_level):
        return found
    return None


@dataclass
class Learning:
    """What a rebuild learns: the deflated members it made, as an expansion learns them (a
    reference's compact form rebuilt is its expansion, with these its known deflates).
    Members streamed out are not kept: then it is not ``complete``."""

    known: KnownDeflates = field(default_factory=dict)
    complete: bool = True

    def made(self, seg: Segment, contents: bytes | memoryview, out: bytes) -> None:
        self.known[(seg.crc, seg.out_len)] = KnownDeflate(
            memoryview(out), span_digest(contents), seg.level, seg.mem_level
        )


@dataclass(frozen=True)
class _Memoed:
    deflate: KnownDeflate
    splits: tuple[Split, ...]


_MEMO_MAGIC: Final = b"DGMEMO1\n"


class DeflateMemo:
    """Members deflated lately against one reference, by their compressed bytes' (CRC-32,
    length), so that a put or get does not deflate them again: a member changed since the
    reference mostly stays changed, so each release's put and get holds most of the previous
    one's (botocore: 50 MB of service models re-deflated at level 9 per get).  Each entry is
    what the pinned zlib made of contents with this digest, or a member it was proven to
    reproduce; like a known member, an entry is taken only when the contents' digest (or the
    compressed bytes) match.  At most ``limit`` compressed bytes, least recently used dropped
    first; shared by the worker threads.  ``name``: what a cache keeps it as."""

    def __init__(
        self, limit: int, entries: Iterable[tuple[int, _Memoed]] = (), *, name: str = ""
    ) -> None:
        self.limit = limit
        self.name = name
        self.size = 0
        #: compressed bytes added since :meth:`pieces` last took them
        self.fresh = 0
        self._entries: OrderedDict[tuple[int, int], _Memoed] = OrderedDict()
        self._lock = threading.Lock()
        for crc, memoed in entries:
            self._put((crc, len(memoed.deflate.compressed)), memoed)
        self.fresh = 0

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, crc: int, length: int, params: Params | None = None) -> _Memoed | None:
        """The entry for compressed bytes of this CRC-32 and length (with these settings)."""
        with self._lock:
            found = self._entries.get((crc, length))
            if found is None:
                return None
            if params is not None and (found.deflate.level, found.deflate.mem_level) != params:
                return None
            self._entries.move_to_end((crc, length))
            return found

    def add(
        self,
        crc: int,
        compressed: bytes | memoryview,
        contents_digest: bytes,
        params: Params,
        splits: tuple[Split, ...],
    ) -> None:
        """Memo ``compressed``, what these settings make of contents with this digest (a view
        is copied: it would keep what it is a view of alive)."""
        if len(compressed) > self.limit:
            return
        with self._lock:
            if (crc, len(compressed)) not in self._entries:
                deflate = KnownDeflate(memoryview(bytes(compressed)), contents_digest, *params)
                self._put((crc, len(compressed)), _Memoed(deflate, splits))

    def _put(self, key: tuple[int, int], memoed: _Memoed) -> None:
        self._entries[key] = memoed
        self.size += key[1]
        self.fresh += key[1]
        while self.size > self.limit:
            (_, dropped), _ = self._entries.popitem(last=False)
            self.size -= dropped

    def pieces(self) -> list[bytes | memoryview]:
        """The entries as pieces to store (:meth:`parse` reads them back)."""
        with self._lock:
            entries = list(self._entries.items())
            self.fresh = 0
        head = [_MEMO_MAGIC, varint(len(entries))]
        for (crc, length), memoed in entries:
            found = memoed.deflate
            head.append(
                crc.to_bytes(4, "big")
                + varint(length)
                + found.contents_digest
                + bytes([found.level, found.mem_level])
                + _encode_splits(memoed.splits)
            )
        return [b"".join(head), *(memoed.deflate.compressed for _, memoed in entries)]

    @classmethod
    def parse(cls, data: bytes, limit: int, *, name: str = "") -> DeflateMemo | None:
        """The memo :meth:`pieces` stored; None if ``data`` is not one, or is more than
        ``limit`` (its entries are views of it: dropping some would not free it)."""
        if not data.startswith(_MEMO_MAGIC):
            return None
        view = memoryview(data)
        try:
            count, pos = read_varint(view, len(_MEMO_MAGIC))
            if count > len(data):
                return None
            heads = []
            for _ in range(count):
                crc = int.from_bytes(view[pos : pos + 4], "big")
                length, pos = read_varint(view, pos + 4)
                digest, level, mem_level = bytes(view[pos : pos + 32]), *view[pos + 32 : pos + 34]
                if view[pos + 34] != SPLITS:
                    return None
                splits, pos = _parse_splits(view, pos + 35)
                heads.append((crc, length, digest, level, mem_level, splits))
            if sum(head[1] for head in heads) > limit:
                return None
            entries = []
            for crc, length, digest, level, mem_level, splits in heads:
                compressed = view[pos : pos + length]
                if len(compressed) != length or binascii.crc32(compressed) != crc:
                    return None
                pos += length
                deflate = KnownDeflate(compressed, digest, level, mem_level)
                entries.append((crc, _Memoed(deflate, splits)))
        except (IntegrityError, IndexError):
            return None
        if pos != len(view):
            return None
        return cls(limit, entries, name=name)


def _memo_member(memo: DeflateMemo | None, seg: Segment) -> KnownDeflate | None:
    """The memo's entry this segment would rebuild to, if its contents are the memoed ones."""
    found = memo.find(seg.crc, seg.out_len, (seg.level, seg.mem_level)) if memo else None
    return found.deflate if found is not None else None


def rebuild_document(
    doc: bytes | memoryview,
    reference: bytes,
    known: KnownDeflates,
    what: str,
    depth: int = 0,
    learn: Learning | None = None,
    memo: DeflateMemo | None = None,
) -> bytes:
    """A whole (nested) document back to its bytes, in memory."""
    rebuilder = Rebuilder(
        reference, what, None, known=known, depth=depth, parallel=False, learn=learn, memo=memo
    )
    out = b"".join(bytes(piece) for piece in rebuilder.feed(doc))
    rebuilder.finish()
    return out


Piece = bytes | memoryview


class Rebuilder:
    """Fed an expanded stream in pieces, returns the original bytes in order.

    RAW payload passes through, REF slices the reference, KNOWN is a deflated member of the
    reference's, small DEFLATE members are deflated in parallel, large ones as a stream; small
    nested documents are rebuilt whole, large ones (a ``.tar.gz``'s tar) as a stream; a TAR's
    body streams between its headers.
    """

    def __init__(
        self,
        reference: bytes,
        what: str,
        segments: list[Segment] | None,
        *,
        known: KnownDeflates | None = None,
        depth: int = 0,
        parallel: bool = True,
        learn: Learning | None = None,
        memo: DeflateMemo | None = None,
    ) -> None:
        self._reference = reference
        self._known: KnownDeflates = known or {}
        self._learn = learn
        self._memo = memo
        self._what = what
        self._depth = depth
        self._parallel = parallel
        self._pending = bytearray()  # header/table bytes, or a member's payload, being collected
        self._state = "table-length" if segments is None else "body"
        self._table_len = 0
        self._segments: list[Segment] = segments or []
        self._index = 0
        self._left = 0  # payload bytes the current segment still takes
        # A large DEFLATE member is rebuilt as it arrives: deflated in a stream, or, when it is a
        # known member, its contents hashed to be replaced by the known bytes at its end.
        self._stream: Deflater | _SplitDeflater | None = None
        self._stream_out = 0
        self._stream_crc = 0
        self._stream_known: KnownDeflate | None = None
        self._stream_digest = hashlib.sha256()
        self._stream_in = 0  # contents bytes streamed so far
        # ... and a large DEFLATE_NESTED member's document is rebuilt as it arrives, by this
        self._nested: Rebuilder | None = None
        self._tar: TarJoiner | None = None
        self._tar_out = 0

    def _parse_prefix(self) -> bool:
        """Consume a nested document's table from ``_pending``; False until complete."""
        buf = self._pending
        if self._state == "table-length":
            try:
                self._table_len, pos = read_varint(buf, 0)
            except IntegrityError:
                if len(buf) >= 10:
                    raise
                return False
            del buf[:pos]
            self._state = "table"
        if len(buf) < self._table_len:
            return False
        self._segments = parse_table(bytes(buf[: self._table_len]))
        del buf[: self._table_len]
        self._state = "body"
        return True

    # body ---------------------------------------------------------------------------------------

    def feed(self, data: Piece) -> list[Piece]:
        out: list[Piece | Future[bytes]] = []
        view = memoryview(data).cast("B")
        if self._state != "body":
            self._pending += view
            view = memoryview(b"")
            if not self._parse_prefix():
                return []
            view = memoryview(bytes(self._pending))
            self._pending.clear()
        pos = 0
        while True:
            self._start_segments(out)
            if self._index >= len(self._segments) or pos >= len(view):
                break
            seg = self._segments[self._index]
            take = min(self._left, len(view) - pos)
            piece = view[pos : pos + take]
            pos += take
            self._left -= take
            if seg.kind == RAW:
                out.append(piece)
            elif self._tar is not None:
                self._tar_pieces(self._tar.feed(piece), out)
            elif self._stream_known is not None or self._stream is not None:
                if self._nested is None:
                    self._stream_contents(seg, piece, out)
                else:  # its headers come 512 bytes at a time: deflated together
                    self._stream_contents(seg, b"".join(self._nested.feed(piece)), out)
            else:
                self._pending += piece
            if self._left == 0:
                self._end_segment(seg, out)
        if pos < len(view):
            raise IntegrityError(f"{self._what}: archive delta has bytes past its last member")
        return [p.result() if isinstance(p, Future) else p for p in out]

    def _start_segments(self, out: list[Piece | Future[bytes]]) -> None:
        """Begin the next segment(s); those taking no payload are finished at once."""
        while self._left == 0 and self._index < len(self._segments):
            seg = self._segments[self._index]
            if seg.kind == REF:
                end = seg.offset + seg.out_len
                if end > len(self._reference):
                    raise IntegrityError(f"{self._what}: archive delta points past its reference")
                out.append(memoryview(self._reference)[seg.offset : end])
                self._index += 1
                continue
            if seg.kind == KNOWN:
                found = self._known.get((seg.crc, seg.out_len))
                if found is None:
                    raise IntegrityError(
                        f"{self._what}: archive delta names a member its reference does not hold"
                    )
                out.append(found.compressed)
                self._index += 1
                continue
            self._left = seg.payload_len
            if seg.kind == TAR:
                self._tar, self._tar_out = TarJoiner(seg.records, self._what), 0
            elif seg.kind in (DEFLATE, DEFLATE_NESTED) and seg.payload_len > STREAM_MEMBER:
                if seg.kind == DEFLATE_NESTED:
                    self._check_depth()
                    self._nested = Rebuilder(
                        self._reference,
                        self._what,
                        None,
                        known=self._known,
                        depth=self._depth + 1,
                        parallel=self._parallel,  # on this thread, not a pool worker's
                        learn=self._learn,
                        memo=self._memo,
                    )
                if self._learn is not None:
                    self._learn.complete = False  # its output is streamed, not kept
                self._stream_in = 0
                self._stream_known = _known_member(self._known, seg)
                if seg.kind == DEFLATE and self._stream_known is None:
                    self._stream_known = _memo_member(self._memo, seg)
                if self._stream_known is not None:
                    self._stream_digest = hashlib.sha256()
                else:
                    self._stream = (
                        _SplitDeflater(seg, self._what)
                        if seg.splits
                        else Deflater(seg.level, seg.mem_level)
                    )
                    self._stream_out = 0
                    self._stream_crc = 0
            if self._left == 0:
                self._end_segment(seg, out)
            else:
                return

    def _stream_contents(
        self, seg: Segment, piece: Piece, out: list[Piece | Future[bytes]], *, last: bool = False
    ) -> None:
        """The next contents of a streamed member: hashed when it may be the known one, else
        deflated."""
        self._stream_in += len(piece)
        if self._stream_known is not None:
            self._stream_digest.update(piece)
            return
        assert self._stream is not None
        produced = self._stream.compress(piece, finish=last)
        self._stream_out += len(produced)
        self._stream_crc = binascii.crc32(produced, self._stream_crc)
        if self._stream_out > seg.out_len:
            _check_member(seg, b"", self._what)
        out.append(produced)

    def _tar_pieces(self, pieces: list[Piece], out: list[Piece | Future[bytes]]) -> None:
        self._tar_out += sum(len(p) for p in pieces)
        out += pieces

    def _check_depth(self) -> None:
        if self._depth + 1 > MAX_DEPTH:
            raise IntegrityError(f"{self._what}: archive delta nests too deep")

    def _end_segment(self, seg: Segment, out: list[Piece | Future[bytes]]) -> None:
        self._index += 1
        if seg.kind == RAW:
            return
        if seg.kind == PATCH:
            end = seg.offset + seg.out_len
            if end > len(self._reference):
                raise IntegrityError(f"{self._what}: archive delta points past its reference")
            out.append(byte_undelta(self._pending, memoryview(self._reference)[seg.offset : end]))
            self._pending.clear()
            return
        if self._tar is not None:
            self._tar.finish()
            self._tar = None
            if self._tar_out != seg.out_len:
                raise IntegrityError(f"{self._what}: a tar rebuilds to the wrong size")
            return
        if self._nested is not None:
            self._nested.finish()
            self._nested = None
            if self._stream_in != seg.inner_len:
                raise IntegrityError(f"{self._what}: a nested archive rebuilds to the wrong size")
        if self._stream_known is not None:
            found, self._stream_known = self._stream_known, None
            if self._stream_digest.digest() != found.contents_digest:
                _check_member(seg, b"", self._what)
            out.append(found.compressed)
            return
        if self._stream is not None:
            self._stream_contents(seg, b"", out, last=True)
            self._stream = None
            if self._stream_out != seg.out_len or self._stream_crc != seg.crc:
                _check_member(seg, b"", self._what)
            return
        payload = bytes(self._pending)
        self._pending.clear()
        job = self._job(seg, payload)
        if self._parallel:  # nested documents rebuild without the pool: no waiting on itself
            out.append(worker_pool().submit(job))
        else:
            out.append(job())

    def _job(self, seg: Segment, payload: bytes) -> Callable[[], bytes]:
        what, reference, known, depth = self._what, self._reference, self._known, self._depth
        learn, memo = self._learn, self._memo
        if seg.kind in (NESTED, DEFLATE_NESTED):
            self._check_depth()

        def deflated(contents: bytes) -> bytes:
            out = _deflate_member(seg, contents, known, memo if seg.kind == DEFLATE else None, what)
            if learn is not None:
                learn.made(seg, contents, out)
            return out

        def run() -> bytes:
            if seg.kind == DEFLATE:
                return deflated(payload)
            inner = rebuild_document(payload, reference, known, what, depth + 1, learn, memo)
            if seg.kind == NESTED:
                if len(inner) != seg.out_len:
                    raise IntegrityError(f"{what}: a nested archive rebuilds to the wrong size")
                return inner
            if len(inner) != seg.inner_len:
                raise IntegrityError(f"{what}: a nested archive rebuilds to the wrong size")
            return deflated(inner)

        return run

    def finish(self) -> None:
        if self._state != "body" or self._index < len(self._segments) or self._left:
            raise IntegrityError(f"{self._what}: archive delta is truncated")
