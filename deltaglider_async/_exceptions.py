"""Every error the SDK raises derives from :class:`DeltaGliderError`, which *is* a
``botocore.exceptions.ClientError``: code written for boto3 (``except ClientError``,
``e.response["Error"]["Code"]``, ``client.exceptions.NoSuchKey``) works unchanged.

    DeltaGliderError (ClientError)      code, message, status, operation_name, response
    ├── InvalidArgumentError            bad URL, bucket or key, Body of the wrong type, bad option
    │   └── ReservedNameError           a logical key named reference.bin or *.delta
    ├── NotFoundError                   a missing object ("404" from head_object)
    │   ├── NoSuchKey                   client.exceptions.NoSuchKey
    │   ├── NoSuchUpload                client.exceptions.NoSuchUpload
    │   └── BucketNotFoundError         a missing bucket ("404" from head_object)
    │       └── NoSuchBucket            client.exceptions.NoSuchBucket
    ├── IntegrityError                  a SHA-256 (or delta checksum) did not match: data refused
    ├── ReferenceInUseError             deleting a reference.bin that deltas still use
    ├── CacheError                      the local reference cache is unusable
    ├── MemoryLimitError                one operation needs more than the whole memory budget
    └── StorageError                    S3 failed (carries the S3 error code and HTTP status)
        ├── EndpointError               the endpoint cannot be reached
        ├── CredentialsError            missing or rejected credentials, access denied
        ├── ConflictError               a conditional write lost (412) and could not be resolved
        └── the other errors botocore models for S3 (BucketAlreadyExists, InvalidObjectState, …)

``code`` is the S3 error code boto3 would report for the same call (``NoSuchKey``,
``NoSuchBucket``, ``"404"`` for a HEAD, ``AccessDenied``, ``InvalidRange``); errors S3 has no
code for use the SDK's own (``IntegrityError``, ``ReservedName``, ``MemoryLimit``).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


class DeltaGliderError(ClientError):
    """Root of the SDK's exceptions; a ``ClientError`` with boto3's ``response`` shape."""

    code: str = "DeltaGliderError"
    #: the HTTP status S3 answers this error with (0: raised before or without any request)
    http_status: int = 0

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        operation_name: str = "",
    ) -> None:
        # ClientError.__init__ would replace the message by its "An error occurred" template.
        Exception.__init__(self, message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status if status is not None else self.http_status
        self.operation_name = operation_name

    @property  # type: ignore[override]  # ClientError stores it; ours follows code and status
    def response(self) -> dict[str, Any]:
        """What ``ClientError.response`` holds for the same failure."""
        return {
            "Error": {"Code": self.code, "Message": self.message},
            "ResponseMetadata": {
                "HTTPStatusCode": self.status,
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            },
        }

    @response.setter
    def response(self, value: dict[str, Any]) -> None:
        error = value.get("Error", {})
        self.code = str(error.get("Code", self.code))
        self.message = str(error.get("Message", self.message))
        self.status = int(value.get("ResponseMetadata", {}).get("HTTPStatusCode", self.status))

    def __reduce__(self) -> tuple[Any, ...]:
        # ClientError's own reduce would rebuild a plain ClientError (Dask ships errors pickled).
        return (_rebuild, (type(self), self.message, self.code, self.status, self.operation_name))


def _rebuild(
    cls: type[DeltaGliderError], message: str, code: str, status: int, operation_name: str
) -> DeltaGliderError:
    return cls(message, code=code, status=status, operation_name=operation_name)


class InvalidArgumentError(DeltaGliderError, ValueError):
    code = "InvalidArgument"
    http_status = 400


class ReservedNameError(InvalidArgumentError):
    code = "ReservedName"


class NotFoundError(DeltaGliderError):
    code = "404"
    http_status = 404


class NoSuchKey(NotFoundError):
    code = "NoSuchKey"


class NoSuchUpload(NotFoundError):
    code = "NoSuchUpload"


class BucketNotFoundError(NotFoundError):
    code = "404"


class NoSuchBucket(BucketNotFoundError):
    code = "NoSuchBucket"


class IntegrityError(DeltaGliderError):
    code = "IntegrityError"


class ReferenceInUseError(DeltaGliderError):
    code = "ReferenceInUse"
    http_status = 409


class CacheError(DeltaGliderError):
    code = "CacheError"


class MemoryLimitError(DeltaGliderError):
    """One operation needs more memory than the whole budget (``memory_limit``) allows."""

    code = "MemoryLimit"


class StorageError(DeltaGliderError):
    code = "StorageError"


class EndpointError(StorageError):
    code = "EndpointUnreachable"


class CredentialsError(StorageError):
    code = "AccessDenied"
    http_status = 403


class ConflictError(StorageError):
    code = "PreconditionFailed"
    http_status = 412


class BucketAlreadyExists(StorageError):
    code = "BucketAlreadyExists"
    http_status = 409


class BucketAlreadyOwnedByYou(StorageError):
    code = "BucketAlreadyOwnedByYou"
    http_status = 409


class InvalidObjectState(StorageError):
    code = "InvalidObjectState"
    http_status = 403


class InvalidRequest(StorageError):
    code = "InvalidRequest"
    http_status = 400


class InvalidWriteOffset(StorageError):
    code = "InvalidWriteOffset"
    http_status = 400


class TooManyParts(StorageError):
    code = "TooManyParts"
    http_status = 400


class EncryptionTypeMismatch(StorageError):
    code = "EncryptionTypeMismatch"
    http_status = 400


class IdempotencyParameterMismatch(StorageError):
    code = "IdempotencyParameterMismatch"
    http_status = 400


class ObjectAlreadyInActiveTierError(StorageError):
    code = "ObjectAlreadyInActiveTierError"
    http_status = 403


class ObjectNotInActiveTierError(StorageError):
    code = "ObjectNotInActiveTierError"
    http_status = 403


#: the error classes botocore generates for S3 (``client.exceptions.<Code>``), by code
MODELED: dict[str, type[DeltaGliderError]] = {
    cls.code: cls
    for cls in (
        NoSuchKey,
        NoSuchUpload,
        NoSuchBucket,
        BucketAlreadyExists,
        BucketAlreadyOwnedByYou,
        InvalidObjectState,
        InvalidRequest,
        InvalidWriteOffset,
        TooManyParts,
        EncryptionTypeMismatch,
        IdempotencyParameterMismatch,
        ObjectAlreadyInActiveTierError,
        ObjectNotInActiveTierError,
    )
}


class ClientExceptions:
    """``client.exceptions``: the modeled error classes by name, as on a boto3 client."""

    ClientError = ClientError
    NoSuchKey = NoSuchKey
    NoSuchUpload = NoSuchUpload
    NoSuchBucket = NoSuchBucket
    BucketAlreadyExists = BucketAlreadyExists
    BucketAlreadyOwnedByYou = BucketAlreadyOwnedByYou
    InvalidObjectState = InvalidObjectState
    InvalidRequest = InvalidRequest
    InvalidWriteOffset = InvalidWriteOffset
    TooManyParts = TooManyParts
    EncryptionTypeMismatch = EncryptionTypeMismatch
    IdempotencyParameterMismatch = IdempotencyParameterMismatch
    ObjectAlreadyInActiveTierError = ObjectAlreadyInActiveTierError
    ObjectNotInActiveTierError = ObjectNotInActiveTierError

    def from_code(self, code: str) -> type[Exception]:
        """The class raised for ``code`` (``ClientError`` for codes botocore does not model)."""
        return MODELED.get(code, ClientError)
