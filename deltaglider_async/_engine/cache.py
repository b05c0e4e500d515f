"""Reference cache: content-addressed by SHA-256, on disk encrypted or in memory.

On disk every entry is AES-256-GCM in fixed 256 KiB chunks, so the codec reads any source block by
decrypting just the chunk(s) under it: plaintext never touches disk.  Each chunk's associated
data binds it to the entry's SHA-256, its index and whether it is the last one (the last chunk
holds ``size % CHUNK`` bytes, possibly none), so swapped, truncated or tampered chunks fail
authentication; such an entry is dropped and fetched again.  The key is ephemeral (one
process) unless ``DG_CACHE_ENCRYPTION_KEY`` provides one, which lets processes share entries.
Concurrent requests for one reference fetch it once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import shutil
import struct
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._exceptions import CacheError, IntegrityError, InvalidArgumentError

log = logging.getLogger("deltaglider_async")

CHUNK = 256 << 10  # = the codec's default source block: one decrypt per miss
_TAG = 16
_MAGIC = b"DGC1"
_HEADER = struct.Struct(">4sIQ8s")  # magic, chunk size, plaintext size, nonce prefix

Fetch = Callable[[], AsyncIterator[bytes]]


class CacheCorruptError(CacheError):
    """A cached entry failed authentication or is malformed; it has been dropped."""


def parse_key(text: str) -> bytes:
    """A 32-byte key from base64 (standard or URL-safe, e.g. a Fernet key) or 64 hex digits."""
    raw = text.strip()
    candidates: list[bytes] = []
    with contextlib.suppress(ValueError, binascii.Error):
        candidates.append(bytes.fromhex(raw))
    for decoder in (base64.urlsafe_b64decode, base64.b64decode):
        with contextlib.suppress(ValueError, binascii.Error):
            candidates.append(decoder(raw + "=" * (-len(raw) % 4)))
    for key in candidates:
        if len(key) == 32:
            return key
    raise InvalidArgumentError(
        "DG_CACHE_ENCRYPTION_KEY must be 32 bytes as base64 (e.g. a Fernet key) or 64 hex digits"
    )


class ReferenceSource(Protocol):
    """What the codec reads a reference from: a whole buffer or blocks on demand."""

    sha256: str
    size: int

    def codec_source(self) -> bytes | Callable[[int, int], bytes]: ...


@dataclass
class MemoryEntry:
    sha256: str
    size: int
    data: bytes

    def codec_source(self) -> bytes:
        return self.data


class EncryptedEntry:
    """An open encrypted cache file; ``read_block`` is safe to call from worker threads."""

    def __init__(self, path: Path, sha256: str, aead: AESGCM) -> None:
        self.path = path
        self.sha256 = sha256
        self._aead = aead
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            header = os.pread(self._fd, _HEADER.size, 0)
            if len(header) != _HEADER.size:
                raise CacheCorruptError(f"cache entry {path.name} is truncated")
            magic, chunk, size, self._prefix = _HEADER.unpack(header)
            chunks = size // CHUNK + 1
            if magic != _MAGIC or chunk != CHUNK:
                raise CacheCorruptError(f"cache entry {path.name} has an unknown format")
            if os.fstat(self._fd).st_size != _HEADER.size + size + chunks * _TAG:
                raise CacheCorruptError(f"cache entry {path.name} has the wrong length")
        except BaseException:
            os.close(self._fd)
            raise
        self.size = size
        self._last = size // CHUNK
        # Authenticating the final chunk checks that the header's size is the sealed one.
        self._chunk(self._last)

    def codec_source(self) -> Callable[[int, int], bytes]:
        return self.read_block

    def _chunk(self, index: int) -> bytes:
        length = min(CHUNK, self.size - index * CHUNK)
        blob = os.pread(self._fd, length + _TAG, _HEADER.size + index * (CHUNK + _TAG))
        try:
            return self._aead.decrypt(
                _nonce(self._prefix, index), blob, _aad(self.sha256, index, index == self._last)
            )
        except InvalidTag as exc:
            raise CacheCorruptError(
                f"cache entry for {self.sha256[:12]} failed authentication"
            ) from exc

    def read_block(self, offset: int, size: int) -> bytes:
        first, last = offset // CHUNK, (offset + size - 1) // CHUNK
        if first == last:
            start = offset - first * CHUNK
            return self._chunk(first)[start : start + size]
        data = b"".join(self._chunk(i) for i in range(first, last + 1))
        start = offset - first * CHUNK
        return data[start : start + size]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _discard(path: Path) -> None:
    """Remove a broken entry, whatever it became (a file, a directory)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _aad(sha256: str, index: int, final: bool) -> bytes:
    return _MAGIC + sha256.encode() + struct.pack(">QB", index, final)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def default_cache_dir() -> Path:
    base = os.environ.get("DG_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "deltaglider-async"
    home = Path.home()
    if os.access(home, os.W_OK):
        return home / ".cache" / "deltaglider-async"
    return Path(tempfile.gettempdir()) / f"deltaglider-async-{os.getuid()}"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise CacheError(f"cache directory {path} belongs to another user")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


class ReferenceCache:
    """Fetch-once cache of references keyed by SHA-256 (``filesystem`` or ``memory`` backend)."""

    def __init__(
        self,
        *,
        backend: str = "filesystem",
        directory: Path | None = None,
        key: bytes | None = None,
        memory_bytes: int = 100 << 20,
    ) -> None:
        if backend not in ("filesystem", "memory"):
            raise InvalidArgumentError(f"cache backend must be filesystem or memory: {backend!r}")
        self.backend = backend
        self._key = key or AESGCM.generate_key(bit_length=256)
        self._aead = AESGCM(self._key)
        self._key_id = hashlib.sha256(b"dg-cache-key" + self._key).hexdigest()[:16]
        self._directory = directory
        self._memory: OrderedDict[str, MemoryEntry] = OrderedDict()
        self._memory_limit = memory_bytes
        self._locks: dict[str, anyio.Lock] = {}
        self.fetches = 0

    @property
    def directory(self) -> Path:
        if self._directory is None:
            self._directory = default_cache_dir()
        return _private_dir(self._directory)

    def _path(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / f"{sha256}.{self._key_id}.dgc"

    async def get(self, sha256: str, fetch: Fetch) -> ReferenceSource:
        """The cached reference ``sha256``, fetched (once) with ``fetch`` when missing.

        ``fetches`` counts these fetches; the caller closes what it gets.
        """
        return await self._get(sha256, fetch, count=True)

    async def warm(self, sha256: str, local: Fetch) -> None:
        """Store a reference whose bytes are at hand locally (not counted as a fetch).

        A cache that cannot store it is only a missed shortcut: warned about, not raised."""
        if self.backend == "filesystem":
            try:
                entry: ReferenceSource = await self._get(sha256, local, count=False, degrade=False)
            except (OSError, CacheError) as exc:
                if isinstance(exc, CacheCorruptError):
                    raise
                log.warning("reference cache unusable (%s); going on without it", exc)
                return
        else:
            entry = await self._get(sha256, local, count=False)
        closer = getattr(entry, "close", None)
        if closer is not None:
            closer()

    async def _get(
        self, sha256: str, fetch: Fetch, *, count: bool, degrade: bool = True
    ) -> ReferenceSource:
        lock = self._locks.setdefault(sha256, anyio.Lock())
        async with lock:
            found = self._lookup(sha256)
            if found is not None:
                return found
            self.fetches += count
            if count:
                log.debug("reference %s… not cached: fetching it", sha256[:12])
            if self.backend == "memory":
                return await self._fill_memory(sha256, fetch)
            try:
                return await self._fill_file(sha256, fetch)
            except (OSError, CacheError) as exc:
                if not degrade or isinstance(exc, CacheCorruptError):
                    raise
                # A full disk or a broken cache directory must not make references unreadable.
                log.warning(
                    "reference cache unusable (%s): reading reference %s… without it",
                    exc,
                    sha256[:12],
                )
                return await self._fill_memory(sha256, fetch, keep=False)

    def _lookup(self, sha256: str) -> ReferenceSource | None:
        if self.backend == "memory":
            entry = self._memory.get(sha256)
            if entry is not None:
                self._memory.move_to_end(sha256)
            return entry
        try:
            path = self._path(sha256)
        except (CacheError, OSError):
            return None  # filling it will say why, and go on without the cache
        if not path.exists():
            return None
        try:
            return EncryptedEntry(path, sha256, self._aead)
        except (CacheError, OSError):
            _discard(path)
            return None

    async def _fill_memory(self, sha256: str, fetch: Fetch, *, keep: bool = True) -> MemoryEntry:
        digest = hashlib.sha256()
        parts: list[bytes] = []
        async for chunk in fetch():
            digest.update(chunk)
            parts.append(chunk)
        if digest.hexdigest() != sha256:
            raise IntegrityError(f"reference {sha256[:12]}… fetched with a different SHA-256")
        entry = MemoryEntry(sha256, sum(map(len, parts)), b"".join(parts))
        if not keep:
            return entry
        self._memory[sha256] = entry
        total = sum(e.size for e in self._memory.values())
        while total > self._memory_limit and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            total -= dropped.size
        return entry

    async def _fill_file(self, sha256: str, fetch: Fetch) -> EncryptedEntry:
        final = self._path(sha256)
        final.parent.mkdir(mode=0o700, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".fill-", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                await self._write_sealed(sha256, fetch, out)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return EncryptedEntry(final, sha256, self._aead)

    async def _write_sealed(self, sha256: str, fetch: Fetch, out: BinaryIO) -> None:
        """Encrypt chunks as they arrive; a chunk is sealed once it is known not to be last."""
        prefix = os.urandom(8)
        digest = hashlib.sha256()
        size = 0
        index = 0
        pending = bytearray()
        out.write(b"\0" * _HEADER.size)
        async for data in fetch():
            digest.update(data)
            size += len(data)
            pending += data
            while len(pending) > CHUNK:
                sealed = self._aead.encrypt(
                    _nonce(prefix, index), bytes(pending[:CHUNK]), _aad(sha256, index, False)
                )
                await anyio.to_thread.run_sync(out.write, sealed)
                del pending[:CHUNK]
                index += 1
        if digest.hexdigest() != sha256:
            raise IntegrityError(f"reference {sha256[:12]}… fetched with a different SHA-256")
        if len(pending) == CHUNK:  # the last chunk holds size % CHUNK bytes, possibly none
            out.write(
                self._aead.encrypt(
                    _nonce(prefix, index), bytes(pending), _aad(sha256, index, False)
                )
            )
            pending.clear()
            index += 1
        out.write(
            self._aead.encrypt(_nonce(prefix, index), bytes(pending), _aad(sha256, index, True))
        )
        out.seek(0)
        out.write(_HEADER.pack(_MAGIC, CHUNK, size, prefix))

    def evict(self, sha256: str) -> bool:
        """Drop one entry; True if something was removed."""
        if self.backend == "memory":
            return self._memory.pop(sha256, None) is not None
        path = self._path(sha256)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def clear(self) -> int:
        """Drop every entry this key can read (memory: all); returns how many."""
        if self.backend == "memory":
            count = len(self._memory)
            self._memory.clear()
            return count
        if self._directory is None and not default_cache_dir().exists():
            return 0
        count = 0
        for path in self.directory.glob(f"*/*.{self._key_id}.dgc"):
            path.unlink(missing_ok=True)
            count += 1
        return count
