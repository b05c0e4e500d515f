"""deltaglider-async: store versioned build artifacts in S3 as xdelta3 deltas, asynchronously.

>>> import deltaglider_async as dg
>>> async def main() -> None:
...     async with dg.create_client("http://127.0.0.1:8333") as client:
...         await client.upload("app-1.2.zip", "s3://releases/app/")
"""

from .__about__ import __version__
from ._body import StreamingBody
from ._boto import ListObjectsPaginator
from ._client import AsyncDeltaGliderClient, create_client
from ._core.spaces import DEFAULT_DELTA_EXTENSIONS
from ._core.stats import BucketStats, FormatEstimate, OrphanedReference, SpaceEstimate
from ._engine.cache import ReferenceCache
from ._exceptions import (
    BucketNotFoundError,
    CacheError,
    ConflictError,
    CredentialsError,
    DeltaGliderError,
    EndpointError,
    IntegrityError,
    InvalidArgumentError,
    MemoryLimitError,
    NotFoundError,
    ReferenceInUseError,
    ReservedNameError,
    StorageError,
)
from ._formats import FORMATS as _FORMATS
from ._migration import MigrationStep
from ._models import (
    CompressionEstimate,
    DeltaGliderInfo,
    DownloadSummary,
    UploadSummary,
    VerifyResult,
)
from ._pipeline.bulk import ProgressEvent, TransferResult
from ._transfer import TransferConfig

#: the delta formats this version writes and reads (``create_client(delta_format=...)``)
DELTA_FORMATS: tuple[str, ...] = tuple(sorted(_FORMATS))

__all__ = [
    "DEFAULT_DELTA_EXTENSIONS",
    "DELTA_FORMATS",
    "AsyncDeltaGliderClient",
    "BucketNotFoundError",
    "BucketStats",
    "CacheError",
    "CompressionEstimate",
    "ConflictError",
    "CredentialsError",
    "DeltaGliderError",
    "DeltaGliderInfo",
    "DownloadSummary",
    "EndpointError",
    "FormatEstimate",
    "IntegrityError",
    "InvalidArgumentError",
    "ListObjectsPaginator",
    "MemoryLimitError",
    "MigrationStep",
    "NotFoundError",
    "OrphanedReference",
    "ProgressEvent",
    "ReferenceCache",
    "ReferenceInUseError",
    "ReservedNameError",
    "SpaceEstimate",
    "StorageError",
    "StreamingBody",
    "TransferConfig",
    "TransferResult",
    "UploadSummary",
    "VerifyResult",
    "__version__",
    "create_client",
]
