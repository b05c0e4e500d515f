"""Delta spaces, stored-key layout and S3 URLs: pure functions, no I/O.

A delta space is the key prefix up to and including the last ``/`` (``""`` at the bucket root).
Each space stores ``reference.bin`` (the first eligible object, whole), ``<name>.delta`` for every
eligible logical object, and non-eligible objects directly under their logical key.  A space in
the archive format may also hold snapshots, ``reference-<n>.bin`` (n = 2, 3, ...): later
references that deltas name in their ``dg-ref-key`` when the first one no longer fits.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from .._exceptions import InvalidArgumentError, ReservedNameError

REFERENCE_NAME = "reference.bin"
SNAPSHOT_PREFIX = "reference-"
_SNAPSHOT_NAME = re.compile(r"reference-([1-9][0-9]{0,8})\.bin")
DELTA_SUFFIX = ".delta"
INTERNAL_PREFIX = ".deltaglider/"

#: Archives and images of builds (wire-format.md), plus the formats we add.
DEFAULT_DELTA_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".zip",
        ".jar",
        ".war",
        ".ear",
        ".tar",
        ".tgz",
        ".gz",
        ".bz2",
        ".xz",
        ".7z",
        ".rar",
        ".dmg",
        ".iso",
        ".pkg",
        ".deb",
        ".rpm",
        ".apk",
        ".xpi",
        ".tar.gz",
        ".tar.bz2",
        ".tar.xz",
        ".whl",
        ".egg",
        ".nupkg",
        ".aar",
        ".ipa",
        ".img",
        ".bak",
        ".dump",
        ".sql",
    }
)

MAX_KEY_BYTES = 1024


class StoredKind(Enum):
    REFERENCE = "reference"
    DELTA = "delta"
    DIRECT = "direct"
    INTERNAL = "internal"


def space_of(key: str) -> str:
    """``releases/app/`` for ``releases/app/app-1.2.zip``; ``""`` at the bucket root."""
    cut = key.rfind("/")
    return key[: cut + 1]


def name_of(key: str) -> str:
    return key[key.rfind("/") + 1 :]


def reference_key(space: str) -> str:
    return space + REFERENCE_NAME


def snapshot_key(space: str, number: int) -> str:
    """The key of a space's ``number``-th reference (``reference.bin`` is the first)."""
    return reference_key(space) if number <= 1 else f"{space}reference-{number}.bin"


def reference_number(key: str) -> int | None:
    """1 for ``reference.bin``, n for a snapshot ``reference-<n>.bin``, else None."""
    name = name_of(key)
    if name == REFERENCE_NAME:
        return 1
    match = _SNAPSHOT_NAME.fullmatch(name)
    return int(match.group(1)) if match and int(match.group(1)) >= 2 else None


def is_reference_name(name: str) -> bool:
    return reference_number(name) is not None


def delta_key(logical_key: str) -> str:
    return logical_key + DELTA_SUFFIX


def classify(stored_key: str) -> tuple[StoredKind, str]:
    """What a stored key is, and the logical key it presents (``""`` for internal objects)."""
    if stored_key.startswith(INTERNAL_PREFIX):
        return StoredKind.INTERNAL, ""
    if reference_number(stored_key) is not None:
        return StoredKind.REFERENCE, ""
    if stored_key.endswith(DELTA_SUFFIX) and len(name_of(stored_key)) > len(DELTA_SUFFIX):
        return StoredKind.DELTA, stored_key[: -len(DELTA_SUFFIX)]
    return StoredKind.DIRECT, stored_key


def is_eligible(key: str, extensions: Iterable[str] = DEFAULT_DELTA_EXTENSIONS) -> bool:
    """Case-insensitive suffix match of the object name against the delta-eligible set."""
    name = name_of(key).lower()
    return any(name.endswith(ext.lower()) and len(name) > len(ext) for ext in extensions)


def check_bucket(bucket: str) -> None:
    if not isinstance(bucket, str) or not 3 <= len(bucket) <= 63:
        raise InvalidArgumentError(f"invalid bucket name {bucket!r}: 3 to 63 characters")
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-_")
    if not set(bucket) <= allowed or not bucket[0].isalnum() or not bucket[-1].isalnum():
        raise InvalidArgumentError(
            f"invalid bucket name {bucket!r}: lower-case letters, digits, '.', '-' and '_'"
        )


