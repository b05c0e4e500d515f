"""Transfer tuning in one value object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ._exceptions import InvalidArgumentError

MiB = 1 << 20
_MAX_PARTS = 10_000


@dataclass(frozen=True)
class TransferConfig:
    """How objects move: multipart sizes, parallelism, retries and timeouts.

    - ``multipart_threshold``: files at least this large go up as multipart uploads and large
      direct objects come down as parallel ranged GETs.
    - ``part_size``: multipart part size (raised automatically to stay within 10,000 parts).
    - ``range_size``: bytes per ranged GET of a parallel download.  Larger than a part because
      each range costs its connection a round trip: a 1 GiB download at 50 ms RTT took
      1.85-1.93 s in 8 MiB ranges and 1.66-1.75 s in 16 MiB ones (boto3: 1.64-1.73 s).
    - ``max_concurrency``: parts (or ranges) in flight per object.
    - ``max_files``: objects in flight for bulk operations.
    - ``codec_threads``: encoders/decoders running at once (defaults to the CPU count).
    - ``max_heads``: concurrent HEAD requests for statistics.
    - ``max_attempts``: total attempts per request (botocore standard retry mode); a stall
      (no byte moved for ``read_timeout``, upload bodies included) is retried only once, so a
      stopped server is reported after about two read timeouts.
    - ``connect_timeout``, ``read_timeout``: aws-cli's defaults (``read_timeout`` is also how
      long an upload body may go without the server taking a byte).
    - ``request_timeout``: our own bound on one attempt of one request, however it progresses.
    - ``abort_timeout``: how long a failed multipart upload keeps trying to abort.
    - ``memory_limit``: the process's memory budget for codec tables, block caches and part
      buffers (``DG_MEMORY_LIMIT``, else 512 MiB); work that does not fit waits its turn.
    - ``fast_path``: send the hot requests (HEAD, listings, parts, ranged GETs) over the lean
      aiohttp path signed by botocore's signer; False (or ``DG_FAST_PATH=0``) sends everything
      through botocore.
    """

    multipart_threshold: int = 64 * MiB
    part_size: int = 8 * MiB
    range_size: int = 16 * MiB
    max_concurrency: int = 8
    max_files: int = 16
    codec_threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    max_heads: int = 64
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    request_timeout: float = 300.0
    abort_timeout: float = 20.0
    fast_path: bool = True
    memory_limit: int | None = None

    def __post_init__(self) -> None:
        if self.part_size < 5 * MiB:
            raise InvalidArgumentError("part_size must be at least 5 MiB (an S3 limit)")
        if self.range_size < MiB:
            raise InvalidArgumentError("range_size must be at least 1 MiB")
        if self.multipart_threshold < self.part_size:
            raise InvalidArgumentError("multipart_threshold must be at least part_size")
        if self.memory_limit is not None and self.memory_limit < 128 * MiB:
            # an encoder's smallest tables, windows and block cache take about 80 MiB
            raise InvalidArgumentError("memory_limit must be at least 128 MiB")
        for name in ("max_concurrency", "max_files", "codec_threads", "max_attempts", "max_heads"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be at least 1")

    def part_size_for(self, size: int) -> int:
        part = self.part_size
        while size > part * _MAX_PARTS:
            part *= 2
        return part
