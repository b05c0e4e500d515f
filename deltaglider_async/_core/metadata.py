"""The ``dg-*`` metadata codec: what we write, and every dialect we read (wire-format.md).

Writing uses the ``dg-`` spelling only.  Reading looks each field up as ``dg-<f>``, ``dg_<f>``,
the bare 5.x key (``file_sha256``) and its dashed form (``file-sha256``); the Rust proxy's
``dg-ref-path`` (relative to the delta space) stands in for ``dg-ref-key``.  Values are ASCII:
non-ASCII names are percent-encoded UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from urllib.parse import quote, unquote

from .spaces import is_reference_name, space_of

ZERO_DIFF_NOTE = "zero-diff (reference identical)"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class MetaKind(Enum):
    REFERENCE = "reference"
    DELTA = "delta"
    DIRECT = "direct"
    PLAIN = "plain"  # no deltaglider metadata at all: served as is, unverified


@dataclass(frozen=True)
class ObjectMeta:
    kind: MetaKind
    file_sha256: str | None = None
    file_size: int | None = None
    original_name: str | None = None
    ref_key: str | None = None
    ref_sha256: str | None = None
    delta_size: int | None = None
    created_at: str | None = None
    tool: str | None = None
    note: str | None = None
    source_name: str | None = None
    #: ``dg-delta-format``; None for the default format (``vcdiff``)
    delta_format: str | None = None
    #: ``dg-format-note``: why a put asked for another format stored it this way
    format_note: str | None = None


def timestamp(moment: datetime) -> str:
    """``2026-11-22T04:16:52.184839Z``: UTC, microseconds, trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_name(name: str) -> str:
    """ASCII-safe metadata value for a file name (percent-encoded UTF-8 where needed).

    A name containing ``%`` is encoded too, so that decoding can never alter a plain name.
    """
    if name.isascii() and name.isprintable() and "%" not in name:
        return name
    return quote(name, safe="/ ")


def decode_name(value: str) -> str:
    return unquote(value) if "%" in value else value


def reference_metadata(
    *, tool: str, source_name: str, sha256: str, created_at: str
) -> dict[str, str]:
    return {
        "dg-tool": tool,
        "dg-source-name": encode_name(source_name),
        "dg-file-sha256": sha256,
        "dg-created-at": created_at,
        "dg-note": "reference",
    }


def delta_metadata(
    *,
    tool: str,
    original_name: str,
    sha256: str,
    size: int,
    created_at: str,
    ref_key: str,
    ref_sha256: str,
    delta_size: int,
    zero_diff: bool,
    format_fields: Mapping[str, str],
) -> dict[str, str]:
    """A delta's metadata; ``format_fields`` are its delta format's own (``_formats/``)."""
    meta = {
        "dg-tool": tool,
        "dg-original-name": encode_name(original_name),
        "dg-file-sha256": sha256,
        "dg-file-size": str(size),
        "dg-created-at": created_at,
        "dg-ref-key": encode_name(ref_key),
        "dg-ref-sha256": ref_sha256,
        "dg-delta-size": str(delta_size),
    }
    meta.update(format_fields)
    if zero_diff:
        meta["dg-note"] = ZERO_DIFF_NOTE
    return meta


def format_note_metadata(note: str) -> dict[str, str]:
    """Why a put that asked for a delta format stored the object another way (lets a resumed
    ``migrate --delta-format`` tell "tried" from "not yet converted")."""
    return {"dg-format-note": encode_name(note)} if note else {}


def direct_metadata(
    *, tool: str, original_name: str, sha256: str, size: int, created_at: str
) -> dict[str, str]:
    return {
        "dg-tool": tool,
        "dg-original-name": encode_name(original_name),
        "dg-file-sha256": sha256,
        "dg-file-size": str(size),
        "dg-created-at": created_at,
        "dg-compression": "none",
    }


