"""The codec computes window checksums itself (a vector kernel where the CPU has one)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdelta_ffi import CorruptDeltaError, Decoder, SourceMismatchError, XDeltaError, encode
from xdelta_ffi._xdelta3_cffi import lib


@pytest.mark.parametrize("vector", [0, 1])
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000))
def test_adler32_kernels_agree_with_zlib(vector: int, data: bytes) -> None:
    assert lib.dg_adler32_kernel(data, len(data), vector) == zlib.adler32(data)


@pytest.mark.parametrize("vector", [0, 1])
@pytest.mark.parametrize("length", [31, 32, 33, 32 * 1024, 32 * 1024 + 1, 5 * 32 * 1024 + 17])
def test_adler32_kernels_near_overflow_bounds(vector: int, length: int) -> None:
    # 0xff everywhere maximises every partial sum: the worst case for lane overflow.
    for data in (b"\xff" * length, bytes(range(256)) * (length // 256) + b"\xfe" * (length % 256)):
        assert lib.dg_adler32_kernel(data, len(data), vector) == zlib.adler32(data)


def test_vector_kernel_is_used_where_the_cpu_has_avx2() -> None:
    with open("/proc/cpuinfo") as cpuinfo:
        has_avx2 = " avx2" in cpuinfo.read()
    assert bool(lib.dg_adler32_vectorized()) == has_avx2


def test_a_flipped_target_checksum_is_reported() -> None:
    source = bytes(range(256)) * 4096
    target = source[:500_000] + b"changed" + source[500_000:]
    delta = bytearray(encode(source, target, secondary=None))
    decoder = Decoder(source)
    # The window checksum sits right before the data section; flipping any bit of it must fail.
    a32 = zlib.adler32(target).to_bytes(4, "big")
    at = bytes(delta).find(a32)
    assert at > 0
    delta[at] ^= 0x01
    with pytest.raises((SourceMismatchError, CorruptDeltaError)) as excinfo:
        decoder.feed(bytes(delta))
        decoder.finish()
    assert isinstance(excinfo.value, XDeltaError)
    assert "checksum" in str(excinfo.value)


def test_public_adler32_matches_zlib() -> None:
    import os
    import zlib

    from xdelta_ffi import adler32

    for size in (0, 1, 15, 5552, 65536 + 7, 3 << 20):
        data = os.urandom(size)
        assert adler32(data) == zlib.adler32(data)
    assert adler32(memoryview(b"x" * 10)[2:]) == zlib.adler32(b"x" * 8)
