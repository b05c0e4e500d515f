"""``archive``: zips, jars, wheels and gzip streams delta-encoded by their members' contents.

A stored object is ``ARCHIVE_MAGIC``, the xz-compressed head of the file's expanded stream
(``_document.py``: the rebuilder and the segment table) behind its length, and a VCDIFF delta whose
source is the reference's *source form* and whose target is the expanded payload: unchanged
members are copied from the reference by offset, changed ones are delta-encoded uncompressed and
deflated again on read by the zlib pinned in ``xdelta_ffi``.  Every put rebuilds what it is about
to store and compares the SHA-256 before the object is written; files this format cannot represent
(not an archive, a reference that is not one, members no zlib setting reproduces) are stored in
the ``vcdiff`` format instead, and the summary says why.

The magic makes deltaglider 6.2 (and any VCDIFF reader) fail at once on these objects instead of
decoding them against the wrong bytes.
"""

from __future__ import annotations

import hashlib
import logging
import lzma
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio

from xdelta_ffi import DEFAULT_LEVEL, Decoder, Encoder, XDeltaError

from .._core.policy import MAGIC_BYTES, compress_added_bytes
from .._engine.cache import ReferenceSource
from .._engine.codec import DECODER_MEMORY, CodecRunner, EncodeResult, EncoderPlan
from .._exceptions import DeltaGliderError, IntegrityError
from .._tasks import KeyedLocks
from ._containers import expected_expansion, file_expected_expansion, is_gzip
from ._document import (
    DEFLATE,
    DEFLATE_NESTED,
    NESTED,
    REBUILDER,
    SAME_FORM,
    STREAM_VERSION,
    WORKERS,
    DeflateMemo,
    Expander,
    Head,
    KnownDeflates,
    Learning,
    Rebuilder,
    ReferenceExpansion,
    ReferenceForm,
    expand_reference,
    form_pieces,
    parse_form,
    parse_head,
    read_varint,
    reference_form,
    varint,
    worker_pool,
)

log = logging.getLogger("deltaglider_async")

ARCHIVE_MAGIC: Final = b"DGARCH1\n"
#: larger files are kept whole in memory neither at put nor at get: vcdiff takes them
MAX_ARCHIVE: Final = 512 << 20
#: source forms kept in memory across puts and gets, as a share of the memory budget's room
#: (the latest one is always kept)
_FORMS_SHARE: Final = 4
#: a memo of members deflated lately holds twice the reference's size, at least this much
_MEMO_FLOOR: Final = 4 << 20
#: the top-level segments of an expansion that are members kept as their contents
_EXPANDED_KINDS: Final = (DEFLATE, DEFLATE_NESTED, NESTED)
#: forms offered by compact references' rebuilds held until taken (a reference read for a
#: ``vcdiff`` delta of its space leaves one nobody takes)
_OFFERED: Final = 2


@dataclass(frozen=True)
class _Encoded:
    result: EncodeResult | None
    why_not: str = ""


#: how a gzip stream's payload (one long member: a tar) is encoded: at level 9, with the whole
#: source as one block (xdelta3 then indexes it in one reverse pass, as the CLI does).  On the
#: expansions of seven sdist pairs (pip, requests, setuptools, botocore, awscli), one block alone
#: made deltas 0.8-29 % smaller, and with level 9 3-40 % smaller, for 1-2x the encode time.  Zip
#: payloads stay at level 6 in blocks: there one block made one of seven pairs 25 % larger (the
#: others within 1 %), and level 9 changed them by -3 to +6 % for up to 2x the time.
_STREAM_LEVEL: Final = 9


#: payload bytes given to the encoder at a time
_FEED: Final = 4 << 20