def _lookup(meta: Mapping[str, str], field: str) -> str | None:
    bare = field.replace("-", "_")
    for spelling in (f"dg-{field}", f"dg_{bare}", f"dg-{bare}", bare, field):
        value = meta.get(spelling)
        if value:
            return value
    return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def _sha(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value if _SHA256.match(value) else None


def parse_metadata(raw: Mapping[str, str], stored_key: str) -> ObjectMeta:
    """Interpret user metadata (any dialect, any key case) of the object at ``stored_key``."""
    meta = {k.lower(): v for k, v in raw.items()}
    note = _lookup(meta, "note")
    ref_key = _lookup(meta, "ref-key")
    if ref_key is None and (ref_path := meta.get("dg-ref-path")):
        ref_key = space_of(stored_key) + decode_name(ref_path)
    sha = _sha(_lookup(meta, "file-sha256"))
    fields = {
        "file_sha256": sha,
        "file_size": _int(_lookup(meta, "file-size")),
        "original_name": decode_name(v) if (v := _lookup(meta, "original-name")) else None,
        "ref_key": decode_name(ref_key) if ref_key else None,
        "ref_sha256": _sha(_lookup(meta, "ref-sha256")),
        "delta_size": _int(_lookup(meta, "delta-size")),
        "created_at": _lookup(meta, "created-at"),
        "tool": _lookup(meta, "tool"),
        "note": note,
        "source_name": decode_name(v) if (v := _lookup(meta, "source-name")) else None,
        "delta_format": meta.get("dg-delta-format") or None,
        "format_note": decode_name(v) if (v := meta.get("dg-format-note")) else None,
    }
    name = stored_key.rsplit("/", 1)[-1]
    if is_reference_name(name) and (sha or note == "reference"):
        kind = MetaKind.REFERENCE
    elif ref_key is not None or note == "delta":
        kind = MetaKind.DELTA
    elif sha is not None or note == "passthrough" or _lookup(meta, "compression") == "none":
        kind = MetaKind.DIRECT
    else:
        kind = MetaKind.PLAIN
    return ObjectMeta(kind=kind, **fields)  # type: ignore[arg-type]


def logical_etag(sha256: str) -> str:
    """The ETag a delta is listed, headed and served with: its content's SHA-256 cut to an
    MD5's length, marked (``-dg``) so that tools comparing ETags with MD5s see it is not one."""
    return f'"{sha256[:32]}-dg"'


#: fields the metadata dialects may spell without a prefix (``_lookup`` reads them)
_BARE_FIELDS = frozenset(
    spelling
    for field in (
        "file_sha256",
        "ref_key",
        "original_name",
        "file_size",
        "ref_sha256",
        "delta_size",
        "delta_cmd",
        "created_at",
        "source_name",
        "compression",
        "note",
        "tool",
    )
    for spelling in (field, field.replace("_", "-"))
)
_USER_PREFIX = "dg-user-"


def _ours(key: str) -> bool:
    return key.startswith(("dg-", "dg_")) or key in _BARE_FIELDS


def escape_user_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """A caller's metadata as stored: keys lowercased (S3 does it), and keys our reader would
    take for its own fields (``note``, ``dg-…``) kept under ``dg-user-`` so they round-trip."""
    stored: dict[str, str] = {}
    for key, value in metadata.items():
        name = key.lower()
        stored[_USER_PREFIX + name if _ours(name) else name] = value
    return stored


def user_metadata(meta: Mapping[str, str]) -> dict[str, str]:
    """The caller's own metadata back from a stored object: ours (``dg-*`` and the older
    dialects' fields) left out, escaped keys restored.  An object no dialect wrote (no
    ``dg-`` key, no ``file_sha256``) keeps all of its metadata."""
    if not any(k.startswith(("dg-", "dg_")) or k in ("file_sha256", "file-sha256") for k in meta):
        return dict(meta)
    return {
        k.removeprefix(_USER_PREFIX): v
        for k, v in meta.items()
        if k.startswith(_USER_PREFIX) or not _ours(k)
    }
