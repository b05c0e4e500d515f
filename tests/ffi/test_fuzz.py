"""Damaged deltas: every mutation either decodes to the exact target or raises XDeltaError."""

from __future__ import annotations

import random

import pytest

from xdelta_ffi import Decoder, TruncatedDeltaError, XDeltaError, decode, encode

from .conftest import versioned_pair

MUTATIONS = 10_000


def _mutate(rng: random.Random, delta: bytes) -> bytes:
    data = bytearray(delta)
    kind = rng.randrange(5)
    if kind == 0:  # flip bits
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # overwrite a byte
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 2:  # truncate
        del data[rng.randrange(len(data)) :]
    elif kind == 3:  # delete a run
        at = rng.randrange(len(data))
        del data[at : at + rng.randint(1, 16)]
    else:  # insert garbage
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 16))
    return bytes(data)


@pytest.mark.parametrize("secondary", ["lzma", "djw", None])
def test_random_mutations_never_crash_or_lie(secondary: str | None) -> None:
    rng = random.Random(20261122)
    source, target = versioned_pair(64 << 10, seed=3)
    delta = encode(source, target, secondary=secondary, window_size=16 << 10)
    outcomes = {"error": 0, "exact": 0}
    for _ in range(MUTATIONS // 3 + 1):
        mutated = _mutate(rng, delta)
        try:
            out = decode(source, mutated, target_size=len(target))
        except XDeltaError:
            outcomes["error"] += 1
            continue
        assert out == target, "a damaged delta decoded to wrong bytes without an error"
        outcomes["exact"] += 1
    assert outcomes["error"] > MUTATIONS // 6


def test_garbage_and_wrong_source_raise() -> None:
    rng = random.Random(5)
    source, target = versioned_pair(256 << 10, seed=8)
    delta = encode(source, target)
    for _ in range(200):
        with pytest.raises(XDeltaError):
            decode(source, rng.randbytes(rng.randint(0, 4096)) or b"\x00")
    with pytest.raises(XDeltaError):
        decode(rng.randbytes(len(source)), delta)
    decoder = Decoder(source)
    decoder.feed(delta[: len(delta) // 2])
    with pytest.raises(TruncatedDeltaError):
        decoder.finish()


def test_short_and_header_only_inputs_never_decode_to_nothing() -> None:
    """Every prefix up to the first window, and 1-8 random bytes, in 10,000+ cases: an error, or
    (only for a whole VCDIFF header and no target size) the empty target such a header describes."""
    rng = random.Random(20261202)
    source, target = versioned_pair(16 << 10, seed=5)
    deltas = [encode(source, target, secondary=s) for s in ("lzma", "djw", None)]
    deltas.append(encode(source, b""))
    cases = [b""]
    for delta in deltas:
        cases += [delta[:n] for n in range(1, 24)]
    while len(cases) < 10_000:
        head = rng.choice(deltas)[: rng.randint(0, 8)]
        cases.append(head + rng.randbytes(rng.randint(0 if head else 1, 8 - len(head))))
    empty_ok = 0
    for case in cases:
        with pytest.raises(XDeltaError):
            decode(source, case, target_size=len(target))
        try:
            out = decode(source, case)
        except XDeltaError:
            continue
        assert out == b"" and case[:4] == b"\xd6\xc3\xc4\x00", case
        empty_ok += 1
    assert empty_ok < len(cases) // 10
    for n in range(4):
        with pytest.raises(TruncatedDeltaError, match="header"):
            decode(source, deltas[0][:n])


def test_cut_at_window_boundary_needs_target_size() -> None:
    source, target = versioned_pair(256 << 10, seed=9)
    delta = encode(source, target)
    header_only = delta[: len(delta) - 1]
    with pytest.raises(TruncatedDeltaError):
        decode(source, header_only, target_size=len(target))


def test_deltas_without_checksums_are_refused_unless_allowed(tmp_path: object) -> None:
    source, target = versioned_pair(64 << 10, seed=4)
    delta = encode(source, target)
    assert decode(source, delta, require_checksums=True) == target
