"""Streaming VCDIFF encoder and decoder over one ``xd3_stream`` each.

The C glue (``_glue.c``) runs xdelta3's state machine and answers source-block requests itself
whenever it can: from a buffer in memory (no copy), from a file by ``pread`` into a CLOCK block
cache, or from that cache.  Only a cache miss on a caller-supplied ``read_block`` source comes back
to Python.  cffi releases the GIL around every call, so codecs in different threads run in parallel.
"""

from __future__ import annotations

import io
import mmap
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Protocol, TypeAlias

from ._errors import (
    CodecStateError,
    CorruptDeltaError,
    SourceMismatchError,
    SourceReadError,
    TruncatedDeltaError,
    XDeltaError,
)
from ._xdelta3_cffi import ffi, lib

KiB: Final = 1024
MiB: Final = 1024 * KiB

#: Default compression level (the CLI's -N).  Chosen from benchmarks/results: see docs/codec.md.
DEFAULT_LEVEL: Final = 6
#: Debian's xdelta3 3.0.11 cannot decode windows over 16 MiB; 8 MiB is the CLI's default.
MAX_WINDOW: Final = 16 * MiB
DEFAULT_WINDOW: Final = 8 * MiB
#: With 32-bit usize_t the source window is capped at 2 GiB.
MAX_SOURCE_WINDOW: Final = 2048 * MiB
#: Source block for read_block and in-memory sources: one Python call per cache miss.
DEFAULT_BLOCK: Final = 256 * KiB
#: Source block when the encoder reads a file.  Its false match candidates land anywhere in the
#: source, so with a cache smaller than the source most misses read a block to compare a few
#: bytes: 16 KiB blocks encode a 1 GiB file in 2.2 s where 256 KiB blocks took 6.4 s.  (The
#: decoder reads near the target's position: block size made no measurable difference there.)
ENCODER_FILE_BLOCK: Final = 16 * KiB
#: Memory for the encoder's source block cache (only used for file and read_block sources).
DEFAULT_ENCODER_CACHE: Final = 128 * MiB
DEFAULT_DECODER_CACHE: Final = 16 * MiB
#: Cap on the source hash table: beyond it the matcher samples the source more sparsely.
DEFAULT_TABLE_MEMORY: Final = 256 * MiB

_SECONDARY: Final = {
    "lzma": lib.XD3_SEC_LZMA,
    "djw": lib.XD3_SEC_DJW,
    "fgk": lib.XD3_SEC_FGK,
    None: 0,
}
# The matcher presets' source-hash step (LSTEP) by level, from xdelta3-cfgs.h.
_LARGE_STEP: Final = {0: 26, 1: 26, 2: 15, 3: 8, 4: 8, 5: 8, 6: 3, 7: 2, 8: 2, 9: 2}
_USIZE: Final = 4
_ALLOCSIZE: Final[int] = int(lib.XD3_ALLOCSIZE)

ReadBlock: TypeAlias = Callable[[int, int], bytes]


class HasFileno(Protocol):
    def fileno(self) -> int: ...


#: Objects exporting the buffer protocol (collections.abc.Buffer is 3.12+).
Buffer: TypeAlias = bytes | bytearray | memoryview | mmap.mmap
SourceLike: TypeAlias = str | os.PathLike[str] | Buffer | ReadBlock

lib.dg_global_init()


def release_memory() -> int:
    """Unmap the codec memory kept for reuse after codecs end (at most 256 MiB per process, which
    the kernel may reclaim under pressure anyway); returns the bytes released."""
    return int(lib.dg_release_pool())


def set_pool_limit(limit: int) -> None:
    """Cap the memory kept for reuse (at most its built-in 256 MiB); what is kept beyond the new
    cap is unmapped now."""
    lib.dg_set_pool_limit(max(0, limit))


def pooled_memory() -> int:
    """Bytes of freed codec memory currently kept for the next codec."""
    return int(lib.dg_pooled_bytes())


def adler32(data: Buffer) -> int:
    """Adler-32 of ``data`` (seed 1, as zlib), by the glue's kernel: AVX2 where the CPU has it
    (~30 GB/s here against zlib's 1.5), with the GIL released."""
    view = memoryview(data).cast("B")
    if not view.nbytes:
        return 1
    with ffi.from_buffer(view) as buf:
        return int(lib.dg_adler32_kernel(buf, view.nbytes, 1))