def check_logical_key(key: str) -> None:
    """Reject keys S3 cannot store and names that would collide with the wire format."""
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError("the object key must be a non-empty string")
    if key.endswith("/"):
        raise InvalidArgumentError(f"key {key!r} names a directory, not an object")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidArgumentError(f"key is longer than {MAX_KEY_BYTES} bytes")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(f"key {key!r} is not valid UTF-8") from exc
    kind, _ = classify(key)
    if kind is StoredKind.REFERENCE:
        raise ReservedNameError(
            f"{key!r}: objects named {REFERENCE_NAME} or reference-<n>.bin are reserved for "
            "delta references"
        )
    if kind is StoredKind.DELTA:
        raise ReservedNameError(f"{key!r}: the {DELTA_SUFFIX} suffix is reserved for deltas")
    if kind is StoredKind.INTERNAL:
        raise ReservedNameError(f"{key!r}: the {INTERNAL_PREFIX} prefix is reserved")


def check_writable_key(key: str) -> None:
    """Keys we write or delete: also no spelling that a server may alias to another key.

    Some servers store ``a//b`` as ``a/b``, turn ``\\`` into ``/`` or resolve ``.``/``..``
    segments (SeaweedFS does the first two).  Two spellings of one key would be two delta spaces
    to us and one to the server, so a delete in one could collect the reference of the other.
    """
    check_logical_key(key)
    if "\\" in key:
        raise InvalidArgumentError(f"key {key!r} contains a backslash, which servers may alias")
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidArgumentError(
            f"key {key!r} has an empty, '.' or '..' path segment, which servers may alias"
        )


def fits_delta_layout(key: str) -> bool:
    """Whether ``key``'s ``.delta`` name and its space's ``reference.bin`` fit S3's key limit."""
    longest = max(delta_key(key), reference_key(space_of(key)), key=len)
    return len(longest.encode("utf-8")) <= MAX_KEY_BYTES


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        """True for ``s3://b``, ``s3://b/`` and ``s3://b/dir/``: a directory, not an object."""
        return self.key == "" or self.key.endswith("/")

    def join(self, relative: str) -> S3Url:
        return S3Url(self.bucket, self.key + relative)


def is_s3_url(text: str) -> bool:
    return text.startswith("s3://")


def parse_s3_url(text: str) -> S3Url:
    """``s3://bucket/key`` (also ``s3://bucket`` and ``s3://bucket/prefix/``)."""
    if not isinstance(text, str) or not text.startswith("s3://"):
        raise InvalidArgumentError(f"not an S3 URL: {text!r} (expected s3://bucket/key)")
    rest = text[5:]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise InvalidArgumentError(f"S3 URL without a bucket: {text!r}")
    check_bucket(bucket)
    return S3Url(bucket, key)


def upload_key(destination: S3Url, local_name: str) -> str:
    """Where ``cp local s3://...`` stores: a trailing ``/`` means a directory (as aws-cli)."""
    if destination.is_prefix:
        return destination.key + local_name
    return destination.key


def safe_local_relpath(relative_key: str) -> str:
    """A relative local path for a key below a prefix, refusing anything that escapes it.

    Keys may contain ``..``, absolute paths or empty segments; none of them may write outside
    the destination directory.
    """
    if not relative_key or relative_key.startswith("/") or "\\" in relative_key:
        raise InvalidArgumentError(f"refusing unsafe key for a local path: {relative_key!r}")
    parts = relative_key.split("/")
    if any(part in ("", ".", "..") for part in parts[:-1]) or parts[-1] in ("", ".", ".."):
        raise InvalidArgumentError(f"refusing unsafe key for a local path: {relative_key!r}")
    normalized = posixpath.normpath(relative_key)
    if normalized.startswith("..") or posixpath.isabs(normalized):
        raise InvalidArgumentError(f"refusing unsafe key for a local path: {relative_key!r}")
    return normalized


def under_prefix(key: str, prefix: str) -> bool:
    """Prefix match on whole path segments: ``rel/`` matches ``rel/a`` but not ``release/a``."""
    if not prefix:
        return True
    if prefix.endswith("/"):
        return key.startswith(prefix)
    return key == prefix or key.startswith(prefix + "/")