def _vcdiff(
    source: bytes | memoryview,
    target: list[bytes | memoryview],
    plan: EncoderPlan,
    *,
    one_stream: bool,
) -> bytes:
    """VCDIFF of the concatenation of ``target``'s pieces, each let go of once it is fed (the
    encoder keeps what it has not encoded yet, at most a window)."""
    size = sum(len(piece) for piece in target)
    encoder = Encoder(
        source,
        source_size=len(source),
        target_size=size,
        level=_STREAM_LEVEL if one_stream else DEFAULT_LEVEL,
        block_size=_whole_block(len(source)) if one_stream else None,
        secondary_data=compress_added_bytes(_first_bytes(target, MAGIC_BYTES)),
        table_memory=plan.table_memory,
        cache_size=plan.cache_size,
    )
    try:
        out: list[bytes] = []
        chunk = bytearray()  # small pieces (a zip's headers) go in together: a call costs
        target.reverse()
        while target:
            chunk += target.pop()
            if len(chunk) >= _FEED or not target:
                out += encoder.stream(chunk)
                chunk.clear()
        out += encoder.finish_stream()
        return b"".join(out)
    finally:
        encoder.close()


def _first_bytes(pieces: list[bytes | memoryview], count: int) -> bytes:
    out = bytearray()
    for piece in pieces:
        if len(out) >= count:
            break
        out += piece[: count - len(out)]
    return bytes(out)


def _whole_block(size: int) -> int:
    return 1 << max(14, (size - 1).bit_length())


def _unvcdiff(source: bytes | memoryview, delta: bytes, target_size: int | None) -> Iterable[bytes]:
    decoder = Decoder(source, source_size=len(source), target_size=target_size)
    try:
        yield from decoder.stream(delta)
        yield from decoder.finish_stream()
    finally:
        decoder.close()


def _encode_sync(
    form: ReferenceForm,
    target: Path,
    delta_out: Path,
    budget: int | None,
    plan: EncoderPlan,
    memo: DeflateMemo | None = None,
) -> _Encoded:
    if target.stat().st_size > MAX_ARCHIVE:
        return _Encoded(None, f"larger than {MAX_ARCHIVE >> 20} MiB")
    data = target.read_bytes()
    sha, size_in = hashlib.sha256(data).hexdigest(), len(data)
    one_stream = is_gzip(data)
    expander = Expander(form, learn=True, version=form.version, memo=memo)
    head, parts = expander.expand_parts(data)
    del data  # from here on the expansion stands for it
    stats = expander.stats
    if stats.members == 0:
        return _Encoded(None, "not a zip or gzip archive")
    if stats.expanded + stats.unchanged == 0:
        return _Encoded(None, "no deflated member that re-deflates byte-exact")
    packed = _xz_small(head)
    payload_size = sum(len(part) for part in parts)
    body = _vcdiff(form.source, parts, plan, one_stream=one_stream)
    delta = ARCHIVE_MAGIC + varint(len(packed)) + packed + body
    del body
    # The proof: what a reader will do, on these very bytes, before anything is stored.
    rebuilt = hashlib.sha256()
    size = 0
    try:
        parsed, body = _split(delta, str(target))
        # Members whose settings the expansion just proved are not deflated a second time; the
        # reference's own come last, so that KNOWN segments resolve as a reader resolves them.
        known = {**expander.learnt, **form.known}
        rebuilder = Rebuilder(form.raw, str(target), parsed.segments, known=known)
        for piece in _unvcdiff(form.source, body, payload_size):
            for out in rebuilder.feed(piece):
                rebuilt.update(out)
                size += len(out)
        rebuilder.finish()
    except (IntegrityError, XDeltaError) as exc:
        return _Encoded(None, f"does not rebuild byte-exact ({exc})")
    if rebuilt.hexdigest() != sha or size != size_in:
        return _Encoded(None, "does not rebuild byte-exact")
    delta_out.write_bytes(delta)
    over = budget is not None and len(delta) > budget
    return _Encoded(EncodeResult(sha, size_in, len(delta), over, format_name=ARCHIVE.name))


