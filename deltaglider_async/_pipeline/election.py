"""Reference election: which upload's file becomes a delta space's ``reference.bin``.

Exactly one concurrent writer wins the create-only PUT (``If-None-Match: *``); everyone else
encodes against the winner.  In a bulk upload the first file of each space leads: it alone may
create the reference, and as soon as its bytes are in the cache it announces their SHA-256 in a
:class:`SpaceStart`, so that the other files of the space encode against that copy while the
reference is still uploading, and store their deltas once the reference that won is known.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from .._core.metadata import reference_metadata, timestamp
from .._core.spaces import name_of
from .._engine.codec import EncodeResult, unlink_quietly
from .._exceptions import ConflictError, DeltaGliderError, IntegrityError
from .._localfs import FileChangedError
from .._storage.port import ObjectHead
from .context import Stage, iter_file, reference_sha

log = logging.getLogger("deltaglider_async")


class SpaceStart:
    """What the first upload of a delta space tells the other uploads of that space."""

    def __init__(self) -> None:
        #: SHA-256 of the reference the leader is creating, once its bytes are in the cache
        self.candidate: str | None = None
        #: SHA-256 of the space's reference in S3 once known (None: unknown or failed)
        self.winner: str | None = None
        self.ready = anyio.Event()  # candidate offered, or settled
        self.settled = anyio.Event()

    def offer(self, sha256: str) -> None:
        self.candidate = sha256
        self.ready.set()

    def settle(self, winner: str | None) -> None:
        if not self.settled.is_set():
            self.winner = winner
            self.settled.set()
        self.ready.set()


class Election(Stage):
    """Creates references and runs the early encodes of a space's followers."""

    async def create(
        self,
        bucket: str,
        ref_key: str,
        key: str,
        path: Path,
        announce: SpaceStart | None,
        *,
        attributes: Mapping[str, Any] | None = None,
    ) -> tuple[ObjectHead, bool]:
        """Create the space's reference from ``path`` (stored with ``attributes``: the SSE the
        put that creates it asked for); exactly one concurrent writer wins."""
        digest = await self._codec.hash_file(
            path, self._transfer.part_size_for(path.stat().st_size)
        )
        sha256 = digest.sha256
        # The local file goes into the cache first (checked against ``sha256`` as it is
        # stored): no GET of what we send, and a bulk upload's other files can encode against
        # this copy while the reference uploads.
        try:
            await self._cache.warm(sha256, lambda: iter_file(path))
        except IntegrityError as exc:  # the second read of the file found other bytes
            raise FileChangedError(path) from exc
        if announce is not None:
            announce.offer(sha256)
        meta = reference_metadata(
            tool=self._ctx.tool,
            source_name=name_of(key),
            sha256=sha256,
            created_at=timestamp(datetime.now(UTC)),
        )
        body = self._temp_path(".ref")
        try:
            form = await self._ctx.delta_format.reference_body(self._codec, path, sha256, body)
            with contextlib.suppress(ConflictError):  # another writer won: use its reference
                if form is None:
                    await self._storage.put_file(
                        bucket,
                        ref_key,
                        path,
                        metadata=meta,
                        attributes=attributes,
                        if_none_match=True,
                        verify=digest,
                    )
                else:  # our own scratch file, proven to rebuild to ``sha256``
                    await self._storage.put_file(
                        bucket,
                        ref_key,
                        body,
                        metadata={**meta, **form},
                        attributes=attributes,
                        if_none_match=True,
                    )
        finally:
            unlink_quietly(body)
        head = await self._storage.head(bucket, ref_key)
        if head is None:
            raise ConflictError(f"s3://{bucket}/{ref_key}: reference vanished while creating it")
        winner = reference_sha(head, ref_key)
        if announce is not None:
            announce.settle(winner)
        if winner != sha256:
            log.info("s3://%s/%s: another writer created the reference first", bucket, ref_key)
            return head, False
        # Ours, a twin with the same bytes, or the lost response of our own create-only PUT
        # (412 on its retry).
        log.info("s3://%s/%s: reference created from %s", bucket, ref_key, name_of(key))
        return head, True

    async def encode_early(
        self,
        bucket: str,
        ref_key: str,
        start: SpaceStart,
        path: Path,
        delta_path: Path,
        budget: int | None,
    ) -> tuple[str, EncodeResult] | None:
        """Encode against the reference the space's leader is still uploading.

        The result counts only if the reference that ends up in S3 has the same SHA-256;
        otherwise (another writer won, the leader failed, the cached copy was gone) the caller
        takes the ordinary path and encodes again.
        """
        await start.ready.wait()
        candidate = start.candidate
        if candidate is None:
            return None
        try:
            result: EncodeResult | None = await self._encode_against(
                bucket, ref_key, None, candidate, path, delta_path, budget
            )
        except DeltaGliderError as exc:
            log.info("s3://%s/%s: early encode failed (%s); encoding again", bucket, ref_key, exc)
            result = None
        await start.settled.wait()
        if result is None or start.winner != candidate:
            return None
        return candidate, result
