"""Local files at the edge: writes that cannot be short, and download destinations.

A regular destination is written to a hidden temporary file beside it and renamed over it only
once the object verified; a FIFO, a device or a socket is written into directly (as ``cp`` does),
never replaced by a regular file.  A symlink is followed: its target is what gets replaced.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from xdelta_ffi import adler32

from ._exceptions import IntegrityError


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written: a short write (a full disk) is an error."""
    with memoryview(data) as view:
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(28, "No space left on device")
            view = view[written:]


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte is written at ``offset``."""
    with memoryview(data) as view:
        while view:
            written = os.pwrite(fd, view, offset)
            if written <= 0:
                raise OSError(28, "No space left on device")
            view = view[written:]
            offset += written


def current_umask() -> int:
    """The process umask, read where Linux reports it: os.umask() can only be read by setting
    it, which would race with other threads creating files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    previous = os.umask(0o022)
    os.umask(previous)
    return previous


#: A download writes its part at least every two read timeouts; one untouched this long was
#: left by a killed process.
STALE_PART_SECONDS = 15 * 60


def _remove_stale_parts(path: Path) -> None:
    """Remove ``.<name>.*.dg-part`` files of ``path`` that a killed download left behind."""
    limit = time.time() - STALE_PART_SECONDS
    for part in path.parent.glob(f".{glob.escape(path.name)}.*.dg-part"):
        with contextlib.suppress(OSError):
            info = part.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_mtime < limit:
                part.unlink()


def private_temp_dir() -> Path:
    """A new ``dg-async-<pid>-*`` directory in the system's temp directory, after removing those
    of this user's processes that no longer run (SIGKILL skips every cleanup)."""
    base = Path(tempfile.gettempdir())
    for leftover in base.glob("dg-async-*-*"):
        pid = leftover.name.split("-")[2]
        with contextlib.suppress(OSError, ValueError):
            if leftover.lstat().st_uid == os.getuid() and not process_running(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"dg-async-{os.getpid()}-"))


def process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Destination:
    """An open download destination; ``commit`` makes it final, ``abort`` leaves no trace."""

    def __init__(self, path: Path) -> None:
        self.path = Path(os.path.realpath(path)) if path.is_symlink() else path
        try:
            info: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            info = None
        self._mode = info.st_mode & 0o7777 if info is not None else None
        #: a FIFO, device or socket: written in place, sequentially
        self.special = info is not None and not stat.S_ISREG(info.st_mode)
        self._tmp: Path | None = None
        if self.special:
            self.fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(self.path)
        self.fd, name = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".dg-part"
        )
        self._tmp = Path(name)

    def commit(self, mtime: float | None) -> None:
        fd, self.fd = self.fd, -1
        if self._tmp is None:
            os.close(fd)
            return
        try:
            os.close(fd)
            if mtime is not None:
                os.utime(self._tmp, (mtime, mtime))
            # Replacing keeps the file's mode; a new file gets what a plain open() gives.
            os.chmod(self._tmp, self._mode if self._mode is not None else 0o666 & ~current_umask())
            os.replace(self._tmp, self.path)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


#: The digest checks a file in slices of this size, from each part's start.
_SLICE = 4 << 20


def _fingerprint(part: bytes | memoryview) -> tuple[int, ...]:
    """Adler-32 of each slice of a part: cheap (the glue's AVX2 kernel), and a changed byte
    anywhere changes it."""
    with memoryview(part) as view:
        return tuple(adler32(view[i : i + _SLICE]) for i in range(0, len(view), _SLICE))


@dataclass(frozen=True)
class FileDigest:
    """What one read of a local file found: its SHA-256, and a fingerprint per upload part so
    that the later read that sends it can prove it sends the same bytes."""

    path: Path
    sha256: str
    size: int
    mtime_ns: int
    part_size: int
    parts: tuple[tuple[int, ...], ...]

    def check_part(self, number: int, data: bytes) -> None:
        """Raise if part ``number`` (1-based) is not what was hashed."""
        index = number - 1
        expected = min(self.part_size, self.size - index * self.part_size)
        if len(data) != expected or _fingerprint(data) != self.parts[index]:
            raise FileChangedError(self.path)

    def check_all(self, data: bytes) -> None:
        """Raise unless ``data`` is the whole file as hashed."""
        if len(data) != self.size:
            raise FileChangedError(self.path)
        for index in range(len(self.parts)):
            start = index * self.part_size
            self.check_part(index + 1, data[start : start + self.part_size])

    def check_unchanged(self, fd: int) -> None:
        info = os.fstat(fd)
        if info.st_size != self.size or info.st_mtime_ns != self.mtime_ns:
            raise FileChangedError(self.path)


class FileChangedError(IntegrityError):
    """The local file changed between the read that hashed it and the read that sent it."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} changed while it was being uploaded; nothing was stored")


def digest_file(path: Path, part_size: int) -> FileDigest:
    """SHA-256 of ``path`` and the fingerprint of each ``part_size`` part, in one read."""
    digest = hashlib.sha256()
    parts: list[tuple[int, ...]] = []
    current: list[int] = []
    in_part = 0
    with path.open("rb", buffering=0) as src:
        mtime_ns = os.fstat(src.fileno()).st_mtime_ns
        size = 0
        while data := src.read(min(_SLICE, part_size - in_part)):
            digest.update(data)
            current.append(adler32(data))
            in_part += len(data)
            size += len(data)
            if in_part == part_size:
                parts.append(tuple(current))
                current, in_part = [], 0
    if in_part:
        parts.append(tuple(current))
    return FileDigest(path, digest.hexdigest(), size, mtime_ns, part_size, tuple(parts))


def read_snapshot(path: Path, limit: int) -> bytes:
    """The whole file in one read, for files a stat calls small (``/proc`` files say 0 bytes);
    one that turns out larger than ``limit`` is changing under us."""
    with path.open("rb") as src:
        data = src.read(limit + 1)
    if len(data) > limit:
        raise FileChangedError(path)
    return data
