"""Raw deflate and inflate on the zlib compiled into this extension (not the system's).

The archive format rebuilds members by deflating them again and relies on getting the very bytes
it saw at write time, so it must never use Python's ``zlib`` (whatever libz the system ships) for
that.  Besides zlib's deflate there is GNU gzip's (``mem_level=GNU_GZIP``), which is not zlib's
and is what ``gzip``, ``tar czf`` and Info-ZIP's ``zip`` write, and miniz's (``mem_level=MINIZ``,
levels 0-10), which is what Rust's miniz_oxide writes (maturin wheels, Rust's ``zip`` crate).
Every call releases the GIL.
"""

from __future__ import annotations

from typing import Any, Final

from ._stream import Buffer
from ._xdelta3_cffi import ffi, lib

#: zlib's version string as compiled in (recorded by the archive format as its rebuilder)
ZLIB_VERSION: Final[str] = ffi.string(lib.dg_z_version()).decode()

#: ``mem_level`` (not one of zlib's 1-9) that selects GNU gzip's deflate at the given level
GNU_GZIP: Final = 0
#: ``mem_level`` that selects miniz's deflate (tdefl) at the given level (0-10)
MINIZ: Final = 15
#: the miniz compiled in (the archive format names it among its rebuilders)
MINIZ_VERSION: Final = "2.0.8"

_Z_OK, _Z_STREAM_END, _Z_BUF_ERROR = 0, 1, -5
_RAW = -15


class ZlibError(ValueError):
    """Data that does not inflate, or parameters zlib refuses."""


#: the deflaters other than zlib, by the ``mem_level`` that selects them: (name, matcher)
_OTHER_DEFLATERS: Final[dict[int, tuple[str, Any]]] = {
    GNU_GZIP: ("GNU gzip's deflate", lib.dg_gzip_matches),
    MINIZ: ("miniz's deflate", lib.dg_miniz_matches),
}


def deflate_matches(
    data: Buffer, expected: Buffer, level: int, mem_level: int = 8, strategy: int = 0
) -> bool:
    """Whether raw-deflating ``data`` with these parameters gives exactly ``expected``
    (stops at the first differing output block)."""
    src, exp = memoryview(data).cast("B"), memoryview(expected).cast("B")
    other = _OTHER_DEFLATERS.get(mem_level) if strategy == 0 else None
    if other is not None:
        name, matches = other
        rc = matches(level, ffi.from_buffer(src), src.nbytes, ffi.from_buffer(exp), exp.nbytes)
        if rc < 0:
            raise ZlibError(f"{name} refuses level={level} (or is out of memory)")
        return bool(rc)
    rc = lib.dg_deflate_matches(
        level,
        _RAW,
        mem_level,
        strategy,
        ffi.from_buffer(src),
        src.nbytes,
        ffi.from_buffer(exp),
        exp.nbytes,
    )
    if rc < 0:
        raise ZlibError(f"deflate refuses level={level} mem_level={mem_level}")
    return bool(rc)


class _Stream:
    """A zlib stream, or (``miniz``) a tdefl one behind the same stepping interface."""

    def __init__(
        self, deflating: bool, level: int, mem_level: int, strategy: int, *, miniz: bool = False
    ) -> None:
        if miniz:
            handle = lib.dg_mz_new(level)
            if handle == ffi.NULL:
                raise ZlibError(f"miniz's deflate has no level {level} (or memory ran out)")
            self._z: Any = ffi.gc(handle, lib.dg_mz_free)
            self._run: Any = lib.dg_mz_run
        else:
            handle = lib.dg_z_new(int(deflating), level, _RAW, mem_level, strategy)
            if handle == ffi.NULL:
                raise ZlibError("zlib refused the stream parameters (or is out of memory)")
            self._z = ffi.gc(handle, lib.dg_z_free)
            self._run = lib.dg_z_run
        self._used = ffi.new("size_t *")
        self._made = ffi.new("size_t *")
        self.finished = False

    def _step(
        self, src: Any, length: int, out: Any, cap: int, finish: bool
    ) -> tuple[int, int, int]:
        rc = self._run(self._z, src, length, out, cap, int(finish), self._used, self._made)
        return int(rc), int(self._used[0]), int(self._made[0])


