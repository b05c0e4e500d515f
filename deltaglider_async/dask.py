"""``migrate``, ``verify`` and detailed ``stats`` of whole buckets on a Dask cluster.

Needs the ``dask`` extra (``pip install 'deltaglider-async[dask]'``, which brings
``distributed``).  Work is partitioned by delta space, never splitting one (its reference
election stays on one worker), and spaces are batched so that the scheduler's cost per task stays
small against the work.  Each worker process builds one SDK client per :class:`ClientSpec` and
reuses it (its connections, reference cache and codec pool) across tasks.  Dask schedules,
reschedules a task whose worker died (``allowed-failures``) and retries one that raised
(``retries=2``); the SDK's all-or-nothing writes and the re-check of each migration batch
against its destination make a task that runs twice do its work once.

>>> from deltaglider_async.dask import ClientSpec, connect
>>> async def convert() -> None:
...     spec = ClientSpec(endpoint_url="http://s3.internal:8333", delta_format="archive")
...     async with create_client(spec.endpoint_url) as dg, connect("local:2", spec) as cluster:
...         steps = await dg.plan_migration("s3://b/", "s3://b/", delta_format="archive")
...         results = await cluster.migrate(steps)
...         await dg.reform_references("s3://b/")  # then the references, as the CLI does

Credentials: workers resolve their own (environment, profile, instance role), as every AWS
client does; a spec carries keys only when given them explicitly, and then sends them to every
worker with each task.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._client import AsyncDeltaGliderClient, create_client
from ._core.partition import batch_by_space
from ._core.spaces import parse_s3_url, space_of
from ._core.stats import BucketStats, Mode, StoredObject
from ._exceptions import DeltaGliderError, InvalidArgumentError
from ._migration import MigrationStep, space_of_url
from ._models import VerifyResult
from ._pipeline.bulk import TransferResult
from ._transfer import TransferConfig

if TYPE_CHECKING:
    import distributed

R = TypeVar("R")
T = TypeVar("T")

#: Tasks per worker thread a job is cut into: enough to balance uneven spaces, few enough that
#: scheduling stays cheap.
TASKS_PER_THREAD = 4
#: Threads of each ``local[:N]`` worker process: task slots, not CPUs.  A task only waits for
#: the process's one client, whose own limits (``max_files``, ``codec_threads``) bound the work;
#: several tasks at once keep a process busy while a space's first object goes alone and while
#: requests wait for S3.
LOCAL_TASK_SLOTS = 4
#: Smallest batch worth a task, in bytes of work (see ``_core.partition``): about a second of
#: archive conversion on one core, against about a millisecond of scheduling.
MIN_BATCH_WORK = 8 * 1024 * 1024
#: Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also fixes glibc's mmap
#: threshold, so every large buffer is mapped and unmapped anew: archive conversion ran 22-45 %
#: slower in a worker than in a plain process.  Unset for our local workers (docs/dask.md says
#: how to do the same on a real cluster).
LOCAL_WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
#: Seconds to reach a scheduler before giving up.
CONNECT_TIMEOUT = 15
#: HEADs per task for stats: a HEAD is cheap, so a task carries thousands.
MIN_HEADS_PER_TASK = 2000


@dataclass(frozen=True)
class ClientSpec:
    """How every worker builds its client: :func:`create_client`'s arguments, picklable."""

    endpoint_url: str | None = None
    region_name: str | None = None
    profile_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    max_ratio: float | None = None
    delta_format: str | None = None
    transfer: TransferConfig | None = None

    def build(self) -> AsyncDeltaGliderClient:
        return create_client(**dataclasses.asdict(self) | {"transfer": self.transfer})


class _WorkerRuntime:
    """One event loop on a thread of its own and one open client per spec, per worker process,
    reused by every task that process runs."""

    _instance: _WorkerRuntime | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="deltaglider-dask", daemon=True
        )
        self._thread.start()
        self._clients: dict[ClientSpec, asyncio.Future[AsyncDeltaGliderClient]] = {}
        atexit.register(self.close)

    @classmethod
    def get(cls) -> _WorkerRuntime:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def run(self, spec: ClientSpec, job: Callable[[AsyncDeltaGliderClient], Awaitable[R]]) -> R:
        async def call() -> R:
            opening = self._clients.get(spec)
            if opening is None:
                opening = self._clients[spec] = asyncio.ensure_future(_opened(spec))
            try:
                client = await opening
            except BaseException:
                self._clients.pop(spec, None)
                raise
            return await job(client)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result()

    def close(self) -> None:
        async def close_all() -> None:
            for opening in self._clients.values():
                with contextlib.suppress(BaseException):
                    await (await opening).aclose()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)


