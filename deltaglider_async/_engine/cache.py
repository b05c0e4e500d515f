"""Reference cache: content-addressed by SHA-256, on disk encrypted or in memory.

On disk every entry is AES-256-GCM in fixed 256 KiB chunks, so the codec reads any source block by
decrypting just the chunk(s) under it: plaintext never touches disk.  Each chunk's associated
data binds it to the entry's SHA-256, its index and whether it is the last one (the last chunk
holds ``size % CHUNK`` bytes, possibly none), so swapped, truncated or tampered chunks fail
authentication; such an entry is dropped and fetched again.

Entries live in a private ``user-<uid>`` directory (0700) inside the configured one, whose mode is
never touched.  The key is ``DG_CACHE_ENCRYPTION_KEY`` or else a 0600 key file in that private
directory, so every process of one user shares entries without configuration.  The directory is
bounded (``DG_CACHE_MAX_SIZE_MB``): least recently used entries go first, and entries no current
key can read are removed once they are a day old.  Concurrent requests for one reference fetch it
once.

Beside the references, ``notes/`` keeps small documents under the same key (what the deltas of a
bucket said in their HEADs, so that a new process lists them without HEADing them again), and
*derived* entries, what was computed from a reference at some cost (the archive format's source
form of it), are entries like the references, addressed by their own SHA-256 and named by a note.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import re
import shutil
import struct
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._exceptions import CacheError, IntegrityError, InvalidArgumentError
from .._tasks import KeyedLocks
from .memory import process_budget

log = logging.getLogger("deltaglider_async")

CHUNK = 256 << 10  # = the codec's default source block: one decrypt per miss
_TAG = 16
_MAGIC = b"DGC1"
_HEADER = struct.Struct(">4sIQ8s")  # magic, chunk size, plaintext size, nonce prefix
_KEY_FILE = "key"
_ENTRY = re.compile(r"[0-9a-f]{64}\.[0-9a-f]{16}\.dgc")
#: Entries of another key (a lost key file, an earlier version's per-process keys, another
#: DG_CACHE_ENCRYPTION_KEY) stay this long after their last use, then go.
FOREIGN_ENTRY_TTL = 24 * 3600.0
_NOTES = "notes"
_NOTE_NAME = re.compile(r"[0-9a-z-]{1,80}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A fill that has not been renamed into place for this long was left by a killed process.
STALE_FILL_SECONDS = 3600.0
DEFAULT_MAX_BYTES = 2048 << 20

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
        if start == 0 and len(data) == size:  # the whole of it: no second copy
            return data
        return data[start : start + size]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


#: What a fill holds while it streams: the HTTP client's buffers, the chunk being sealed and
#: the one before it (eight concurrent fills of 256 MiB references held 46 MiB).
FILL_MEMORY = 6 << 20


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
    return Path(tempfile.gettempdir()) / "deltaglider-async"


def private_dir(base: Path) -> Path:
    """``base/user-<uid>``, created 0700; ``base`` itself is created if missing, never chmodded
    (it may be a shared directory such as /tmp)."""
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = base / f"user-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not path.is_dir() or path.is_symlink():
        raise CacheError(f"cache directory {path} is not a directory")
    if info.st_uid != os.getuid():
        raise CacheError(f"cache directory {path} belongs to another user")
    if info.st_mode & 0o077:
        raise CacheError(f"cache directory {path} is open to other users: remove it or chmod 700")
    return path


def _load_or_create_key(directory: Path) -> bytes:
    """The key every process of this user shares; a damaged key file is replaced (its entries
    become unreadable and age out)."""
    path = directory / _KEY_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return _write_key(path, replace=False)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise CacheError(f"cache key file {path} is readable by others: remove it")
        key = handle.read(33)
    return key if len(key) == 32 else _write_key(path, replace=True)


def _write_key(path: Path, *, replace: bool) -> bytes:
    key = AESGCM.generate_key(bit_length=256)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp_name, path)
            return key
        try:
            os.link(tmp_name, path)  # never overwrites: a racing process's key wins
        except FileExistsError:
            return _load_or_create_key(path.parent)
        return key
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def _prune(directory: Path, key_id: str, max_bytes: int, now: float) -> int:
    """Bound the cache directory; returns the bytes it holds afterwards.

    Entries go least recently used first (a hit touches the file's mtime) until the rest fit;
    another key's entries and stale fills go once they are old enough, whatever the room.
    """
    entries: list[tuple[float, int, Path]] = []
    for path in directory.glob("*/*"):
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        age = now - info.st_mtime
        if path.name.startswith(".fill-"):
            if age > STALE_FILL_SECONDS:
                _discard(path)
            continue
        if not _ENTRY.fullmatch(path.name):
            continue
        if path.name.split(".")[1] != key_id and age > FOREIGN_ENTRY_TTL:
            _discard(path)
            continue
        entries.append((info.st_mtime, info.st_size, path))
    entries.sort()
    total = sum(size for _, size, _ in entries)
    for _, size, path in entries:
        if total <= max_bytes:
            break
        _discard(path)  # an open entry stays readable through its descriptor
        total -= size
    return total


def _sweep_legacy_entries(base: Path) -> None:
    """Entries earlier versions wrote straight into the cache directory, each under a key that
    died with its process: unreadable to anyone."""
    for path in base.glob("[0-9a-f][0-9a-f]/*.dgc"):
        if _ENTRY.fullmatch(path.name) and path.lstat().st_uid == os.getuid():
            _discard(path)
    for sub in base.glob("[0-9a-f][0-9a-f]"):
        with contextlib.suppress(OSError):
            sub.rmdir()


class ReferenceCache:
    """Fetch-once cache of references keyed by SHA-256 (``filesystem`` or ``memory`` backend)."""

    def __init__(
        self,
        *,
        backend: str = "filesystem",
        directory: Path | None = None,
        key: bytes | None = None,
        memory_bytes: int = 100 << 20,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if backend not in ("filesystem", "memory"):
            raise InvalidArgumentError(f"cache backend must be filesystem or memory: {backend!r}")
        if max_bytes < 0 or memory_bytes < 0:
            raise InvalidArgumentError("cache size limits must not be negative")
        self.backend = backend
        self.max_bytes = max_bytes
        self._given_key = key
        self._keyring: tuple[AESGCM, str] | None = None
        self._base = directory
        self._directory: Path | None = None
        self._memory: OrderedDict[str, MemoryEntry] = OrderedDict()
        self._memory_limit = memory_bytes
        self._fetches = KeyedLocks()  # one fetch per reference at a time
        self.fetches = 0

    @property
    def directory(self) -> Path:
        """The private directory holding the entries (created on first use)."""
        if self._directory is None:
            base = self._base if self._base is not None else default_cache_dir()
            fresh = not (base / f"user-{os.getuid()}").exists()
            directory = private_dir(base)
            if fresh:
                _sweep_legacy_entries(base)
            self._directory = directory
            _prune(directory, self._key()[1], self.max_bytes, time.time())
        return self._directory

    def _key(self) -> tuple[AESGCM, str]:
        if self._keyring is None:
            key = self._given_key
            if key is None:
                key = _load_or_create_key(self.directory)
            key_id = hashlib.sha256(b"dg-cache-key" + key).hexdigest()[:16]
            self._keyring = (AESGCM(key), key_id)
        return self._keyring

    def _path(self, sha256: str) -> Path:
        directory = self.directory
        return directory / sha256[:2] / f"{sha256}.{self._key()[1]}.dgc"

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
        async with self._fetches.hold(sha256):
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
            held = self._memory.get(sha256)
            if held is not None:
                self._memory.move_to_end(sha256)
            return held
        try:
            path = self._path(sha256)
        except (CacheError, OSError):
            return None  # filling it will say why, and go on without the cache
        if not path.exists():
            return None
        try:
            entry = EncryptedEntry(path, sha256, self._key()[0])
        except (CacheError, OSError):
            _discard(path)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # the recency that eviction goes by
        return entry

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
                async with process_budget().reserve(FILL_MEMORY, f"fetching reference {sha256}"):
                    await self._write_sealed(sha256, fetch, out)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        entry = EncryptedEntry(final, sha256, self._key()[0])
        await anyio.to_thread.run_sync(
            _prune, final.parent.parent, self._key()[1], self.max_bytes, time.time()
        )
        return entry

    async def _write_sealed(self, sha256: str, fetch: Fetch, out: BinaryIO) -> None:
        """Encrypt chunks as they arrive; a chunk is sealed once it is known not to be last."""
        aead = self._key()[0]
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
                sealed = aead.encrypt(
                    _nonce(prefix, index), bytes(pending[:CHUNK]), _aad(sha256, index, False)
                )
                await anyio.to_thread.run_sync(out.write, sealed)
                del pending[:CHUNK]
                index += 1
        if digest.hexdigest() != sha256:
            raise IntegrityError(f"reference {sha256[:12]}… fetched with a different SHA-256")
        if len(pending) == CHUNK:  # the last chunk holds size % CHUNK bytes, possibly none
            out.write(
                aead.encrypt(_nonce(prefix, index), bytes(pending), _aad(sha256, index, False))
            )
            pending.clear()
            index += 1
        out.write(aead.encrypt(_nonce(prefix, index), bytes(pending), _aad(sha256, index, True)))
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
        """Drop every entry, whatever key wrote it (memory: all); returns how many."""
        if self.backend == "memory":
            count = len(self._memory)
            self._memory.clear()
            return count
        base = self._base if self._base is not None else default_cache_dir()
        if self._directory is None and not (base / f"user-{os.getuid()}").exists():
            return 0
        count = 0
        for path in self.directory.glob("*/*.dgc"):
            if _ENTRY.fullmatch(path.name):
                path.unlink(missing_ok=True)
                count += 1
        shutil.rmtree(self.directory / _NOTES, ignore_errors=True)
        return count

    async def keep_derived(self, name: str, pieces: Sequence[bytes | memoryview]) -> None:
        """Keep what was derived from a reference at some cost (the archive format's source form
        of it) for other processes: the concatenation of ``pieces`` as an entry of its own,
        addressed by its SHA-256 (pruned with the references), and a note ``name`` naming it.
        A cache that cannot keep it only loses it."""
        if self.backend == "memory" or not _NOTE_NAME.fullmatch(name):
            return

        def address() -> str:
            digest = hashlib.sha256()
            for piece in pieces:
                digest.update(piece)
            return digest.hexdigest()

        sha = await anyio.to_thread.run_sync(address)

        async def local() -> AsyncIterator[bytes]:
            for piece in pieces:
                view = memoryview(piece)
                for start in range(0, len(view), CHUNK):
                    yield bytes(view[start : start + CHUNK])

        try:
            await self.warm(sha, local)
        except CacheCorruptError as exc:
            log.debug("derived entry %s not kept: %s", name, exc)
            return
        await anyio.to_thread.run_sync(self._name_derived, name, sha)

    def _name_derived(self, name: str, sha: str) -> None:
        """Point note ``name`` at entry ``sha``; the entry it named before (a memo that has
        grown since) goes, as nothing else names it.  Blocking."""
        before = (self.read_note(name) or b"").decode("ascii", "replace")
        self.write_note(name, sha.encode())
        if before != sha and _SHA256.fullmatch(before):
            with contextlib.suppress(CacheError, OSError):
                _discard(self._path(before))

    def load_derived(self, name: str) -> bytes | None:
        """What :meth:`keep_derived` kept as ``name``, or None.  Blocking file I/O: call it
        from a worker thread."""
        named = self.read_note(name)
        if named is None or not _SHA256.fullmatch(named.decode("ascii", "replace")):
            return None
        sha = named.decode()
        entry = self._lookup(sha)
        if not isinstance(entry, EncryptedEntry):
            return None
        try:
            # Every chunk authenticated, the last as the last: the bytes the fill proved to
            # have this SHA-256 (hashing 110 MB again took a botocore form's load 0.09 s).
            return entry.read_block(0, entry.size) if entry.size else b""
        except (CacheError, OSError):
            _discard(entry.path)
            return None
        finally:
            entry.close()

    def read_note(self, name: str) -> bytes | None:
        """The note ``name`` (see the module's doc); None when there is none this key can read.
        Blocking file I/O: call it from a worker thread."""
        if self.backend == "memory":
            return None
        try:
            aead, key_id = self._key()
            blob = (self.directory / _NOTES / f"{name}.{key_id}").read_bytes()
            return aead.decrypt(blob[:12], blob[12:], name.encode())
        except (OSError, ValueError, InvalidTag, CacheError):
            return None

    def write_note(self, name: str, data: bytes) -> None:
        """Store the note ``name`` (temporary file renamed into place, so concurrent writers
        leave one whole note); a cache that cannot be written only loses it.  Blocking."""
        if self.backend == "memory" or not _NOTE_NAME.fullmatch(name):
            return
        try:
            aead, key_id = self._key()
            folder = self.directory / _NOTES
            folder.mkdir(mode=0o700, exist_ok=True)
            nonce = os.urandom(12)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fill-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(nonce + aead.encrypt(nonce, data, name.encode()))
                os.replace(tmp, folder / f"{name}.{key_id}")
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            for other in folder.glob(f"{name}.*"):
                if other.name != f"{name}.{key_id}":
                    other.unlink(missing_ok=True)  # another key's copy: unreadable now
        except (OSError, CacheError) as exc:
            log.debug("cache note %s not written: %s", name, exc)

    def disk_usage(self) -> int:
        """Bytes the entries take on disk (0 for the memory backend)."""
        if self.backend == "memory":
            return 0
        return sum(p.stat().st_size for p in self.directory.glob("*/*.dgc"))