def _xz_small(data: bytes) -> bytes:
    """xz at preset 6 with a dictionary no larger than ``data`` needs: preset 6's own 8 MiB
    dictionary makes a 94 MiB encoder, the largest allocation of a whole put."""
    dictionary = min(8 << 20, max(1 << 16, 1 << (len(data) - 1).bit_length()))
    return lzma.compress(
        data, filters=[{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": dictionary}]
    )


def _split(delta: bytes, what: str) -> tuple[Head, bytes]:
    """(head, VCDIFF bytes) of a whole stored delta."""
    found = _parse_prefix(delta, what)
    if found is None:
        raise IntegrityError(f"{what}: archive-format delta is truncated")
    return found


def _parse_prefix(data: bytes, what: str) -> tuple[Head, bytes] | None:
    """The head and the rest once ``data`` holds the magic and the head; None before."""
    if data[: len(ARCHIVE_MAGIC)] != ARCHIVE_MAGIC[: len(data)]:
        raise IntegrityError(f"{what}: not an archive-format delta")
    if len(data) < len(ARCHIVE_MAGIC) + 1:
        return None
    try:
        length, pos = read_varint(data, len(ARCHIVE_MAGIC))
    except IntegrityError:
        if len(data) > len(ARCHIVE_MAGIC) + 10:
            raise
        return None
    if length > 1 << 30:
        raise IntegrityError(f"{what}: archive-format delta has an implausible head")
    if len(data) < pos + length:
        return None
    try:
        head = lzma.decompress(data[pos : pos + length], memlimit=1 << 30)
    except lzma.LZMAError as exc:
        raise IntegrityError(f"{what}: archive-format head is corrupt ({exc})") from exc
    parsed = parse_head(head)
    if parsed.rebuilder != REBUILDER:
        log.info("%s: written with %s, rebuilt with %s", what, parsed.rebuilder, REBUILDER)
    return parsed, data[pos + length :]


REFERENCE_MAGIC: Final = b"DGAREF1\n"
#: xz filters of stored references: preset 6 with a 2 MiB dictionary for the first
#: ``_DENSE_PIECES`` pieces, preset 2 for the rest.  Against preset 1, preset 6 stores the first
#: release of awscli wheels and sdists 15 % smaller and of pydantic-core 9 %, for 2 s more on
#: two cores (a space's first put only) and 24 MiB per stream being compressed instead of 9
#: (preset 6's own 8 MiB dictionary gains another 1 % for 89 MiB).  But it runs at 1-8 MB/s
#: per core (random decimal text: 1 MB/s, 30 % smaller) against preset 2's 10-15, so only the
#: first 24 MiB get it: a first put never spends more than about 12 s on two cores on it.
#: Preset 2 against 1 beyond them: botocore's 108 MB of JSON 7 % smaller, for 0.3 s more a piece.
_DENSE_FILTERS: Final = ({"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 2 << 20},)
_FAST_FILTERS: Final = ({"id": lzma.FILTER_LZMA2, "preset": 2},)
#: put before LZMA2 when the document holds x86 machine code: relative call and jump targets
#: made absolute repeat more (pydantic-core's first wheel 5 % smaller; text changes by 0.05 %)
_X86_FILTER: Final = {"id": lzma.FILTER_X86}
_DENSE_PIECES: Final = 3
#: what compressing one piece of a compact reference holds (measured: 24 MiB)
_XZ_MEMORY: Final = 24 << 20
_CHUNK: Final = 4 << 20
#: input bytes of each xz stream of a compact reference
_XZ_PIECE: Final = 8 << 20
#: ELF ``e_machine`` values of x86 code (EM_386, EM_X86_64), PE/COFF ``Machine`` values
#: (i386, AMD64) and Mach-O magics followed by an x86 CPU type, all little-endian
_ELF_X86: Final = (3, 62)
_PE_X86: Final = (0x14C, 0x8664)
_MACHO_X86: Final = (b"\xce\xfa\xed\xfe\x07\x00\x00\x00", b"\xcf\xfa\xed\xfe\x07\x00\x00\x01")


def holds_x86_code(data: bytes) -> bool:
    """Whether ``data`` holds an x86 executable or library (ELF, PE or Mach-O) anywhere."""
    at = data.find(b"\x7fELF")
    while at >= 0:
        if (
            data[at + 5 : at + 6] == b"\x01"
            and int.from_bytes(data[at + 18 : at + 20], "little") in _ELF_X86
        ):
            return True
        at = data.find(b"\x7fELF", at + 1)
    at = data.find(b"PE\x00\x00")
    while at >= 0:
        if int.from_bytes(data[at + 4 : at + 6], "little") in _PE_X86:
            return True
        at = data.find(b"PE\x00\x00", at + 1)
    return any(magic in data for magic in _MACHO_X86)


def encode_reference_sync(
    path: Path, out: Path, parallel: int = 1, sha256: str | None = None
) -> ReferenceForm | None:
    """Write the compact form of a space's first archive to ``out``: its expanded document
    (members' contents instead of their deflate streams) xz-compressed, proven to rebuild to the
    very bytes.  None when that would not be smaller (not an archive, nothing expands) or the
    file no longer has the SHA-256 ``sha256`` (it changed since it was hashed); else the form
    deltas against it need, from the same expansion.  ``parallel``: pieces compressed at once."""
    if path.stat().st_size > MAX_ARCHIVE:
        return None
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        return None
    expansion = expand_reference(data)
    if expansion.expanded == 0:
        return None
    expanded = varint(len(expansion.head)) + expansion.head + expansion.payload
    pieces = _xz_pieces(expanded, parallel, holds_x86_code(expansion.payload))
    if len(REFERENCE_MAGIC) + sum(map(len, pieces)) >= len(data):
        return None
    # The proof: the pieces decompress to the expansion (a reader decompresses their
    # concatenation as one stream), which rebuilds to the very bytes.  The members' settings
    # were proven as they were found, so their deflate output is taken as known.
    try:
        if not _unpacks_to(pieces, expanded):
            return None
        if _rebuild_compact(expanded, str(path), expansion.known) != data:
            return None
    except (IntegrityError, lzma.LZMAError):
        return None
    with out.open("wb") as sink:
        sink.write(REFERENCE_MAGIC)
        sink.writelines(pieces)
    return reference_form(data, expansion)


def _xz_pieces(data: bytes, parallel: int, x86: bool) -> list[bytes]:
    """xz streams of fixed-size pieces (the same bytes on every machine), ``parallel`` at a time
    on the cores; a 2 MiB dictionary loses next to nothing at the seams of 8 MiB pieces."""
    view = memoryview(data)
    code = (_X86_FILTER,) if x86 else ()
    pieces = [
        (
            view[start : start + _XZ_PIECE],
            code + (_DENSE_FILTERS if index < _DENSE_PIECES else _FAST_FILTERS),
        )
        for index, start in enumerate(range(0, len(view), _XZ_PIECE))
    ]
    out: list[bytes] = []
    for start in range(0, len(pieces), parallel):
        out.extend(worker_pool().map(_xz_reference, pieces[start : start + parallel]))
    return out


def _xz_reference(job: tuple[memoryview, tuple[Mapping[str, int], ...]]) -> bytes:
    piece, filters = job
    return lzma.compress(piece, format=lzma.FORMAT_XZ, filters=filters)


def _unpacks_to(pieces: list[bytes], expanded: bytes) -> bool:
    view = memoryview(expanded)
    pos = 0
    for unpacked in worker_pool().map(lzma.decompress, pieces):
        if view[pos : pos + len(unpacked)] != unpacked:
            return False
        pos += len(unpacked)
    return pos == len(expanded)


def decode_reference_sync(body: bytes, what: str) -> bytes:
    """The reference's own bytes from its compact form."""
    return _decode_compact(body, what)[0]


def _decode_compact(body: bytes, what: str) -> tuple[bytes, ReferenceForm | None]:
    """The reference's own bytes from its compact form, and its source form, which that
    rebuild gives for nothing: the compact form is the reference's expansion, and the members
    it deflated are its known deflates (None when it streamed one out instead of keeping it)."""
    expanded = lzma.decompress(body[len(REFERENCE_MAGIC) :], memlimit=4 << 30)
    learn = Learning()
    raw = _rebuild_compact(expanded, what, None, learn)
    if not learn.complete:
        return raw, None
    length, pos = read_varint(expanded, 0)
    head = expanded[pos : pos + length]
    parsed = parse_head(head)
    members = sum(seg.kind in _EXPANDED_KINDS for seg in parsed.segments)
    expansion = ReferenceExpansion(head, expanded[pos + length :], learn.known, members)
    return raw, reference_form(raw, expansion, parsed.version)


def _rebuild_compact(
    expanded: bytes, what: str, known: KnownDeflates | None, learn: Learning | None = None
) -> bytes:
    length, pos = read_varint(expanded, 0)
    segments = parse_head(expanded[pos : pos + length]).segments
    rebuilder = Rebuilder(b"", what, segments, known=known, learn=learn)
    out = b"".join(bytes(p) for p in rebuilder.feed(memoryview(expanded)[pos + length :]))
    rebuilder.finish()
    return out


def reference_reader(
    fetch: Callable[[], AsyncIterator[bytes]], sha256: str, what: str
) -> Callable[[], AsyncIterator[bytes]]:
    """``fetch`` of a ``reference.bin``, yielding the reference's own bytes whether it is stored
    as they are or in compact form (told by its first bytes; a raw file that merely starts like
    the compact form is passed on as it is, since its SHA-256 then says which one it is)."""

    async def read() -> AsyncIterator[bytes]:
        pieces: list[bytes] = []
        size = 0
        source = fetch()
        async for chunk in source:
            pieces.append(chunk)
            size += len(chunk)
            if size >= len(REFERENCE_MAGIC):
                break
        head = b"".join(pieces)
        if not head.startswith(REFERENCE_MAGIC):
            if head:
                yield head
            async for chunk in source:
                yield chunk
            return
        pieces = [head]
        async for chunk in source:
            pieces.append(chunk)
        body = b"".join(pieces)

        def decode() -> bytes:
            try:
                raw, form = _decode_compact(body, what)
            except (IntegrityError, lzma.LZMAError, ValueError):
                return body
            if hashlib.sha256(raw).hexdigest() != sha256:
                return body
            if form is not None:
                ARCHIVE.offer(sha256, form)
            return raw

        raw = await anyio.to_thread.run_sync(decode)
        for start in range(0, len(raw), _CHUNK):
            yield raw[start : start + _CHUNK]

    return read


def _file_expansion(path: Path) -> int:
    with path.open("rb") as f:
        return file_expected_expansion(f, os.fstat(f.fileno()).st_size)


def _form_name(key: tuple[str, int]) -> str:
    """The reference cache's name for a source form: the reference, the stream version, and
    the build that rebuilds members (another build may reproduce other members)."""
    build = hashlib.sha256(REBUILDER.encode()).hexdigest()[:8]
    return f"f-{key[0]}-{key[1]}-{build}"


def _memo_name(key: tuple[str, int]) -> str:
    """The reference cache's name for the members deflated lately against a reference."""
    return "m" + _form_name(key)[1:]


def _too_large(need: int, codec: CodecRunner) -> str:
    return (
        f"its expansion needs {need >> 20} MiB, more than the memory budget leaves "
        f"({codec.memory.room >> 20} MiB; raise DG_MEMORY_LIMIT)"
    )


def _read_reference(reference: ReferenceSource | Path) -> bytes:
    if isinstance(reference, Path):
        return reference.read_bytes()
    source = reference.codec_source()
    if isinstance(source, bytes):
        return source
    return source(0, reference.size) if reference.size else b""


class Archive:
    name = "archive"
    takes_snapshots = True

    def __init__(self) -> None:
        #: by the reference's SHA-256 and the stream version of the form
        self._forms: OrderedDict[tuple[str, int], ReferenceForm] = OrderedDict()
        #: forms that came with a compact reference's rebuild, until a read or write takes them
        self._offered: OrderedDict[tuple[str, int], ReferenceForm] = OrderedDict()
        #: one expansion of a reference at a time: the puts of a bulk upload that encode
        #: against a new reference wait for the one that makes its form (or compacts it)
        self._building = KeyedLocks()
        #: members deflated lately against each form (by the form's key), and the names of
        #: the memos being stored
        self._memos: dict[tuple[str, int], DeflateMemo] = {}
        self._storing: set[str] = set()

    def offer(self, sha256: str, form: ReferenceForm) -> None:
        """A reference's form, made as its compact form was rebuilt: the read or write that
        fetched the reference takes it instead of expanding the reference again."""
        self._offered[(sha256, SAME_FORM.get(form.version, form.version))] = form
        while len(self._offered) > _OFFERED:
            self._offered.popitem(last=False)

    async def reference_body(
        self, codec: CodecRunner, path: Path, sha256: str, out: Path
    ) -> Mapping[str, str] | None:
        """Store the space's reference in compact form (see :func:`encode_reference_sync`), with
        as many pieces compressed at once as the cores and a quarter of the budget's room allow."""
        size = path.stat().st_size
        expansion = await anyio.to_thread.run_sync(_file_expansion, path) if size else 0
        # Held while compacting: the file, its expansion, the expanded copy the xz pieces are
        # cut from and the rebuilt bytes that prove them.
        held = 2 * (size + expansion)
        parallel = max(1, min(WORKERS, (codec.memory.room - held) // 4 // _XZ_MEMORY))
        need = held + parallel * _XZ_MEMORY
        if need > codec.memory.room:
            log.info("%s: reference stored as it is: %s", path, _too_large(need, codec))
            return None
        key = (sha256, STREAM_VERSION)
        async with self._building.hold(key):
            async with codec.memory.reserve(need, f"compacting {path.name}"):
                form = await anyio.to_thread.run_sync(
                    encode_reference_sync, path, out, parallel, sha256, limiter=codec.limiter
                )
            if form is None:
                return None
            self._keep(key, form, codec)
        await self._persist(codec, key, form)
        return {"dg-reference-form": self.name}

    def metadata(self, original_name: str) -> Mapping[str, str]:
        return {"dg-delta-format": self.name, "dg-archive-rebuilder": REBUILDER}

    def _cached_form(
        self, reference: ReferenceSource | Path, version: int = STREAM_VERSION
    ) -> ReferenceForm | None:
        if isinstance(reference, Path):
            return None
        key = (reference.sha256, SAME_FORM.get(version, version))
        found = self._forms.get(key)
        if found is not None:
            self._forms.move_to_end(key)
        return found

    async def _affordable_form(
        self, codec: CodecRunner, reference: ReferenceSource | Path, target: Path
    ) -> tuple[ReferenceForm | None, str]:
        """The reference's form, unless expanding both files would not fit the memory budget:
        judged from what their containers record before anything is expanded (a 190 MB wheel
        expands to 670 MB, which takes 40 s and 1.5 GB to find out); then (None, why)."""
        found = self._cached_form(reference)
        if found is not None:
            return found, ""

        def estimate() -> tuple[bytes | None, int, int]:
            if isinstance(reference, Path):
                return None, _file_expansion(reference), _file_expansion(target)
            raw = _read_reference(reference)
            return raw, expected_expansion(raw), _file_expansion(target)

        raw, ref_expansion, target_expansion = await anyio.to_thread.run_sync(
            estimate, limiter=codec.limiter
        )
        ref_size = reference.stat().st_size if isinstance(reference, Path) else reference.size
        held = ref_size + ref_expansion + target.stat().st_size + target_expansion
        need = codec.plan_encoder(ref_expansion, in_memory=True, beside=held).need + held
        if need > codec.memory.room:
            return None, _too_large(need, codec)
        return await self._form(codec, reference, raw=raw), ""

    async def _form(
        self,
        codec: CodecRunner,
        reference: ReferenceSource | Path,
        version: int = STREAM_VERSION,
        *,
        raw: bytes | None = None,
    ) -> ReferenceForm:
        """The reference's source form as stream ``version`` computes it: a delta decodes
        against the form of the version it was written in (``raw``: its bytes, if read)."""
        found = self._cached_form(reference, version)
        if found is not None:
            return found
        if isinstance(reference, Path):  # a file about to become a reference: nobody waits
            return await self._make_form(codec, reference, version, raw)
        async with self._building.hold((reference.sha256, SAME_FORM.get(version, version))):
            found = self._cached_form(reference, version)  # made while this waited
            if found is not None:
                return found
            return await self._make_form(codec, reference, version, raw)

    async def _make_form(
        self,
        codec: CodecRunner,
        reference: ReferenceSource | Path,
        version: int,
        raw: bytes | None,
    ) -> ReferenceForm:
        version = SAME_FORM.get(version, version)
        sha = None if isinstance(reference, Path) else reference.sha256

        def build() -> tuple[tuple[str, int], ReferenceForm, bool]:
            """(key, form, whether it was made here rather than found)."""
            nonlocal raw
            if raw is None:
                raw = _read_reference(reference)
            key = (sha or hashlib.sha256(raw).hexdigest(), version)
            found = self._forms.get(key)
            offered = self._offered.pop(key, None)
            if found is None and offered is not None:
                return key, offered, True
            if found is None and codec.derived is not None:
                kept = codec.derived.load_derived(_form_name(key))
                found = parse_form(kept, raw) if kept is not None else None
                if found is not None and found.version != version:
                    found = None
            if found is not None:
                return key, found, False
            return key, reference_form(raw, version=version), True

        key, form, made = await anyio.to_thread.run_sync(build, limiter=codec.limiter)
        self._keep(key, form, codec)
        if made:
            await self._persist(codec, key, form)
        return form

    async def _persist(self, codec: CodecRunner, key: tuple[str, int], form: ReferenceForm) -> None:
        """Keep an archive's form in the reference cache: a process that reads or writes against
        this reference next loads it instead of expanding the reference again (an awscli
        wheel's: 0.06 s instead of 1.2 s, a botocore wheel's 0.3 s instead of 2.3 s)."""
        if codec.derived is not None and form.is_archive:
            pieces = await anyio.to_thread.run_sync(form_pieces, form, limiter=codec.limiter)
            await codec.derived.keep_derived(_form_name(key), pieces)

    def _keep(self, key: tuple[str, int], form: ReferenceForm, codec: CodecRunner) -> None:
        self._forms[key] = form
        self._forms.move_to_end(key)
        total = sum(f.size + self._memo_size(k) for k, f in self._forms.items())
        while total > codec.memory.room // _FORMS_SHARE and len(self._forms) > 1:
            dropped_key, dropped = self._forms.popitem(last=False)
            total -= dropped.size + self._memo_size(dropped_key)
            self._memos.pop(dropped_key, None)

    def _memo_size(self, key: tuple[str, int]) -> int:
        memo = self._memos.get(key)
        return memo.size if memo is not None else 0

    async def _memo(
        self, codec: CodecRunner, reference: ReferenceSource | Path, form: ReferenceForm
    ) -> DeflateMemo | None:
        """The members deflated lately against ``reference`` (by this process, or by one before
        it that kept them in the reference cache), under its form's key."""
        if isinstance(reference, Path) or not form.is_archive:
            return None
        key = (reference.sha256, form.version)
        memo = self._memos.get(key)
        if memo is not None:
            return memo
        async with self._building.hold(("memo", key)):  # the gets of a bulk load it once
            memo = self._memos.get(key)
            return memo if memo is not None else await self._load_memo(codec, key, form)

    async def _load_memo(
        self, codec: CodecRunner, key: tuple[str, int], form: ReferenceForm
    ) -> DeflateMemo:
        # what changed since the reference can be all of a release, and more than the
        # reference (py4j's: every member of a 120 KB jar)
        limit = min(max(2 * len(form.raw), _MEMO_FLOOR), codec.memory.room // (2 * _FORMS_SHARE))
        name = _memo_name(key)

        def load() -> DeflateMemo | None:
            assert codec.derived is not None
            kept = codec.derived.load_derived(name)
            return DeflateMemo.parse(kept, limit, name=name) if kept is not None else None

        loaded = None
        if codec.derived is not None:
            loaded = await anyio.to_thread.run_sync(load, limiter=codec.limiter)
        memo = loaded or DeflateMemo(limit, name=name)
        if key in self._forms:  # dropped with it
            self._memos[key] = memo
        return memo

    async def _store_memo(self, codec: CodecRunner, memo: DeflateMemo | None) -> None:
        """Keep a memo that gained members in the reference cache, for the next process (one
        store at a time per memo: a store running now is soon followed by another)."""
        if memo is None or codec.derived is None or not memo.fresh or memo.name in self._storing:
            return
        self._storing.add(memo.name)
        try:
            await codec.derived.keep_derived(memo.name, memo.pieces())
        finally:
            self._storing.discard(memo.name)

    async def encode(
        self,
        codec: CodecRunner,
        reference: ReferenceSource | Path,
        target: Path,
        delta_out: Path,
        budget: int | None,
    ) -> EncodeResult:
        form: ReferenceForm | None = None
        size = reference.stat().st_size if isinstance(reference, Path) else reference.size
        why_not = f"reference larger than {MAX_ARCHIVE >> 20} MiB"
        if size <= MAX_ARCHIVE:
            form, why_not = await self._affordable_form(codec, reference, target)
        if form is not None:
            why_not = "the reference is not a zip or gzip archive"
            if form.is_archive:
                memo = await self._memo(codec, reference, form)
                encoded = await self._encode_archive(codec, form, target, delta_out, budget, memo)
                await self._store_memo(codec, memo)
                if encoded.result is not None:
                    return encoded.result
                why_not = encoded.why_not
        result = await codec.encode_file(reference, target, delta_out, budget)
        return result.with_note(f"archive format not used: {why_not}")

    async def _encode_archive(
        self,
        codec: CodecRunner,
        form: ReferenceForm,
        target: Path,
        delta_out: Path,
        budget: int | None,
        memo: DeflateMemo | None,
    ) -> _Encoded:
        # Held while encoding, beside the encoder: the reference's form, the target and its
        # expansion (estimated from the reference's own).
        target_size = target.stat().st_size
        expansion = len(form.source) * target_size // max(1, len(form.raw))
        held = form.size + target_size + expansion
        plan = codec.plan_encoder(len(form.source), in_memory=True, beside=held)
        if plan.need + held > codec.memory.room:
            return _Encoded(None, _too_large(plan.need + held, codec))
        try:
            async with codec.memory.reserve(plan.need + held, f"encoding {target.name}"):
                return await anyio.to_thread.run_sync(
                    _encode_sync,
                    form,
                    target,
                    delta_out,
                    budget,
                    plan,
                    memo,
                    limiter=codec.limiter,
                )
        except XDeltaError as exc:
            raise DeltaGliderError(f"{target}: encoding failed: {exc}", code="EncodeError") from exc

    def decode(
        self,
        codec: CodecRunner,
        reference: ReferenceSource,
        delta: AsyncIterator[bytes],
        target_size: int | None,
        what: str,
    ) -> AsyncIterator[bytes]:
        return self._decode(codec, reference, delta, what)

    async def _decode(
        self,
        codec: CodecRunner,
        reference: ReferenceSource,
        delta: AsyncIterator[bytes],
        what: str,
    ) -> AsyncIterator[bytes]:
        if reference.size > MAX_ARCHIVE:
            raise IntegrityError(f"{what}: its reference is too large for the archive format")
        chunks = aiter(delta)
        prefix = b""
        found = None
        while found is None:
            chunk = await anext(chunks, None)
            if chunk is None:
                raise IntegrityError(f"{what}: archive-format delta is truncated")
            prefix += chunk
            found = _parse_prefix(prefix, what)
        head, rest = found
        del prefix
        form = await self._form(codec, reference, head.version)
        memo = await self._memo(codec, reference, form)
        async with codec.memory.reserve(form.size + DECODER_MEMORY, f"decoding {what}"):
            rebuilt = self._rebuild(codec, form, head, rest, chunks, what, memo)
            async for out in rebuilt:
                yield out
        await self._store_memo(codec, memo)

    async def _rebuild(
        self,
        codec: CodecRunner,
        form: ReferenceForm,
        head: Head,
        first: bytes,
        rest: AsyncIterator[bytes],
        what: str,
        memo: DeflateMemo | None,
    ) -> AsyncIterator[bytes]:
        """The file, from the VCDIFF of its payload: ``first``, then ``rest``."""
        decoder = Decoder(form.source, source_size=len(form.source), target_size=None)
        rebuilder = Rebuilder(form.raw, what, head.segments, known=form.known, memo=memo)

        def step(chunk: bytes, last: bool) -> list[bytes]:
            pieces = list(decoder.stream(chunk)) if chunk else []
            if last:
                pieces.extend(decoder.finish_stream())
            out = [bytes(p) for piece in pieces for p in rebuilder.feed(piece)]
            if last:
                rebuilder.finish()
            return out

        async def body() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for chunk in rest:
                yield chunk

        try:
            async for chunk in body():
                if chunk:
                    for out in await anyio.to_thread.run_sync(
                        step, chunk, False, limiter=codec.limiter
                    ):
                        yield out
            for out in await anyio.to_thread.run_sync(step, b"", True, limiter=codec.limiter):
                yield out
        except XDeltaError as exc:
            raise IntegrityError(f"{what}: delta cannot be decoded: {exc}") from exc
        finally:
            decoder.close()


ARCHIVE = Archive()
