"""``ls``: buckets, or the logical objects under a prefix (logical sizes)."""

from __future__ import annotations

from typing import Annotated

import typer

from deltaglider_async.aws import (
    parse_s3_url,
)

from .._app import app
from .._common import (
    EXIT_FAILED,
    EXIT_OK,
    Json,
    Recursive,
    Settings,
    _output,
    command,
)
from .._render import human


@command(app)
def ls(
    url: Annotated[
        str | None, typer.Argument(help="s3://bucket[/prefix]; none lists buckets")
    ] = None,
    recursive: Recursive = False,
    human_readable: Annotated[bool, typer.Option("--human-readable", help="KiB, MiB…")] = False,
    summarize: Annotated[bool, typer.Option("--summarize", help="totals at the end")] = False,
    stored_size: Annotated[
        bool, typer.Option("--stored-size", help="also the stored size")
    ] = False,
    json_output: Json = False,
    *,
    settings: Settings,
) -> None:
    """List buckets, or the logical objects under a prefix (logical sizes)."""
    out = _output(json_output, False, False, True)

    def size_text(n: int) -> str:
        return human(n) if human_readable else str(n)

    async def work() -> int:
        async with settings.client() as dg:
            if url is None:
                for bucket in (await dg.list_buckets())["Buckets"]:
                    created = bucket.get("CreationDate")
                    when = created.astimezone().strftime("%Y-%m-%d %H:%M:%S") if created else ""
                    if out.json_mode:
                        out.data({"bucket": bucket["Name"], "created": when})
                    else:
                        out.line(f"{when} {bucket['Name']}")
                return EXIT_OK
            target = parse_s3_url(url)
            prefix = target.key
            count = total = shown = 0
            token: str | None = None
            while True:
                page = await dg.list_objects_v2(
                    Bucket=target.bucket,
                    Prefix=prefix,
                    Delimiter=None if recursive else "/",
                    ContinuationToken=token,
                    MaxKeys=settings.page_size or 1000,
                    FetchMetadata=True,
                )
                for common in page.get("CommonPrefixes", []):
                    shown += 1
                    name = common["Prefix"][len(_dir_of(prefix)) :]
                    if out.json_mode:
                        out.data({"prefix": common["Prefix"]})
                    else:
                        out.line(f"{'PRE':>30} {name}")
                for entry in page.get("Contents", []):
                    shown += 1
                    count += 1
                    total += entry["Size"]
                    info = entry["DeltaGliderInfo"]
                    if out.json_mode:
                        out.data(
                            {
                                "key": entry["Key"],
                                "size": entry["Size"],
                                "stored_size": info["StoredSize"],
                                "stored_as": info["StoredAs"],
                                "last_modified": entry["LastModified"],
                            }
                        )
                        continue
                    # local time, as aws-cli prints it
                    when = entry["LastModified"].astimezone().strftime("%Y-%m-%d %H:%M:%S")
                    name = entry["Key"] if recursive else entry["Key"][len(_dir_of(prefix)) :]
                    extra = f" {size_text(info['StoredSize']):>12}" if stored_size else ""
                    out.line(f"{when} {size_text(entry['Size']):>10}{extra} {name}")
                token = page.get("NextContinuationToken")
                if not page["IsTruncated"] or not token:
                    break
            if summarize and not out.json_mode:
                out.line(f"\nTotal Objects: {count}\n   Total Size: {size_text(total)}")
            return EXIT_OK if shown else EXIT_FAILED  # aws-cli: nothing listed exits 1

    settings.execute(work, out)


def _dir_of(prefix: str) -> str:
    return prefix[: prefix.rfind("/") + 1]
