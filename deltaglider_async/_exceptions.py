"""Every error the SDK raises derives from :class:`DeltaGliderError`.

    DeltaGliderError                    code (boto3-style), message
    ├── InvalidArgumentError            bad URL, bucket or key, Body of the wrong type, bad option
    │   └── ReservedNameError           a logical key named reference.bin or *.delta
    ├── NotFoundError                   NoSuchKey / 404
    │   └── BucketNotFoundError         NoSuchBucket
    ├── IntegrityError                  a SHA-256 (or delta checksum) did not match: data refused
    ├── ReferenceInUseError             deleting a reference.bin that deltas still use
    ├── CacheError                      the local reference cache is unusable
    └── StorageError                    S3 failed (carries the S3 error code and HTTP status)
        ├── EndpointError               the endpoint cannot be reached
        ├── CredentialsError            missing or rejected credentials, access denied
        └── ConflictError               a conditional write lost (412) and could not be resolved

``code`` mirrors the S3 error code where boto3 users expect one (``NoSuchKey``, ``NoSuchBucket``,
``AccessDenied``), so ``except DeltaGliderError as e: e.code == "NoSuchKey"`` works like
``ClientError.response["Error"]["Code"]``.
"""

from __future__ import annotations


class DeltaGliderError(Exception):
    """Root of the SDK's exceptions."""

    code: str = "DeltaGliderError"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def response(self) -> dict[str, dict[str, str]]:
        """The shape of ``botocore.exceptions.ClientError.response`` for code written for boto3."""
        return {"Error": {"Code": self.code, "Message": self.message}}


class InvalidArgumentError(DeltaGliderError, ValueError):
    code = "InvalidArgument"


class ReservedNameError(InvalidArgumentError):
    code = "ReservedName"


class NotFoundError(DeltaGliderError):
    code = "NoSuchKey"


class BucketNotFoundError(NotFoundError):
    code = "NoSuchBucket"


class IntegrityError(DeltaGliderError):
    code = "IntegrityError"


class ReferenceInUseError(DeltaGliderError):
    code = "ReferenceInUse"


class CacheError(DeltaGliderError):
    code = "CacheError"


class MemoryLimitError(DeltaGliderError):
    """One operation needs more memory than the whole budget (``memory_limit``) allows."""

    code = "MemoryLimit"


class StorageError(DeltaGliderError):
    code = "StorageError"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


class EndpointError(StorageError):
    code = "EndpointUnreachable"


class CredentialsError(StorageError):
    code = "AccessDenied"


class ConflictError(StorageError):
    code = "PreconditionFailed"