async def _opened(spec: ClientSpec) -> AsyncDeltaGliderClient:
    client = spec.build()
    await client.__aenter__()
    return client


# Tasks: module-level functions, so that workers import them instead of unpickling code.
def _migrate_task(spec: ClientSpec, steps: list[MigrationStep]) -> list[TransferResult]:
    return _WorkerRuntime.get().run(spec, lambda dg: dg.migrate(steps, recheck=True))


def _verify_task(spec: ClientSpec, urls: list[str]) -> list[VerifyResult]:
    return _WorkerRuntime.get().run(spec, lambda dg: dg.verify_many(urls))


def _heads_task(
    spec: ClientSpec, bucket: str, objects: list[StoredObject]
) -> tuple[dict[str, int], int]:
    return _WorkerRuntime.get().run(spec, lambda dg: dg._stats.original_sizes(bucket, objects))


class DaskCluster:
    """A connection to a Dask scheduler that runs the SDK's bulk jobs; see :func:`connect`."""

    def __init__(
        self, client: distributed.Client, spec: ClientSpec, *, min_batch_work: int = MIN_BATCH_WORK
    ) -> None:
        self._client = client
        self.spec = spec
        self.min_batch_work = min_batch_work

    @property
    def client(self) -> distributed.Client:
        """The ``distributed.Client`` (asynchronous) the jobs run through."""
        return self._client

    async def threads(self) -> int:
        """Worker threads the scheduler has now (at least 1)."""
        found = await cast("Awaitable[dict[str, int]]", self._client.nthreads())
        return max(1, sum(found.values()))

    async def migrate(
        self,
        steps: Sequence[MigrationStep],
        *,
        on_result: Callable[[TransferResult], None] | None = None,
    ) -> list[TransferResult]:
        """Copy planned steps (:meth:`AsyncDeltaGliderClient.plan_migration`) on the cluster,
        whole destination spaces per task; results in the order given."""
        batches = batch_by_space(
            steps,
            lambda s: s.destination_space,
            lambda s: s.size,
            batches=await self.threads() * TASKS_PER_THREAD,
            min_batch_work=self.min_batch_work,
        )

        def failed(batch: list[MigrationStep], exc: BaseException) -> list[TransferResult]:
            return [TransferResult(s.source, s.destination, error=_task_error(exc)) for s in batch]

        done = await self._run(_migrate_task, batches, failed, on_result)
        by_pair = {(r.source, r.destination): r for r in done}
        # A step the re-check found done has no result of this run: it was done already.
        return [
            by_pair[(s.source, s.destination)]
            for s in steps
            if (s.source, s.destination) in by_pair
        ]

    async def verify(
        self,
        urls: Sequence[str],
        *,
        sizes: Sequence[int] | None = None,
        on_result: Callable[[VerifyResult], None] | None = None,
    ) -> list[VerifyResult]:
        """:meth:`AsyncDeltaGliderClient.verify` of every URL on the cluster, whole spaces per
        task (``sizes``, e.g. stored sizes from a listing, balance the batches)."""
        weights = dict(zip(urls, sizes or [0] * len(urls), strict=True))
        batches = batch_by_space(
            list(urls),
            space_of_url,
            weights.__getitem__,
            batches=await self.threads() * TASKS_PER_THREAD,
            min_batch_work=self.min_batch_work,
        )

        def failed(batch: list[str], exc: BaseException) -> list[VerifyResult]:
            results = []
            for url in batch:
                target = parse_s3_url(url)
                results.append(
                    VerifyResult(target.bucket, target.key, False, None, None, 0, "plain", str(exc))
                )
            return results

        done = await self._run(_verify_task, batches, failed, on_result)
        order = {url: i for i, url in enumerate(urls)}
        return sorted(done, key=lambda r: order.get(f"s3://{r.bucket}/{r.key}", len(order)))

    async def bucket_stats(
        self,
        dg: AsyncDeltaGliderClient,
        bucket: str,
        mode: Mode = "detailed",
        *,
        prefix: str | None = None,
        refresh: bool = False,
    ) -> BucketStats:
        """``dg.bucket_stats`` with the deltas' HEADs done on the cluster: ``dg`` lists (and
        keeps its caches and the in-bucket stats document), the workers HEAD."""

        async def remote(name: str, objects: list[StoredObject]) -> tuple[dict[str, int], int]:
            batches = batch_by_space(
                objects,
                lambda o: space_of(o.key),
                lambda o: 0,
                batches=await self.threads() * TASKS_PER_THREAD,
                min_batch_work=MIN_HEADS_PER_TASK * 256 * 1024,
            )
            futures = [
                self._client.submit(_heads_task, self.spec, name, batch, pure=False, retries=2)
                for batch in batches
            ]
            sizes: dict[str, int] = {}
            failed = 0
            for future, batch in zip(futures, batches, strict=True):
                try:
                    found, lost = await future
                except Exception:
                    found, lost = {}, len(batch)
                sizes.update(found)
                failed += lost
            return sizes, failed

        return await dg._stats.bucket_stats(
            bucket, mode, prefix=prefix, refresh=refresh, remote=remote
        )

    async def _run(
        self,
        task: Callable[..., list[R]],
        batches: list[list[T]],
        failed: Callable[[list[T], BaseException], list[R]],
        on_result: Callable[[R], None] | None,
    ) -> list[R]:
        import distributed

        futures = {
            self._client.submit(task, self.spec, batch, pure=False, retries=2): batch
            for batch in batches
        }
        results: list[R] = []
        async for future in distributed.as_completed(list(futures)):
            try:
                batch_results = await future
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # KilledWorker after allowed-failures, or the task's own
                batch_results = failed(futures[future], exc)
            for result in batch_results:
                results.append(result)
                if on_result is not None:
                    on_result(result)
        return results


