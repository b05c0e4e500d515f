"""A streaming response body that checks SHA-256 (and length) as it is read."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from ._exceptions import IntegrityError


class StreamingBody:
    """``Body`` of :meth:`get_object`: ``await body.read()``, ``read(n)``, ``iter_chunks()``.

    When the object carries a SHA-256 the bytes are hashed as they pass; reaching the end of the
    stream with a different hash or length raises :class:`IntegrityError` (from the final
    ``read``/iteration), so a consumer that reads to the end never accepts corrupt data silently.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        what: str,
        expected_sha256: str | None,
        expected_size: int | None,
        content_length: int | None,
    ) -> None:
        self._chunks = chunks
        self._what = what
        self._expected_sha = expected_sha256
        self._expected_size = expected_size
        self.content_length = content_length
        self._digest = hashlib.sha256() if expected_sha256 else None
        self._seen = 0
        self._buffer = bytearray()
        self._eof = False
        self.verified = False

    async def _next(self) -> bytes | None:
        if self._eof:
            return None
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self._eof = True
            self._check()
            return None
        self._seen += len(chunk)
        if self._digest is not None:
            self._digest.update(chunk)
        return chunk

    def _check(self) -> None:
        if self._expected_size is not None and self._seen != self._expected_size:
            raise IntegrityError(
                f"{self._what}: got {self._seen} bytes, expected {self._expected_size}"
            )
        if self._digest is not None:
            actual = self._digest.hexdigest()
            if actual != self._expected_sha:
                raise IntegrityError(
                    f"{self._what}: SHA-256 mismatch (expected {self._expected_sha}, got {actual})"
                )
            self.verified = True

    async def read(self, amt: int | None = None) -> bytes:
        """Up to ``amt`` bytes (all remaining bytes when ``amt`` is None or negative)."""
        if amt is None or amt < 0:
            while (chunk := await self._next()) is not None:
                self._buffer += chunk
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        while len(self._buffer) < amt and (chunk := await self._next()) is not None:
            if not self._buffer and len(chunk) == amt:
                return chunk
            self._buffer += chunk
        with memoryview(self._buffer) as view:
            data = bytes(view[:amt])
        del self._buffer[:amt]
        return data

    async def iter_chunks(self, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        while data := await self.read(chunk_size):
            yield data

    async def pieces(self, at_least: int = 1) -> AsyncIterator[bytes]:
        """The rest of the body in the stream's own pieces (a decoder's are windows of MiBs),
        small ones joined until ``at_least``, checked as every read is: unlike
        :meth:`iter_chunks`, a big piece is never cut up, so it is never copied."""
        pending: list[bytes] = []
        size = len(self._buffer)
        if size >= at_least:
            yield bytes(self._buffer)
            size = 0
        elif size:
            pending.append(bytes(self._buffer))
        self._buffer.clear()
        while (chunk := await self._next()) is not None:
            if not pending and len(chunk) >= at_least:
                yield chunk
                continue
            pending.append(chunk)
            size += len(chunk)
            if size >= at_least:
                yield b"".join(pending)
                pending, size = [], 0
        if pending:
            yield b"".join(pending)

    async def iter_lines(
        self, chunk_size: int = 1 << 20, keepends: bool = False
    ) -> AsyncIterator[bytes]:
        """Lines of the body, as aiobotocore's ``StreamingBody.iter_lines`` yields them."""
        pending = b""
        async for chunk in self.iter_chunks(chunk_size):
            lines = (pending + chunk).splitlines(True)
            for line in lines[:-1]:
                yield line.splitlines(keepends)[0]
            pending = lines[-1]
        if pending:
            yield pending.splitlines(keepends)[0]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.iter_chunks()

    async def close(self) -> None:
        closer = getattr(self._chunks, "aclose", None)
        if closer is not None:
            await closer()

    async def __aenter__(self) -> StreamingBody:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
