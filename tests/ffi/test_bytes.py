"""Bytewise sums and differences (the archive format's deltas of headers and tables)."""

from __future__ import annotations

import os

import pytest

from xdelta_ffi import byte_difference, byte_sum


@pytest.mark.parametrize("n", [0, 1, 3, 31, 32, 33, 4096, 100_003])
def test_sum_and_difference_are_bytewise_mod_256_and_inverse(n: int) -> None:
    a, b = os.urandom(n), os.urandom(n)
    assert byte_difference(a, b) == bytes((x - y) & 0xFF for x, y in zip(a, b, strict=True))
    assert byte_sum(a, b) == bytes((x + y) & 0xFF for x, y in zip(a, b, strict=True))
    assert byte_sum(byte_difference(a, b), memoryview(b)) == a


def test_a_shorter_second_operand_counts_as_zeros_and_a_longer_one_is_refused() -> None:
    a = os.urandom(100)
    assert byte_difference(a, a[:60]) == bytes(60) + a[60:]
    assert byte_sum(bytearray(a), b"") == a
    with pytest.raises(ValueError, match="longer"):
        byte_sum(a[:10], a)