def _task_error(exc: BaseException) -> DeltaGliderError:
    if isinstance(exc, DeltaGliderError):
        return exc
    return DeltaGliderError(f"cluster task failed: {type(exc).__name__}: {exc}", code="DaskError")


def _parse_address(address: str) -> int | None:
    """Workers of a ``local[:N]`` cluster (None for a scheduler's address)."""
    if address != "local" and not address.startswith("local:"):
        return None
    count = address.partition(":")[2]
    if not count:
        return None if address != "local" else 0
    if not count.isdigit() or int(count) < 1:
        raise InvalidArgumentError(f"--dask local:N needs a worker count of 1 or more: {address!r}")
    return int(count)


@contextlib.asynccontextmanager
async def connect(
    address: str, spec: ClientSpec, *, min_batch_work: int = MIN_BATCH_WORK
) -> AsyncIterator[DaskCluster]:
    """A :class:`DaskCluster` on the scheduler at ``address`` (``tcp://host:8786``, or anything
    ``distributed.Client`` accepts), or on a ``LocalCluster`` of worker processes for
    ``local`` (one per core) or ``local:N``, each with :data:`LOCAL_TASK_SLOTS` task slots.
    ``min_batch_work`` is the least work (bytes, plus 256 KiB per object) one task carries."""
    try:
        import dask
        import distributed
    except ImportError:
        raise InvalidArgumentError(
            "Dask support needs the dask extra: pip install 'deltaglider-async[dask]'"
        ) from None
    workers = _parse_address(address)
    async with contextlib.AsyncExitStack() as stack:
        target: Any = address
        if workers is not None:
            logging.getLogger("distributed").setLevel(logging.ERROR)
            stack.enter_context(dask.config.set(LOCAL_WORKER_CONFIG))
            target = await stack.enter_async_context(
                distributed.LocalCluster(
                    n_workers=workers or None,
                    threads_per_worker=LOCAL_TASK_SLOTS,
                    processes=True,
                    dashboard_address=None,
                    asynchronous=True,
                )
            )
        try:
            client = await stack.enter_async_context(distributed.Client(target, asynchronous=True))
        except (OSError, TimeoutError, ValueError) as exc:
            raise InvalidArgumentError(
                f"cannot reach the Dask scheduler {address!r}: {exc}"
            ) from None
        if workers:
            await cast("Awaitable[None]", client.wait_for_workers(workers))
        yield DaskCluster(client, spec, min_batch_work=min_batch_work)