class Deflater:
    """Streaming raw deflate (``wbits=-15``) at a given level/memLevel/strategy, by zlib, or by
    GNU gzip's deflate when ``mem_level`` is :data:`GNU_GZIP`, or miniz's when :data:`MINIZ`."""

    def __init__(self, level: int, mem_level: int = 8, strategy: int = 0) -> None:
        self._impl: _SteppedDeflater | _GnuDeflater = (
            _GnuDeflater(level)
            if mem_level == GNU_GZIP and strategy == 0
            else _SteppedDeflater(level, mem_level, strategy)
        )

    @property
    def finished(self) -> bool:
        return self._impl.finished

    def compress(self, data: Buffer, *, finish: bool = False) -> bytes:
        """Deflate ``data`` (more may follow unless ``finish``); returns the output made."""
        return self._impl.compress(data, finish=finish)


class _GnuDeflater:
    def __init__(self, level: int) -> None:
        handle = lib.dg_gz_new(level)
        if handle == ffi.NULL:
            raise ZlibError(f"GNU gzip's deflate has no level {level} (or memory ran out)")
        self._g: Any = ffi.gc(handle, lib.dg_gz_free)
        self.finished = False

    def compress(self, data: Buffer, *, finish: bool = False) -> bytes:
        if self.finished:
            raise ZlibError("the deflate stream is already finished")
        view = memoryview(data).cast("B")
        if lib.dg_gz_feed(self._g, ffi.from_buffer(view), view.nbytes, int(finish)) != 0:
            raise ZlibError("GNU gzip's deflate ran out of memory")
        self.finished = finish
        made = int(lib.dg_gz_pending(self._g))
        if not made:
            return b""
        out = ffi.new("uint8_t[]", made)
        lib.dg_gz_take(self._g, out, made)
        return bytes(ffi.buffer(out, made))


class _SteppedDeflater(_Stream):
    def __init__(self, level: int, mem_level: int, strategy: int) -> None:
        super().__init__(
            True, level, mem_level, strategy, miniz=mem_level == MINIZ and strategy == 0
        )

    def compress(self, data: Buffer, *, finish: bool = False) -> bytes:
        view = memoryview(data).cast("B")
        src = ffi.from_buffer(view)
        total = view.nbytes
        pos = 0
        out: list[bytes] = []
        cap = max(1 << 16, min(total + (total >> 8) + 1024, 8 << 20))
        buf = ffi.new("uint8_t[]", cap)
        while True:
            rc, used, made = self._step(src + pos, total - pos, buf, cap, finish)
            if rc not in (_Z_OK, _Z_STREAM_END, _Z_BUF_ERROR):
                raise ZlibError(f"deflate failed ({rc})")
            pos += used
            if made:
                out.append(bytes(ffi.buffer(buf, made)))
            if rc == _Z_STREAM_END:
                self.finished = True
                break
            if not finish and pos >= total and made < cap:
                break
            if rc == _Z_BUF_ERROR and used == 0 and made == 0:
                raise ZlibError("deflate made no progress")
        return b"".join(out)


class Inflater(_Stream):
    """Streaming raw inflate; ``unused`` counts input bytes after the end of the stream."""

    def __init__(self) -> None:
        super().__init__(False, 0, 8, 0)
        self.unused = 0

    def decompress(self, data: Buffer, limit: int | None = None) -> bytes:
        """Inflate ``data``; raises :class:`ZlibError` if it is not valid deflate, or once the
        output would pass ``limit`` bytes."""
        view = memoryview(data).cast("B")
        src = ffi.from_buffer(view)
        total = view.nbytes
        pos = 0
        out: list[bytes] = []
        produced = 0
        cap = 1 << 18
        buf = ffi.new("uint8_t[]", cap)
        while not self.finished:
            rc, used, made = self._step(src + pos, total - pos, buf, cap, False)
            pos += used
            if made:
                produced += made
                if limit is not None and produced > limit:
                    raise ZlibError("inflates to more than expected")
                out.append(bytes(ffi.buffer(buf, made)))
            if rc == _Z_STREAM_END:
                self.finished = True
            elif rc == _Z_BUF_ERROR or (rc == _Z_OK and used == 0 and made == 0):
                break  # needs more input
            elif rc != _Z_OK:
                raise ZlibError(f"not valid deflate data ({rc})")
        self.unused = total - pos if self.finished else 0
        return b"".join(out)


def deflate_raw(data: Buffer, level: int, mem_level: int = 8, strategy: int = 0) -> bytes:
    return Deflater(level, mem_level, strategy).compress(data, finish=True)


def inflate_raw(data: Buffer, limit: int | None = None) -> tuple[bytes, int]:
    """Inflate one raw deflate stream at the start of ``data``: (its bytes, bytes it took).
    Raises :class:`ZlibError` if it is invalid or incomplete."""
    inflater = Inflater()
    out = inflater.decompress(data, limit)
    if not inflater.finished:
        raise ZlibError("the deflate stream is incomplete")
    return out, memoryview(data).nbytes - inflater.unused


