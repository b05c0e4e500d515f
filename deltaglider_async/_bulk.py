"""Many files at once: bounded concurrency, per-file results, progress events.

Encoding runs on the client's codec limiter (sized to the cores) while network requests of other
files overlap.  In each delta space the first upload runs alone, so that the space's reference is
created once instead of being raced (and uploaded in full) by every file in flight; the cache then
fetches each reference once.  A failure is recorded for its file and the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio

from ._core.spaces import parse_s3_url, space_of, upload_key
from ._exceptions import DeltaGliderError
from ._models import DownloadSummary, UploadSummary
from ._tasks import task_group

if TYPE_CHECKING:
    from ._client import AsyncDeltaGliderClient


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a transfer: ``start`` (with the total), ``advance`` (bytes), ``done``."""

    kind: Literal["start", "advance", "done"]
    source: str
    destination: str
    bytes_done: int = 0
    bytes_total: int = 0
    #: on ``done``: bytes stored in S3 and how (``delta``/``direct``), or the error
    stored_size: int | None = None
    stored_as: str | None = None
    error: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class TransferResult:
    source: str
    destination: str
    upload: UploadSummary | None = None
    download: DownloadSummary | None = None
    error: DeltaGliderError | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.error is None


def _emit(progress: ProgressCallback | None, event: ProgressEvent) -> None:
    if progress is not None:
        progress(event)


async def upload_many(
    client: AsyncDeltaGliderClient,
    items: Iterable[tuple[str | os.PathLike[str], str]],
    *,
    max_ratio: float | None = None,
    no_delta: bool = False,
    progress: ProgressCallback | None = None,
) -> list[TransferResult]:
    """Upload ``(local path, s3 url)`` pairs; results come back in the order given."""
    pairs = [(Path(p), url) for p, url in items]
    results = [TransferResult(str(p), url) for p, url in pairs]
    limiter = anyio.CapacityLimiter(client.transfer.max_files)
    first_done: dict[tuple[str, str], anyio.Event] = {}
    firsts: set[int] = set()
    for index, (path, url) in enumerate(pairs):
        target = parse_s3_url(url)
        space = (target.bucket, space_of(upload_key(target, path.name)))
        if space not in first_done:
            first_done[space] = anyio.Event()
            firsts.add(index)

    async def one(index: int) -> None:
        path, url = pairs[index]
        result = results[index]
        target = parse_s3_url(url)
        gate = first_done[(target.bucket, space_of(upload_key(target, path.name)))]
        if index not in firsts:
            await gate.wait()
        try:
            async with limiter:
                total = path.stat().st_size if path.is_file() else 0
                _emit(progress, ProgressEvent("start", str(path), url, 0, total))
                result.upload = await client.upload(
                    path,
                    url,
                    max_ratio=max_ratio,
                    no_delta=no_delta,
                    progress=lambda n: _emit(
                        progress, ProgressEvent("advance", str(path), url, n, total)
                    ),
                )
                _emit(
                    progress,
                    ProgressEvent(
                        "done",
                        str(path),
                        url,
                        total,
                        total,
                        result.upload.stored_size,
                        result.upload.stored_as,
                    ),
                )
        except DeltaGliderError as exc:
            result.error = exc
            _emit(progress, ProgressEvent("done", str(path), url, error=str(exc)))
        except OSError as exc:
            result.error = DeltaGliderError(f"{path}: {exc.strerror or exc}", code="LocalIOError")
            _emit(progress, ProgressEvent("done", str(path), url, error=str(result.error)))
        finally:
            if index in firsts:
                gate.set()

    async with task_group() as tg:
        for index in range(len(pairs)):
            tg.start_soon(one, index)
    return results


async def download_many(
    client: AsyncDeltaGliderClient,
    items: Iterable[tuple[str, str | os.PathLike[str]]],
    *,
    progress: ProgressCallback | None = None,
) -> list[TransferResult]:
    """Download ``(s3 url, local path)`` pairs; results come back in the order given."""
    pairs = [(url, Path(p)) for url, p in items]
    results = [TransferResult(url, str(p)) for url, p in pairs]
    limiter = anyio.CapacityLimiter(client.transfer.max_files)

    async def one(index: int) -> None:
        url, path = pairs[index]
        result = results[index]
        try:
            async with limiter:
                _emit(progress, ProgressEvent("start", url, str(path)))
                result.download = await client.download(
                    url,
                    path,
                    progress=lambda n: _emit(progress, ProgressEvent("advance", url, str(path), n)),
                )
                size = result.download.size
                _emit(
                    progress,
                    ProgressEvent(
                        "done", url, str(path), size, size, None, result.download.stored_as
                    ),
                )
        except DeltaGliderError as exc:
            result.error = exc
            _emit(progress, ProgressEvent("done", url, str(path), error=str(exc)))
        except OSError as exc:
            result.error = DeltaGliderError(f"{path}: {exc.strerror or exc}", code="LocalIOError")
            _emit(progress, ProgressEvent("done", url, str(path), error=str(result.error)))

    async with task_group() as tg:
        for index in range(len(pairs)):
            tg.start_soon(one, index)
    return results
