"""Many files at once: bounded concurrency, per-file results, progress events.

Encoding runs on the client's codec limiter (sized to the cores) while network requests of other
files overlap.  In each delta space the first upload leads: it alone may create the space's
reference, so the reference is created once instead of being raced (and uploaded in full) by every
file in flight.  As soon as the leader has hashed its file and put it in the reference cache, the
others encode against that copy while the reference is still uploading; they store their deltas
only once the reference exists with that SHA-256 (and encode again if another writer's reference
won).  A failure is recorded for its file and the others go on.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from .._core.spaces import is_eligible, parse_s3_url, space_of, upload_key
from .._exceptions import DeltaGliderError
from .._models import DownloadSummary, UploadSummary
from .._tasks import task_group
from .election import SpaceStart
from .get import GetPipeline
from .put import PutPipeline, local_to_key


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


def _with_content_type(
    path: Path, attributes: Mapping[str, Any] | None, guess: bool
) -> Mapping[str, Any]:
    attributes = attributes or {}
    if not guess or "ContentType" in attributes:
        return attributes
    guessed, _ = mimetypes.guess_type(path.name)
    return {**attributes, "ContentType": guessed} if guessed else attributes


def _emit(progress: ProgressCallback | None, event: ProgressEvent) -> None:
    if progress is not None:
        progress(event)


async def upload_many(
    put: PutPipeline,
    items: Iterable[tuple[str | os.PathLike[str], str]],
    *,
    max_ratio: float | None = None,
    no_delta: bool = False,
    progress: ProgressCallback | None = None,
    metadata: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
    guess_content_type: bool = False,
) -> list[TransferResult]:
    """Upload ``(local path, s3 url)`` pairs, each with ``metadata`` and the PutObject
    ``attributes`` (plus, with ``guess_content_type``, the ``ContentType`` its name suggests,
    as aws-cli guesses it); results come back in the order given."""
    pairs = [(Path(p), url) for p, url in items]
    results = [TransferResult(str(p), url) for p, url in pairs]
    limiter = anyio.CapacityLimiter(put.transfer.max_files)
    # Files stored as deltas share their space's start; the first of them leads.
    starts: dict[int, SpaceStart] = {}
    leaders: set[int] = set()
    by_space: dict[tuple[str, str], SpaceStart] = {}
    for index, (path, url) in enumerate(pairs):
        target = parse_s3_url(url)
        key = upload_key(target, path.name)
        if no_delta or not is_eligible(key, put.extensions):
            continue
        space = (target.bucket, space_of(key))
        if space not in by_space:
            by_space[space] = SpaceStart()
            leaders.add(index)
        starts[index] = by_space[space]

    async def one(index: int) -> None:
        path, url = pairs[index]
        result = results[index]
        start = starts.get(index)
        leads = index in leaders
        if start is not None and not leads:
            await start.ready.wait()
        try:
            async with limiter:
                total = path.stat().st_size if path.is_file() else 0
                _emit(progress, ProgressEvent("start", str(path), url, 0, total))
                local, target, key = local_to_key(path, url)
                result.upload = await put.store(
                    target.bucket,
                    key,
                    local,
                    user_metadata=metadata,
                    attributes=_with_content_type(path, attributes, guess_content_type),
                    max_ratio=max_ratio,
                    no_delta=no_delta,
                    progress=lambda n: _emit(
                        progress, ProgressEvent("advance", str(path), url, n, total)
                    ),
                    space_start=start,
                    leads=leads,
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
            if start is not None and leads:
                start.settle(None)  # no-op once the leader settled it

    async with task_group() as tg:
        for index in range(len(pairs)):
            tg.start_soon(one, index)
    return results


async def download_many(
    get: GetPipeline,
    items: Iterable[tuple[str, str | os.PathLike[str]]],
    *,
    progress: ProgressCallback | None = None,
) -> list[TransferResult]:
    """Download ``(s3 url, local path)`` pairs; results come back in the order given."""
    pairs = [(url, Path(p)) for url, p in items]
    results = [TransferResult(url, str(p)) for url, p in pairs]
    limiter = anyio.CapacityLimiter(get.transfer.max_files)

    async def one(index: int) -> None:
        url, path = pairs[index]
        result = results[index]
        try:
            async with limiter:
                _emit(progress, ProgressEvent("start", url, str(path)))
                result.download = await get.download(
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


async def copy_many(
    put: PutPipeline,
    get: GetPipeline,
    items: Iterable[tuple[str, str]],
    *,
    progress: ProgressCallback | None = None,
    metadata: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
    reencode: bool = False,
) -> list[TransferResult]:
    """Copy ``(s3 url, s3 url)`` pairs of logical objects into delta form at the destination,
    each with ``metadata``, ``attributes`` and ``reencode`` as :meth:`PutPipeline.copy` takes
    them.

    The first copy into each destination space goes before the others of that space (it may
    become the reference: one upload of it instead of a race); spaces proceed concurrently.
    Results come back in the order given.
    """
    pairs = [(parse_s3_url(src), parse_s3_url(dst)) for src, dst in items]
    results = [TransferResult(str(src), str(dst)) for src, dst in pairs]
    limiter = anyio.CapacityLimiter(put.transfer.max_files)
    firsts: dict[tuple[str, str], int] = {}
    for index, (_, dst) in enumerate(pairs):
        firsts.setdefault((dst.bucket, space_of(dst.key)), index)

    async def one(index: int) -> None:
        src, dst = pairs[index]
        result = results[index]
        try:
            async with limiter:
                _emit(progress, ProgressEvent("start", str(src), str(dst)))
                obj = await get.resolve(src.bucket, src.key)
                result.upload = await put.copy(
                    obj,
                    dst.bucket,
                    dst.key,
                    metadata=metadata,
                    attributes=attributes,
                    reencode=reencode,
                )
                size = result.upload.original_size
                _emit(
                    progress,
                    ProgressEvent(
                        "done",
                        str(src),
                        str(dst),
                        size,
                        size,
                        result.upload.stored_size,
                        result.upload.stored_as,
                    ),
                )
        except DeltaGliderError as exc:
            result.error = exc
            _emit(progress, ProgressEvent("done", str(src), str(dst), error=str(exc)))

    leaders = set(firsts.values())
    async with task_group() as tg:
        for index in sorted(leaders):
            tg.start_soon(one, index)
    async with task_group() as tg:
        for index in range(len(pairs)):
            if index not in leaders:
                tg.start_soon(one, index)
    return results
