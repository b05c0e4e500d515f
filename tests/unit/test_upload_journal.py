"""The journal of open multipart uploads: what a later client may abort, and what it must not."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

from deltaglider_async._storage.journal import STALE_UPLOAD_SECONDS, UploadJournal

ENDPOINT = "http://127.0.0.1:8333"


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def _rewrite(entry: Path, **changes: object) -> None:
    record = json.loads(entry.read_text())
    record.update(changes)
    entry.write_text(json.dumps(record))


def test_own_open_uploads_are_not_stale_and_closing_removes_them(tmp_path: Path) -> None:
    journal = UploadJournal(tmp_path / "uploads")
    entry = journal.opened(ENDPOINT, "bkt", "a/app.zip", "upload-1")
    assert entry is not None and entry.exists()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "uploads").stat().st_mode) == 0o700
    assert journal.stale(ENDPOINT) == []
    assert UploadJournal(tmp_path / "uploads").stale(ENDPOINT) == []  # another client, same process
    journal.closed(entry)
    assert list((tmp_path / "uploads").iterdir()) == []


def test_uploads_of_gone_processes_are_stale_on_their_endpoint_only(tmp_path: Path) -> None:
    journal = UploadJournal(tmp_path / "uploads")
    dead = journal.opened(ENDPOINT, "bkt", "a/app.zip.delta", "upload-dead")
    reused = journal.opened(ENDPOINT, "bkt", "a/b.zip", "upload-reused")
    elsewhere = journal.opened("http://other:9000", "bkt", "c", "upload-elsewhere")
    live = journal.opened(ENDPOINT, "bkt", "d", "upload-live")
    assert dead and reused and elsewhere and live
    gone = _dead_pid()
    _rewrite(dead, pid=gone, process=f"boot/{gone}/1")
    _rewrite(elsewhere, pid=gone, process=f"boot/{gone}/1")
    _rewrite(reused, process="another boot/1/1")  # our pid, but not our process
    stale = journal.stale(ENDPOINT)
    assert sorted(u.upload_id for u in stale) == ["upload-dead", "upload-reused"]
    assert {u.key for u in stale} == {"a/app.zip.delta", "a/b.zip"}
    assert all(u.bucket == "bkt" and u.path.exists() for u in stale)
    assert [u.upload_id for u in journal.stale("http://other:9000")] == ["upload-elsewhere"]


def test_an_upload_open_for_longer_than_the_threshold_is_stale_whoever_holds_it(
    tmp_path: Path,
) -> None:
    journal = UploadJournal(tmp_path / "uploads")
    entry = journal.opened(ENDPOINT, "bkt", "k", "upload-old")
    assert entry is not None
    _rewrite(entry, opened=time.time() - STALE_UPLOAD_SECONDS - 1)
    assert [u.upload_id for u in journal.stale(ENDPOINT)] == ["upload-old"]


def test_unreadable_entries_are_dropped_and_an_unwritable_journal_loses_only_the_cleanup(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "uploads"
    journal = UploadJournal(folder)
    journal.opened(ENDPOINT, "bkt", "k", "upload-1")
    (folder / "1-broken.json").write_text("{not json")
    (folder / "2-partial.json").write_text(json.dumps({"endpoint": ENDPOINT}))
    assert journal.stale(ENDPOINT) == []
    assert len(list(folder.iterdir())) == 1
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert UploadJournal(blocked / "uploads").opened(ENDPOINT, "bkt", "k", "u") is None
    assert UploadJournal(blocked / "uploads").stale(ENDPOINT) == []


def test_an_upload_is_journaled_before_it_has_an_id(tmp_path: Path) -> None:
    journal = UploadJournal(tmp_path / "uploads")
    entry = journal.opened(ENDPOINT, "bkt", "a/app.zip", None)
    other = journal.opened(ENDPOINT, "bkt", "a/b.zip", "upload-b")
    assert entry is not None and other is not None
    assert journal.journaled_ids(ENDPOINT) == {"upload-b"}
    gone = _dead_pid()
    _rewrite(entry, pid=gone, process=f"boot/{gone}/1")
    [stale] = journal.stale(ENDPOINT)
    assert (stale.key, stale.upload_id, stale.path) == ("a/app.zip", None, entry)
    assert abs(stale.opened - time.time()) < 60
    journal.identified(entry, "upload-a")
    assert [u.upload_id for u in journal.stale(ENDPOINT)] == ["upload-a"]
    assert journal.journaled_ids(ENDPOINT) == {"upload-a", "upload-b"}
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == sorted(
        [entry.name, other.name]
    )