def _pow2ceil(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _pow2floor(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def source_window_for(
    source_size: int,
    target_size: int | None = None,
    *,
    level: int = DEFAULT_LEVEL,
    table_memory: int = DEFAULT_TABLE_MEMORY,
) -> int:
    """Power-of-two source window covering about the whole source and target (capped at 2 GiB).

    xdelta3 looks for a match within about half the window around the current target offset, so
    content moved by up to half the window is found.  Doubling the window would reach any move but
    doubles the source hash table, which made 64 MiB encodes 0.69x the CLI's speed (measured): not
    worth it for versioned artifacts.  For the same reason a file at most 1/8 over a power of two
    keeps that power (reach: 44 % of the file or more) when the smaller table still fits
    ``table_memory`` at the level's own step: a 64 MiB reference with a 64 MiB + 4 KiB version
    encoded at level 9 in 0.23 s with a 64 MiB window and 0.41-0.83 s with 128 MiB, same delta.
    Where the table is capped anyway (256 MiB at level 9), the larger window means a sparser step
    and a faster encode (2.2 s instead of 3.4 s for 256 MiB), so it stays.
    """
    reach = max(source_size, target_size or 0)
    window = _pow2ceil(reach)
    half = window // 2
    if (
        half >= _ALLOCSIZE
        and reach <= half + half // 8
        and large_step_for(level, half, table_memory) == _LARGE_STEP[level]
    ):
        window = half
    return min(MAX_SOURCE_WINDOW, max(_ALLOCSIZE, window))


def large_step_for(level: int, source_window: int, table_memory: int) -> int:
    """Source hash step that keeps the source hash table within ``table_memory`` bytes.

    The table has ``pow2floor(source_window / step)`` slots of 4 bytes; the level's preset step is
    kept whenever it fits.
    """
    preset = _LARGE_STEP[level]
    slots_cap = max(1, _pow2floor(table_memory // _USIZE))
    return max(preset, source_window // (2 * slots_cap) + 1)


def encoder_memory_estimate(
    source_size: int,
    *,
    level: int = DEFAULT_LEVEL,
    window_size: int = DEFAULT_WINDOW,
    cache_size: int = DEFAULT_ENCODER_CACHE,
    table_memory: int = DEFAULT_TABLE_MEMORY,
) -> int:
    """Bytes the encoder allocates in C, by the formula in docs/codec.md."""
    srcwin = source_window_for(source_size, source_size, level=level, table_memory=table_memory)
    step = large_step_for(level, srcwin, table_memory)
    source_table = _pow2floor(srcwin // step) * _USIZE
    target_table = _pow2floor(window_size) * _USIZE
    cache = min(cache_size, source_size)
    return source_table + target_table + window_size + cache + 2 * MiB


class _Source:
    """Resolves a source argument into what the C glue understands."""

    def __init__(self, source: SourceLike, source_size: int | None) -> None:
        self.fd = -1
        self.owns_fd = False
        self.mem: Any = ffi.NULL
        self.read_block: ReadBlock | None = None
        if isinstance(source, str | os.PathLike):
            try:
                self.fd = os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise SourceReadError(f"cannot open source {os.fspath(source)!r}: {exc}") from exc
            self.owns_fd = True
            self.size = os.fstat(self.fd).st_size
        elif isinstance(source, bytes | bytearray | memoryview | mmap.mmap):
            view = memoryview(source)
            self.size = view.nbytes
            # from_buffer keeps the exporter alive and gives a pointer without copying.
            self.mem = ffi.from_buffer(view.cast("B")) if self.size else ffi.NULL
        elif callable(source):
            if source_size is None:
                raise CodecStateError("a read_block source needs source_size=")
            self.read_block = source
            self.size = source_size
        else:
            raise CodecStateError(
                f"source must be a path, a bytes-like object or read_block(offset, size); "
                f"got {type(source).__name__}"
            )
        if source_size is not None and source_size != self.size:
            self.close()
            raise CodecStateError(f"source_size={source_size} but the source has {self.size} bytes")

    def close(self) -> None:
        if self.owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def _raise_codec_error(codec: Any, encoding: bool) -> None:
    """Raise the error the glue recorded, classified by the kind it reports."""
    message = ffi.string(lib.dg_error(codec)).decode("utf-8", "replace")
    code = int(lib.dg_error_code(codec))
    kind = int(lib.dg_error_kind(codec))
    if kind == lib.DG_ERR_SOURCE_READ:
        raise SourceReadError(message, code)
    if encoding or kind == lib.DG_ERR_INTERNAL:
        raise XDeltaError(message, code)
    if kind == lib.DG_ERR_MISMATCH:
        raise SourceMismatchError(f"delta does not match this source: {message}", code)
    if kind == lib.DG_ERR_TRUNCATED:
        raise TruncatedDeltaError(f"delta is truncated: {message}", code)
    raise CorruptDeltaError(f"invalid delta: {message}", code)


class _Codec:
    """Shared driver: feed bytes in, collect bytes out, answer source-block misses."""

    _encoding: bool

    def __init__(self, source: _Source, codec: Any, block_size: int) -> None:
        self._source = source
        self._codec = ffi.gc(codec, lib.dg_free)
        self._block_size = block_size
        self._lock = threading.Lock()
        #: Held while native code runs on this codec: close() from another thread waits for it
        #: instead of freeing the state under the running call.
        self._active = threading.RLock()
        self._finished = False
        self._bytes_in = 0
        self._bytes_out = 0
        self._final_cache_stats = (0, 0)

    @property
    def bytes_in(self) -> int:
        """Bytes fed so far."""
        return self._bytes_in

    @property
    def bytes_out(self) -> int:
        """Bytes produced so far."""
        return self._bytes_out

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def cache_stats(self) -> tuple[int, int]:
        """Source block cache (hits, misses)."""
        if self._codec is None:
            return self._final_cache_stats
        return int(lib.dg_cache_hits(self._codec)), int(lib.dg_cache_misses(self._codec))

    def _check_length(self, final: bool) -> None:
        """Decoder hook: compare the output length with the expected target size."""

    def _live(self) -> Any:
        """The native state, or CodecStateError once another thread closed it."""
        if self._codec is None:
            raise CodecStateError("codec closed while in use")
        return self._codec

    def _drive(self, borrow: bool = False) -> Iterator[Any]:
        """Run until more input is needed; yield output as bytes, or as cffi buffers over the
        codec's window when ``borrow`` (valid only until the generator resumes)."""
        size_p = ffi.new("size_t *")
        while True:
            with self._active:
                codec = self._live()
                status = lib.dg_run(codec)
                if status == lib.DG_OUTPUT:
                    view = ffi.buffer(lib.dg_output(codec, size_p), size_p[0])
                    self._bytes_out += size_p[0]
                    self._check_length(final=False)
                    if borrow:  # the window stays valid: a close() waits until it is consumed
                        yield view
                        continue
                    piece = view[:]
                elif status == lib.DG_NEED_BLOCK:
                    wanted = int(lib.dg_wanted_block(codec))
                elif status == lib.DG_ERROR:
                    _raise_codec_error(codec, self._encoding)
                else:
                    return
            if status == lib.DG_OUTPUT:
                yield piece
            else:
                self._supply(wanted)

    def _supply(self, blkno: int) -> None:
        assert self._source.read_block is not None
        offset = blkno * self._block_size
        want = min(self._block_size, self._source.size - offset)
        try:
            block = self._source.read_block(offset, want)
        except XDeltaError:
            raise
        except Exception as exc:
            raise SourceReadError(f"read_block({offset}, {want}) failed: {exc!r}") from exc
        if len(block) != want:
            raise SourceReadError(
                f"read_block({offset}, {want}) returned {len(block)} bytes; source too short?"
            )
        with self._active, ffi.from_buffer(block) as buf:
            codec = self._live()
            if lib.dg_supply_block(codec, blkno, buf, len(block)) != 0:
                _raise_codec_error(codec, self._encoding)

    def _enter(self) -> Any:
        if not self._lock.acquire(blocking=False):
            raise CodecStateError("codec objects are not thread-safe: concurrent call")
        if self._finished or self._codec is None:
            self._lock.release()
            raise CodecStateError("codec already finished or closed")
        return self._codec

    def stream(self, data: Buffer) -> Iterator[bytes]:
        """Feed the next chunk of input; yield output pieces as xdelta3 completes them.

        Memory stays bounded by one window whatever the input produces (a 300 KiB delta can
        decode to gigabytes).  Abandoning the iterator early fails the codec.
        """
        return self._stream(data, borrow=False)

    def _stream(self, data: Buffer, *, borrow: bool) -> Iterator[Any]:
        self._enter()
        try:
            view = memoryview(data).cast("B")
            if view.nbytes:
                # The buffer stays alive until xd3 asked for more input.
                with ffi.from_buffer(view) as buf:
                    with self._active:
                        lib.dg_set_input(self._live(), buf, view.nbytes)
                    yield from self._drive(borrow)
                    with self._active:
                        lib.dg_set_input(self._live(), ffi.NULL, 0)
                self._bytes_in += view.nbytes
        except BaseException:
            self._fail()
            raise
        finally:
            self._lock.release()

    def finish_stream(self) -> Iterator[bytes]:
        """Signal end of input; yield the remaining output, then release the native state."""
        return self._finish_stream(borrow=False)

    def _finish_stream(self, *, borrow: bool) -> Iterator[Any]:
        self._enter()
        try:
            with self._active:
                lib.dg_close_input(self._live())
            yield from self._drive(borrow)
            self._check_length(final=True)
        except BaseException:
            self._fail()
            raise
        finally:
            self._lock.release()
        self._finished = True
        self.close()

    def feed(self, data: Buffer) -> bytes:
        """Feed the next chunk of input (any size); return the output it completed."""
        return b"".join(self.stream(data))

    def finish(self) -> bytes:
        """Signal end of input; return the remaining output and release the native state."""
        return b"".join(self.finish_stream())

    def iter(self, chunks: Iterable[Buffer]) -> Iterator[bytes]:
        """Feed every chunk, then finish; yield output pieces as they appear."""
        for chunk in chunks:
            yield from self.stream(chunk)
        yield from self.finish_stream()

    def pipe(self, chunks: Iterable[Buffer], out: int | HasFileno) -> int:
        """Feed every chunk, finish, and write the output to a file descriptor without copying.

        ``out`` is a descriptor or an open binary file (flushed first; written through its
        descriptor).  Each window goes from the codec's own buffer to ``os.write``, which skips
        one copy of the whole target compared with ``iter()``.  Returns the bytes written.
        """
        if not isinstance(out, int):
            try:
                fd = out.fileno()
            except (AttributeError, io.UnsupportedOperation):
                raise CodecStateError(
                    f"pipe() writes to a file descriptor or a file that has one, "
                    f"not {type(out).__name__}"
                ) from None
            if hasattr(out, "flush"):
                out.flush()
            out = fd
        produced = self._bytes_out
        for chunk in chunks:
            for window in self._stream(chunk, borrow=True):
                _write_all(out, window)
        for window in self._finish_stream(borrow=True):
            _write_all(out, window)
        return self._bytes_out - produced

    def _fail(self) -> None:
        self._finished = True
        self.close()

    def close(self) -> None:
        """Free the native state (idempotent).  A closed codec cannot be used again; a call
        running in another thread finishes its step first and then raises CodecStateError."""
        with self._active:
            if self._codec is not None:
                self._final_cache_stats = self.cache_stats
                ffi.release(self._codec)
                self._codec = None
            self._source.close()

    def __enter__(self) -> _Codec:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, window: Any) -> None:
    with memoryview(window) as view:
        while view:
            view = view[os.write(fd, view) :]


def _new_codec(
    encoding: bool,
    source: _Source,
    *,
    level: int,
    flags: int,
    window_size: int,
    block_size: int,
    cache_size: int,
    source_window: int,
    large_step: int,
) -> Any:
    err = ffi.new("char[]", 256)
    nslots = max(2, cache_size // block_size)
    codec = lib.dg_new(
        int(encoding),
        level,
        flags,
        window_size,
        source.size,
        block_size,
        nslots,
        source_window,
        large_step,
        source.fd,
        source.mem,
        err,
        256,
    )
    if codec == ffi.NULL:
        source.close()
        raise XDeltaError(ffi.string(err).decode("utf-8", "replace"))
    return codec


def _block_size_for(source: _Source, block_size: int | None, *, encoding: bool) -> int:
    if block_size is not None:
        if block_size < _ALLOCSIZE or block_size & (block_size - 1):
            source.close()
            raise CodecStateError("block_size must be a power of two >= 16 KiB")
        return block_size
    default = ENCODER_FILE_BLOCK if encoding and source.fd >= 0 else DEFAULT_BLOCK
    return max(_ALLOCSIZE, min(default, _pow2ceil(source.size)))


class Encoder(_Codec):
    """Streaming VCDIFF encoder: ``feed()`` target bytes, collect delta bytes, then ``finish()``.

    ``source`` is the reference: a file path (read by ``pread`` block by block), a bytes-like
    object (used in place), or a callable ``read_block(offset, size) -> bytes`` together with
    ``source_size``.  Only the blocks the matcher asks for are read, through a block cache of
    ``cache_size`` bytes.

    ``secondary_data=False`` leaves the added bytes (the VCDIFF data section) out of secondary
    compression; instructions and addresses are still compressed.  For targets that are already
    compressed (zip, jar, wheel, tar.gz) those bytes do not shrink, and skipping them cut the
    encode time by 18-63 % for 0-0.4 % more delta (measured on awscli, botocore, pip and
    setuptools wheels); for uncompressed targets (a tar of sources) it cost 6-11 %.

    Defaults follow xdelta3-notes.md: the source window covers the whole source (content moved
    anywhere in it is still found), target windows are ``min(8 MiB, target_size)`` so that
    Debian's xdelta3 decodes them and small files pay for small tables, adler32 window checksums
    are always written, and LZMA secondary compression uses preset 0 like the CLI.
    """

    _encoding = True

    def __init__(
        self,
        source: SourceLike,
        *,
        source_size: int | None = None,
        target_size: int | None = None,
        level: int = DEFAULT_LEVEL,
        secondary: str | None = "lzma",
        secondary_data: bool = True,
        window_size: int | None = None,
        source_window: int | None = None,
        block_size: int | None = None,
        cache_size: int = DEFAULT_ENCODER_CACHE,
        table_memory: int = DEFAULT_TABLE_MEMORY,
    ) -> None:
        if level not in _LARGE_STEP:
            raise CodecStateError(f"level must be 0..9, got {level!r}")
        if secondary not in _SECONDARY:
            raise CodecStateError(f"secondary must be one of lzma, djw, fgk or None: {secondary!r}")
        if window_size is None:
            window_size = (
                DEFAULT_WINDOW
                if target_size is None
                else min(DEFAULT_WINDOW, max(_ALLOCSIZE, _pow2ceil(target_size)))
            )
        if not _ALLOCSIZE <= window_size <= MAX_WINDOW:
            raise CodecStateError("window_size must be between 16 KiB and 16 MiB")
        resolved = _Source(source, source_size)
        srcwin = source_window or source_window_for(
            resolved.size, target_size, level=level, table_memory=table_memory
        )
        if not _ALLOCSIZE <= srcwin <= MAX_SOURCE_WINDOW:
            resolved.close()
            raise CodecStateError("source_window must be between 16 KiB and 2 GiB")
        blk = _block_size_for(resolved, block_size, encoding=True)
        self.level = level
        self.source_window = srcwin
        self.large_step = large_step_for(level, srcwin, table_memory)
        codec = _new_codec(
            True,
            resolved,
            level=level,
            flags=lib.XD3_ADLER32
            | _SECONDARY[secondary]
            | (0 if secondary_data else lib.XD3_SEC_NODATA),
            window_size=window_size,
            block_size=blk,
            cache_size=cache_size,
            source_window=srcwin,
            large_step=self.large_step,
        )
        super().__init__(resolved, codec, blk)


class Decoder(_Codec):
    """Streaming VCDIFF decoder: ``feed()`` delta bytes, collect target bytes, then ``finish()``.

    Decodes any xdelta3 delta (DJW, FGK or LZMA secondary compression).  Window checksums are
    verified, and by default required (``require_checksums``): a delta decoded against the wrong
    source raises :class:`SourceMismatchError`.  A delta cut mid-window raises
    :class:`TruncatedDeltaError` from ``finish()``; VCDIFF has no end marker, so a cut exactly at a
    window boundary is only detected when ``target_size`` is given.
    """

    _encoding = False

    def __init__(
        self,
        source: SourceLike,
        *,
        source_size: int | None = None,
        target_size: int | None = None,
        block_size: int | None = None,
        cache_size: int = DEFAULT_DECODER_CACHE,
        require_checksums: bool = True,
    ) -> None:
        resolved = _Source(source, source_size)
        self.target_size = target_size
        blk = _block_size_for(resolved, block_size, encoding=False)
        codec = _new_codec(
            False,
            resolved,
            level=0,
            flags=0,
            window_size=DEFAULT_WINDOW,
            block_size=blk,
            cache_size=cache_size,
            source_window=source_window_for(resolved.size),
            large_step=0,
        )
        lib.dg_require_checksums(codec, int(require_checksums))
        super().__init__(resolved, codec, blk)

    def _check_length(self, final: bool) -> None:
        expected = self.target_size
        if expected is None:
            return
        if self._bytes_out > expected:
            raise CorruptDeltaError(f"delta produces more than the expected {expected} bytes")
        if final and self._bytes_out < expected:
            raise TruncatedDeltaError(
                f"delta produced {self._bytes_out} of the expected {expected} bytes"
            )


def encode(source: SourceLike, target: Buffer, **options: Any) -> bytes:
    """One-shot encode of ``target`` against ``source``; options as :class:`Encoder`."""
    options.setdefault("target_size", memoryview(target).nbytes)
    encoder = Encoder(source, **options)
    return encoder.feed(target) + encoder.finish()


def decode(source: SourceLike, delta: Buffer, **options: Any) -> bytes:
    """One-shot decode of ``delta`` against ``source``; options as :class:`Decoder`."""
    decoder = Decoder(source, **options)
    return decoder.feed(delta) + decoder.finish()
