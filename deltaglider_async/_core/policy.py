"""Ratio policy: is a delta worth storing, and is it worth compressing?  No I/O."""

from __future__ import annotations

from collections.abc import Mapping

from .._exceptions import InvalidArgumentError

DEFAULT_MAX_RATIO = 0.5


def parse_max_ratio(value: float | str | None, env: Mapping[str, str] | None = None) -> float:
    """The effective max ratio: explicit value, else ``DG_MAX_RATIO`` in ``env``, else 0.5."""
    raw: float | str | None = value if value is not None else (env or {}).get("DG_MAX_RATIO")
    if raw is None or raw == "":
        return DEFAULT_MAX_RATIO
    try:
        ratio = float(raw)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"max ratio must be a number in [0, 1], got {raw!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise InvalidArgumentError(f"max ratio must be in [0, 1], got {ratio}")
    return ratio


def delta_ratio(delta_size: int, original_size: int) -> float:
    """``delta_size / original_size`` (an empty original counts as ratio 0 when its delta is)."""
    if original_size <= 0:
        return 0.0 if delta_size == 0 else float("inf")
    return delta_size / original_size


def delta_budget(original_size: int, max_ratio: float) -> int:
    """Largest delta (bytes) still worth storing; an encoder may stop once it is exceeded."""
    return int(original_size * max_ratio)


def keep_delta(delta_size: int, original_size: int, max_ratio: float) -> bool:
    return delta_ratio(delta_size, original_size) <= max_ratio


#: Leading bytes of formats whose content is already compressed: zip (jar, war, wheel, apk,
#: nupkg...), gzip (tar.gz), xz, bzip2, zstd, 7z.
COMPRESSED_MAGIC = (
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x1f\x8b",
    b"\xfd7zXZ\x00",
    b"BZh",
    b"\x28\xb5\x2f\xfd",
    b"7z\xbc\xaf\x27\x1c",
)
#: How many leading bytes ``compress_added_bytes`` needs.
MAGIC_BYTES = 6


def compress_added_bytes(head: bytes) -> bool:
    """Whether the bytes a delta adds are worth secondary compression, judged by the format.

    The added bytes of an already compressed artifact are compressed data too: on zips and
    wheels LZMA spent 18-63 % of the encode on them for 0-0.4 % of the delta, while on an
    uncompressed tar it saves 6-11 % (docs/codec.md).  ``head``: the target's first bytes.
    """
    return not head.startswith(COMPRESSED_MAGIC)
