"""Result types returned by the SDK's extension methods."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

StoredAs = Literal["delta", "direct"]


@dataclass(frozen=True)
class DeltaGliderInfo:
    """How a logical object is stored; attached to responses as ``DeltaGliderInfo``."""

    stored_as: StoredAs | Literal["plain"]
    stored_key: str
    stored_size: int
    original_size: int | None
    #: stored / original (None when the original size is unknown)
    ratio: float | None
    reference_key: str | None = None
    #: Why the object is direct although eligible, or "" (e.g. "ratio 0.73 > 0.50").
    reason: str = ""
    sha256: str | None = None
    #: This put created its delta space's reference (and so saved nothing itself).
    reference_created: bool = False
    #: a delta's format (``vcdiff``, ``archive``); None for other objects
    delta_format: str | None = None
    #: why a put that asked for another delta format stored it this way
    format_note: str | None = None
    #: what the reference this put created takes in the bucket (in ``stored_size`` too)
    reference_size: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "DeltaFormat": self.delta_format,
            "FormatNote": self.format_note,
            "ReferenceCreated": self.reference_created,
            "ReferenceSize": self.reference_size,
            "StoredAs": self.stored_as,
            "StoredKey": self.stored_key,
            "StoredSize": self.stored_size,
            "OriginalSize": self.original_size,
            "Ratio": self.ratio,
            "ReferenceKey": self.reference_key,
            "Reason": self.reason,
            "Sha256": self.sha256,
        }


@dataclass(frozen=True)
class UploadSummary:
    """One stored upload.  ``stored_size`` includes the reference when this upload created it."""

    bucket: str
    key: str
    original_size: int
    stored_size: int
    stored_as: StoredAs
    sha256: str
    reference_created: bool = False
    #: why it is stored direct, or not in the delta format asked for
    reason: str = ""
    #: the delta format of a delta (``vcdiff``, ``archive``); empty for direct objects
    delta_format: str = ""
    #: the ETag get/head/list report for the key (S3's own for a direct object)
    etag: str = ""
    #: the reference a delta is taken against (``reference.bin`` or a later snapshot)
    reference_key: str = ""
    #: bytes the reference this upload created takes in the bucket (in ``stored_size`` too;
    #: the archive format's compact form is smaller than the file)
    reference_size: int = 0

    @property
    def savings(self) -> float:
        """Fraction of the original size saved (0.0 for direct objects)."""
        if self.original_size == 0:
            return 0.0
        return max(0.0, 1.0 - self.stored_size / self.original_size)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "savings": self.savings, "url": self.url}


@dataclass(frozen=True)
class DownloadSummary:
    bucket: str
    key: str
    path: str
    size: int
    sha256: str | None
    stored_as: StoredAs | Literal["plain"]
    verified: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VerifyResult:
    bucket: str
    key: str
    valid: bool
    expected_sha256: str | None
    actual_sha256: str | None
    size: int
    stored_as: StoredAs | Literal["plain"]
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CompressionEstimate:
    """A real trial encode of a local file against a delta space's reference."""

    original_size: int
    estimated_size: int
    ratio: float
    would_store_as: StoredAs
    reference_key: str | None
    reason: str = ""
    #: the delta format the delta would be in (empty when it would not be a delta)
    delta_format: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
