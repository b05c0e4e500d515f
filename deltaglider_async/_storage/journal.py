"""A per-user journal of this machine's open multipart uploads, so that the uploads of a process
that died without cleaning up (SIGKILL, OOM killer, power loss) are aborted by a later client.

S3 cannot tell whose an incomplete upload is, so only uploads journaled here are ever aborted.
Each open upload is one small file in ``<cache dir>/user-<uid>/uploads`` (0700), written before the
upload is created (without its id, which the server has not given yet), given the id once it is
known, and removed once the upload is completed or aborted.  A process killed between the two
leaves an entry without an id: a later client aborts the uploads of exactly that key created
around the entry's time that no other entry names.  An entry whose process
no longer runs (the same pid, started at the same time, on the same boot) is stale; so is one older
than :data:`STALE_UPLOAD_SECONDS`, whoever holds it.  Everything here is best-effort: a journal that
cannot be written only loses the cleanup, never an upload.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .._engine.cache import default_cache_dir, private_dir
from .._exceptions import CacheError
from .._localfs import process_running

log = logging.getLogger("deltaglider_async")

#: An upload open this long is abandoned even if a process of the same identity still runs
#: (a week: five terabytes at 10 MB/s).
STALE_UPLOAD_SECONDS = 7 * 24 * 3600


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_identity(pid: int) -> str:
    """``pid`` plus its start time (Linux), so that a reused pid is not taken for the writer."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        started = stat.rsplit(")", 1)[1].split()[19]  # field 22, after the command name
    except (OSError, IndexError):
        started = ""
    return f"{_boot_id()}/{pid}/{started}"


#: how far from an entry's time (by this machine's clock) the server's record of an upload it has
#: no id for may be (clock skew, a slow create)
INTENT_WINDOW_SECONDS = 15 * 60


@dataclass(frozen=True)
class OpenUpload:
    endpoint: str
    bucket: str
    key: str
    #: None: the process died before the server answered its create
    upload_id: str | None
    path: Path
    opened: float = 0.0


def _write(folder: Path, record: Mapping[str, object], entry: Path | None) -> Path:
    """Write ``record`` whole (temp file, mode 0600, then rename) as ``entry``, or as a new
    entry named after this process; returns its path."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".new-")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(record, out)
        final = entry or Path(tmp).with_name(f"{os.getpid()}-{Path(tmp).name[5:]}.json")
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return final


class UploadJournal:
    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._identity = process_identity(os.getpid())

    def _folder(self) -> Path:
        if self._directory is None:
            self._directory = private_dir(default_cache_dir()) / "uploads"
        self._directory.mkdir(mode=0o700, exist_ok=True)
        return self._directory

    def opened(self, endpoint: str, bucket: str, key: str, upload_id: str | None) -> Path | None:
        """Journal an upload (``upload_id`` None: about to be created); the entry's path (for
        :meth:`identified` and :meth:`closed`), None if it could not be."""
        record = {
            "endpoint": endpoint,
            "bucket": bucket,
            "key": key,
            "upload_id": upload_id,
            "pid": os.getpid(),
            "process": self._identity,
            "opened": time.time(),
        }
        try:
            return _write(self._folder(), record, None)
        except (OSError, CacheError) as exc:
            log.debug(
                "multipart upload %s of s3://%s/%s not journaled: %s", upload_id, bucket, key, exc
            )
            return None

    @staticmethod
    def identified(entry: Path | None, upload_id: str) -> None:
        """Record the id the server gave the upload an entry was opened for."""
        if entry is None:
            return
        try:
            record = json.loads(entry.read_text())
            record["upload_id"] = upload_id
            _write(entry.parent, record, entry)
        except (OSError, ValueError) as exc:
            log.debug("multipart upload %s not journaled: %s", upload_id, exc)

    def journaled_ids(self, endpoint: str) -> set[str]:
        """The upload ids every entry for ``endpoint`` names, live or stale."""
        ids = set()
        with contextlib.suppress(OSError, CacheError):
            for entry in self._folder().glob("*.json"):
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    record = json.loads(entry.read_text())
                    if record["endpoint"] == endpoint and record["upload_id"]:
                        ids.add(str(record["upload_id"]))
        return ids

    @staticmethod
    def closed(entry: Path | None) -> None:
        if entry is not None:
            with contextlib.suppress(OSError):
                entry.unlink()

    def stale(self, endpoint: str) -> list[OpenUpload]:
        """Uploads to ``endpoint`` journaled by processes that are gone (or too long ago)."""
        try:
            entries = list(self._folder().glob("*.json"))
        except (OSError, CacheError):
            return []
        found = []
        now = time.time()
        for entry in entries:
            try:
                record = json.loads(entry.read_text())
                if record["endpoint"] != endpoint:
                    continue
                alive = process_running(int(record["pid"])) and (
                    process_identity(int(record["pid"])) == record["process"]
                )
                if alive and now - float(record["opened"]) < STALE_UPLOAD_SECONDS:
                    continue
                upload_id = record["upload_id"]
                found.append(
                    OpenUpload(
                        endpoint,
                        record["bucket"],
                        record["key"],
                        None if upload_id is None else str(upload_id),
                        entry,
                        float(record["opened"]),
                    )
                )
            except (OSError, ValueError, KeyError, TypeError):
                with contextlib.suppress(OSError):
                    entry.unlink()  # unreadable: it can name nothing we could abort
        return found
