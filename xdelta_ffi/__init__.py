"""In-process streaming xdelta3 (VCDIFF) codec built with cffi.

>>> from xdelta_ffi import encode, decode
>>> delta = encode(b"hello world" * 100, b"hello there" * 100)
>>> decode(b"hello world" * 100, delta) == b"hello there" * 100
True
"""

from ._errors import (
    CodecStateError,
    CorruptDeltaError,
    SourceMismatchError,
    SourceReadError,
    TruncatedDeltaError,
    XDeltaError,
)
from ._stream import (
    DEFAULT_LEVEL,
    Decoder,
    Encoder,
    adler32,
    decode,
    encode,
    encoder_memory_estimate,
    pooled_memory,
    release_memory,
    set_pool_limit,
)
from ._zlib import (
    GNU_GZIP,
    MINIZ,
    MINIZ_VERSION,
    ZLIB_VERSION,
    Deflater,
    ZlibError,
    block_sums,
    byte_difference,
    byte_sum,
    deflate_block_ends,
    deflate_matches,
    deflate_raw,
    deflate_resume,
    inflate_raw,
    resume_start,
)

#: Version of the bundled xdelta3 library.
XDELTA3_VERSION = "3.1.1"

__all__ = [
    "DEFAULT_LEVEL",
    "GNU_GZIP",
    "MINIZ",
    "MINIZ_VERSION",
    "XDELTA3_VERSION",
    "ZLIB_VERSION",
    "CodecStateError",
    "CorruptDeltaError",
    "Decoder",
    "Deflater",
    "Encoder",
    "SourceMismatchError",
    "SourceReadError",
    "TruncatedDeltaError",
    "XDeltaError",
    "ZlibError",
    "adler32",
    "block_sums",
    "byte_difference",
    "byte_sum",
    "decode",
    "deflate_block_ends",
    "deflate_matches",
    "deflate_raw",
    "deflate_resume",
    "encode",
    "encoder_memory_estimate",
    "inflate_raw",
    "pooled_memory",
    "release_memory",
    "resume_start",
    "set_pool_limit",
]
