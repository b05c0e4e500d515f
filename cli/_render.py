"""Output: aws-style result lines or JSON lines on stdout, progress and summaries on stderr."""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from deltaglider_async import ProgressEvent


def human(n: float) -> str:
    """Binary units, as ``aws s3 ls --human-readable``: ``12.3 KiB``."""
    value = float(n)
    for unit in ("Bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "Bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def printable(text: str) -> str:
    """Control characters of keys and paths shown escaped: a key must not drive the terminal."""
    if text.isprintable() or not any(_is_control(c) for c in text):
        return text
    return "".join(f"\\x{ord(c):02x}" if _is_control(c) else c for c in text)


_BIDI_OVERRIDES = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _is_control(char: str) -> bool:
    """ESC, BEL and the rest of C0/C1, and the bidi overrides that reorder what is shown."""
    return (unicodedata.category(char) == "Cc" and char != "\t") or char in _BIDI_OVERRIDES


@dataclass
class Output:
    """Where each kind of output goes, decided once from the flags and the terminal."""

    json_mode: bool = False
    quiet: bool = False
    only_errors: bool = False
    progress: bool = True
    #: ``--show-savings``: upload lines end with how each file is stored
    show_savings: bool = False
    stdout: Any = field(default_factory=lambda: sys.stdout)
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    started: float = field(default_factory=time.monotonic)

    @property
    def show_progress(self) -> bool:
        return self.progress and not (self.json_mode or self.quiet) and self.err.is_terminal

    def result(self, line: str, record: dict[str, Any]) -> None:
        """One operation's outcome: an aws-style line, or one JSON object with ``--json``."""
        if self.json_mode:
            self.stdout.write(json.dumps(record, default=str) + "\n")
        elif not (self.quiet or self.only_errors):
            self.stdout.write(printable(line) + "\n")
        self.stdout.flush()

    def error(self, line: str, record: dict[str, Any]) -> None:
        if self.json_mode:
            self.stdout.write(json.dumps({**record, "ok": False}, default=str) + "\n")
            self.stdout.flush()
        if not self.quiet or not self.json_mode:
            self.err.print(printable(line), markup=False, soft_wrap=True)

    def savings(self, text: str) -> str:
        """`` (delta 171 Bytes, 99.9% saved)`` with ``--show-savings``, else nothing: result
        lines stay aws-cli's, for scripts that parse them."""
        return f" {text}" if self.show_savings else ""

    def data(self, record: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(record, default=str) + "\n")
        self.stdout.flush()

    def line(self, text: str) -> None:
        self.stdout.write("\n".join(printable(part) for part in text.split("\n")) + "\n")

    def note(self, text: str) -> None:
        """Human-only information (summaries, hints) on stderr."""
        if not (self.json_mode or self.quiet or self.only_errors):
            self.err.print(text, markup=False, highlight=False, soft_wrap=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class _Bars:
    """Rich progress bars on stderr, started and stopped with ``with`` (None off a terminal)."""

    _progress: Progress | None = None

    def __enter__(self) -> Self:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


class TransferProgress(_Bars):
    """Rich progress bars fed by the SDK's progress events (drawn only on a terminal)."""

    def __init__(self, out: Output, total_bytes: int, files: int) -> None:
        self._enabled = out.show_progress
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        if self._enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=out.err,
                transient=True,
            )
            self._overall = self._progress.add_task(f"{files} file(s)", total=total_bytes or None)

    def __call__(self, event: ProgressEvent) -> None:
        progress = self._progress
        if progress is None:
            return
        name = event.source.rsplit("/", 1)[-1]
        if event.kind == "start":
            self._tasks[event.source] = progress.add_task(
                name[:40], total=event.bytes_total or None
            )
        elif event.kind == "advance":
            task = self._tasks.get(event.source)
            if task is not None:
                progress.advance(task, event.bytes_done)
            progress.advance(self._overall, event.bytes_done)
        else:
            task = self._tasks.pop(event.source, None)
            if task is not None:
                progress.remove_task(task)


class ItemProgress(_Bars):
    """One bar of finished objects for bulk jobs that report objects as they complete: local
    ``ProgressEvent``s or a cluster's results alike."""

    def __init__(self, out: Output, items: int) -> None:
        self._progress: Progress | None = None
        if out.show_progress:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=out.err,
                transient=True,
            )
            self._task = self._progress.add_task("object(s)", total=items or None)

    def item(self, _result: object = None) -> None:
        """One object finished (ok or not)."""
        if self._progress is not None:
            self._progress.advance(self._task, 1)

    def event(self, event: ProgressEvent) -> None:
        if event.kind == "done":
            self.item()


@dataclass
class Summary:
    """The closing block: what moved, what it cost in S3, what failed."""

    operation: str
    files: int = 0
    failed: int = 0
    #: files left out with a warning (a dangling symlink), as aws-cli skips them
    skipped: int = 0
    original_bytes: int = 0
    stored_bytes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def exit_code(self) -> int:
        """aws-cli's: 1 when a transfer failed, else 2 when a file was skipped, else 0."""
        return 1 if self.failed else 2 if self.skipped else 0

    def add(self, original: int, stored: int, kind: str) -> None:
        self.files += 1
        self.original_bytes += original
        self.stored_bytes += stored
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def as_dict(self, elapsed: float) -> dict[str, Any]:
        saved = max(0, self.original_bytes - self.stored_bytes)
        return {
            "summary": {
                "operation": self.operation,
                "files": self.files,
                "failed": self.failed,
                "transferred_bytes": self.original_bytes,
                "stored_bytes": self.stored_bytes,
                "saved_bytes": saved,
                "by_kind": self.kinds,
                "elapsed_seconds": round(elapsed, 3),
            }
        }

    def render(self, out: Output) -> None:
        if out.json_mode:
            out.data(self.as_dict(out.elapsed()))
            return
        if self.files == 0 and self.failed == 0:
            return
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items())) or "none"
        head = f"{self.operation}: {self.files} file(s) ({kinds}), {human(self.original_bytes)}"
        if self.operation == "upload":
            saved = max(0, self.original_bytes - self.stored_bytes)
            pct = 100.0 * saved / self.original_bytes if self.original_bytes else 0.0
            head += (
                f" uploaded, {human(self.stored_bytes)} stored, {human(saved)} saved ({pct:.1f}%)"
            )
        out.note(f"{head}, {self.failed} failed, {out.elapsed():.1f}s")
