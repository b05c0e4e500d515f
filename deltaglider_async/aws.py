"""The aws-cli semantics the ``deltaglider-async`` CLI is built on, public for scripts that work the
same way: S3 URLs (a trailing ``/`` names a prefix), ``--exclude``/``--include`` filters (the last
matching one decides), local paths for keys, and ``sync``'s plan of what to copy and delete.

>>> from deltaglider_async.aws import PathFilter, is_included, parse_s3_url
>>> parse_s3_url("s3://releases/app/").is_prefix
True
>>> is_included("app/v1.zip", [PathFilter("exclude", "*"), PathFilter("include", "*.zip")])
True
"""

from __future__ import annotations

from ._core.filters import PathFilter, is_included
from ._core.spaces import S3Url, is_s3_url, parse_s3_url, safe_local_relpath, upload_key
from ._core.sync import SyncEntry, SyncPlan, plan_sync

__all__ = [
    "PathFilter",
    "S3Url",
    "SyncEntry",
    "SyncPlan",
    "is_included",
    "is_s3_url",
    "parse_s3_url",
    "plan_sync",
    "safe_local_relpath",
    "upload_key",
]
