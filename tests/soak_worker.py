"""One process of the concurrent-writers soak: random put / put-direct / delete on a few keys.

``python -m tests.soak_worker ENDPOINT ACCESS SECRET BUCKET SEED OPS CACHE OUT`` writes one JSON
line per operation to OUT: what it did, to which key, which body, and whether it succeeded.
Bodies are ``release_zip(n)``, so the checker can tell which write a stored object came from.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import anyio

from deltaglider_async import DeltaGliderError, ReferenceCache, create_client

from .artifacts import release_zip

KEYS = ("soak/a.zip", "soak/b.zip", "soak/c.zip")


async def main(argv: list[str]) -> None:
    endpoint, access, secret, bucket, seed, ops, cache, out = argv
    rng = random.Random(int(seed))
    async with create_client(
        endpoint,
        region_name="us-east-1",
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        cache=ReferenceCache(directory=Path(cache)),
        env={},
    ) as dg:
        with Path(out).open("w") as log:  # noqa: ASYNC230 (one small line per operation)
            for step in range(int(ops)):
                key = rng.choice(KEYS)
                op = rng.choice(("put", "put", "direct", "delete"))
                body_id = int(seed) * 1000 + step
                started = time.time()
                try:
                    if op == "delete":
                        await dg.delete_object(Bucket=bucket, Key=key)
                    else:
                        await dg.put_object(
                            Bucket=bucket,
                            Key=key,
                            Body=release_zip(body_id % 50 + 1, seed=body_id),
                            NoDelta=op == "direct",
                        )
                    ok, error = True, ""
                except DeltaGliderError as exc:
                    ok, error = False, f"{type(exc).__name__}: {exc}"
                record = {
                    "op": op,
                    "key": key,
                    "body": body_id,
                    "ok": ok,
                    "error": error,
                    "start": started,
                    "end": time.time(),
                }
                log.write(json.dumps(record) + "\n")
        # A last write of a key nobody else touches: its success must be readable afterwards.
        final = f"soak/final-{seed}.zip"
        await dg.put_object(Bucket=bucket, Key=final, Body=release_zip(1, seed=int(seed)))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