def _combine(a: Buffer, b: Buffer, subtract: int) -> bytes:
    left, right = memoryview(a).cast("B"), memoryview(b).cast("B")
    if right.nbytes > left.nbytes:
        raise ValueError("the second operand is longer than the first")
    out = bytearray(left.nbytes)
    if out:
        lib.dg_bytes_combine(
            ffi.from_buffer(out),
            ffi.from_buffer(left),
            left.nbytes,
            ffi.from_buffer(right),
            right.nbytes,
            subtract,
        )
    return bytes(out)


def byte_sum(a: Buffer, b: Buffer) -> bytes:
    """``a[i] + b[i]`` mod 256 for each byte (``b`` may be shorter: zeros beyond it)."""
    return _combine(a, b, 0)


def byte_difference(a: Buffer, b: Buffer) -> bytes:
    """``a[i] - b[i]`` mod 256 for each byte (``b`` may be shorter: zeros beyond it)."""
    return _combine(a, b, 1)


def deflate_block_ends(data: Buffer) -> list[tuple[int, int]]:
    """Where the blocks of the raw deflate stream ``data`` end on a byte boundary, the final
    block excluded: (contents offset, compressed offset) pairs, in order.  A deflate of the
    contents can be resumed there (:func:`deflate_resume`)."""
    src = memoryview(data).cast("B")
    cap = max(16, src.nbytes // 64)  # any more would be closer together than is of use
    contents_at, compressed_at = ffi.new("size_t[]", cap), ffi.new("size_t[]", cap)
    found = lib.dg_deflate_block_ends(
        ffi.from_buffer(src), src.nbytes, contents_at, compressed_at, cap
    )
    if found < 0:
        raise ZlibError("not a complete raw deflate stream")
    return [(contents_at[i], compressed_at[i]) for i in range(found)]


def resume_start(offset: int, mem_level: int) -> int:
    """Where the contents that a deflate resumed at block boundary ``offset`` reads begin
    (:func:`deflate_resume`): 32 KiB before it for zlib's (its window); for GNU gzip's, where
    gzip's window then began, which its history fixes (it slides by 32 KiB each time the match
    position passes 64 KiB - 262 of it)."""
    if mem_level != GNU_GZIP:
        return max(0, offset - 32768)
    threshold = 65536 - 262
    return 0 if offset <= threshold else 32768 * ((offset - threshold - 1) // 32768 + 1)


def deflate_resume(
    contents: Buffer,
    start: int,
    level: int,
    mem_level: int,
    out_len: int,
    *,
    finish: bool,
    expect: Buffer | None = None,
) -> bytes | None:
    """The ``out_len`` bytes raw deflate emits for ``contents[start:]`` when resumed at a
    byte-aligned block boundary ``start`` of its stream: the whole rest of the stream with
    ``finish``, else up to the next boundary (``contents`` then reaching some way past it).
    ``contents`` begins at :func:`resume_start` of the boundary.  zlib's (levels 4-9) and GNU
    gzip's (``mem_level=GNU_GZIP``, levels 4-9) lazy-matching deflates hash every position, so
    resumed so they mostly continue the original exactly.  None when this makes other bytes (or,
    given ``expect``, other than those)."""
    src = memoryview(contents).cast("B")
    out = bytearray(out_len)
    want = ffi.NULL
    if expect is not None:
        exp = memoryview(expect).cast("B")
        if exp.nbytes != out_len:
            return None
        want = ffi.from_buffer(exp)
    made = ffi.from_buffer(out) if out_len else ffi.NULL
    if mem_level == GNU_GZIP:
        rc = lib.dg_gzip_resume(
            level, ffi.from_buffer(src), start, src.nbytes, int(finish), made, out_len, want
        )
    else:
        rc = lib.dg_deflate_resume(
            level,
            mem_level,
            ffi.from_buffer(src),
            start,
            src.nbytes,
            int(finish),
            made,
            out_len,
            want,
        )
    if rc < 0:
        raise ZlibError(f"deflate cannot resume at level={level} mem_level={mem_level}")
    return bytes(out) if rc else None


def block_sums(data: Buffer) -> list[int]:
    """The byte sum of each 512-byte block of ``data`` (a whole number of them)."""
    src = memoryview(data).cast("B")
    count = src.nbytes // 512
    if count * 512 != src.nbytes:
        raise ValueError("not a whole number of 512-byte blocks")
    sums = ffi.new("uint32_t[]", max(1, count))
    if count:
        lib.dg_block_sums(ffi.from_buffer(src), count, sums)
    return list(ffi.unpack(sums, count))
