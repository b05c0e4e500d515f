from __future__ import annotations

import io
import itertools
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdelta_ffi import (
    CodecStateError,
    Decoder,
    Encoder,
    SourceMismatchError,
    SourceReadError,
    decode,
    encode,
)

from .conftest import versioned_pair


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=150, deadline=None)
@given(
    source=st.binary(max_size=4096),
    target=st.binary(max_size=4096),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=8),
    level=st.sampled_from([1, 3, 6, 9]),
    secondary=st.sampled_from(["lzma", "djw", "fgk", None]),
)
def test_round_trip_any_bytes_any_chunks(
    source: bytes, target: bytes, cuts: list[int], level: int, secondary: str | None
) -> None:
    encoder = Encoder(source, level=level, secondary=secondary)
    delta = b"".join(encoder.iter(chunked(target, cuts)))
    decoder = Decoder(source)
    assert b"".join(decoder.iter(chunked(delta, cuts))) == target


@settings(max_examples=40, deadline=None)
@given(
    base=st.binary(min_size=1, max_size=2048),
    edits=st.lists(st.tuples(st.integers(0, 20000), st.binary(max_size=64)), max_size=6),
)
def test_round_trip_related_inputs(base: bytes, edits: list[tuple[int, bytes]]) -> None:
    source = base * 10
    target = bytearray(source)
    for at, patch in edits:
        at %= len(target) + 1
        target[at:at] = patch
    delta = encode(source, bytes(target))
    assert decode(source, delta) == bytes(target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (b"", b""),
        (b"", b"only target " * 1000),
        (b"only source " * 1000, b""),
        (b"x" * 10, os.urandom(3 << 20)),  # target much larger than source
        (os.urandom(3 << 20), b"tiny"),  # source much larger than target
    ],
    ids=["both-empty", "empty-source", "empty-target", "target>>source", "source>>target"],
)
def test_edge_sizes(source: bytes, target: bytes) -> None:
    assert decode(source, encode(source, target)) == target


def test_multi_window_streaming_with_small_feeds() -> None:
    source, target = versioned_pair(20 << 20, seed=7)
    encoder = Encoder(source, window_size=1 << 20)
    delta = b"".join(encoder.iter(target[i : i + 100_000] for i in range(0, len(target), 100_000)))
    assert len(delta) < len(target) // 50
    decoder = Decoder(source)
    out = b"".join(decoder.iter(delta[i : i + 7] for i in range(0, len(delta), 7)))
    assert out == target


def test_feed_larger_than_window_is_sliced() -> None:
    # Trap 1 of xdelta3-notes.md: more than winsize bytes at once would overflow buf_in.
    source, target = versioned_pair(3 << 20, seed=3)
    encoder = Encoder(source, window_size=64 << 10)
    delta = encoder.feed(target[:1000]) + encoder.feed(target[1000:]) + encoder.finish()
    assert decode(source, delta) == target


def test_sources_path_buffer_and_callable_agree(tmp_path: Path) -> None:
    source, target = versioned_pair(5 << 20, seed=5)
    path = tmp_path / "ref.bin"
    path.write_bytes(source)
    reads: list[tuple[int, int]] = []

    def read_block(offset: int, size: int) -> bytes:
        reads.append((offset, size))
        return source[offset : offset + size]

    by_buffer = encode(source, target)
    by_path = encode(path, target)
    by_callable = encode(read_block, target, source_size=len(source))
    assert by_buffer == by_path == by_callable
    assert reads, "the callable source must be read block by block"
    assert all(size <= 1 << 20 for _, size in reads)
    for src in (source, str(path), memoryview(source)):
        assert decode(src, by_path) == target
    assert decode(read_block, by_path, source_size=len(source)) == target


def test_small_cache_still_correct() -> None:
    source, target = versioned_pair(8 << 20, seed=11)
    encoder = Encoder(
        lambda o, n: source[o : o + n],
        source_size=len(source),
        block_size=64 << 10,
        cache_size=128 << 10,
    )
    delta = encoder.feed(target) + encoder.finish()
    _hits, misses = encoder.cache_stats
    assert misses > 0
    assert decode(source, delta) == target


@pytest.mark.parametrize("cache_blocks", [2, 3, 17])
def test_block_cache_evictions_never_change_the_delta(tmp_path: Path, cache_blocks: int) -> None:
    # The cache only decides what is read again: under heavy eviction (a few 16 KiB slots for an
    # 8 MiB file source, decoded through a 2-slot cache) the bytes must be those of the
    # in-memory source, which has no cache at all.
    source, target = versioned_pair(8 << 20, seed=12)
    path = tmp_path / "ref"
    path.write_bytes(source)
    expected = encode(source, target, block_size=16 << 10)
    encoder = Encoder(path, target_size=len(target), cache_size=cache_blocks * (16 << 10))
    assert encoder.feed(target) + encoder.finish() == expected
    assert encoder.cache_stats[1] > len(source) // (16 << 10)  # blocks were read again
    decoder = Decoder(path, block_size=16 << 10, cache_size=32 << 10)
    assert decoder.feed(expected) + decoder.finish() == target


def test_content_moved_far_is_found() -> None:
    # Trap 3: matches beyond half the source window are lost unless the window covers the source.
    rng_bytes = os.urandom(48 << 20)
    for shift in (20 << 20, 28 << 20):  # within half the (64 MiB) window
        rotated = rng_bytes[shift:] + rng_bytes[:shift]
        delta = encode(rng_bytes, rotated, level=3)
        assert len(delta) < 64 << 10, shift
        assert decode(rng_bytes, delta) == rotated


def test_misuse_raises_codec_state_error() -> None:
    encoder = Encoder(b"abc")
    encoder.feed(b"abd")
    encoder.finish()
    with pytest.raises(CodecStateError):
        encoder.feed(b"more")
    with pytest.raises(CodecStateError):
        encoder.finish()
    with pytest.raises(CodecStateError):
        Encoder(b"abc", level=12)
    with pytest.raises(CodecStateError):
        Encoder(b"abc", window_size=64 << 20)
    with pytest.raises(CodecStateError):
        Encoder(lambda o, n: b"", source_size=None)
    with pytest.raises(CodecStateError):
        Encoder(12345)  # type: ignore[arg-type]


def test_missing_source_file_and_short_callable(tmp_path: Path) -> None:
    with pytest.raises(SourceReadError):
        Encoder(tmp_path / "missing.bin")
    source, target = versioned_pair(1 << 20, seed=2)
    delta = encode(source, target)
    with pytest.raises(SourceReadError):
        decode(lambda o, n: source[o : o + n // 2], delta, source_size=len(source))
    with pytest.raises(SourceReadError, match="boom"):

        def failing(offset: int, size: int) -> bytes:
            raise OSError("boom")

        decode(failing, delta, source_size=len(source))


def test_concurrent_use_of_one_codec_is_refused() -> None:
    source, target = versioned_pair(4 << 20, seed=4)
    started = threading.Event()
    release = threading.Event()

    def slow_read(offset: int, size: int) -> bytes:
        started.set()
        release.wait(5)
        return source[offset : offset + size]

    encoder = Encoder(slow_read, source_size=len(source))
    worker = threading.Thread(target=lambda: encoder.feed(target) + encoder.finish())
    worker.start()
    assert started.wait(5)
    try:
        with pytest.raises(CodecStateError):
            encoder.feed(b"x")
    finally:
        release.set()
    worker.join()


def test_codecs_in_parallel_threads_are_independent() -> None:
    pairs = [versioned_pair(4 << 20, seed=s) for s in range(4)]
    results: dict[int, bool] = {}

    def work(i: int) -> None:
        src, tgt = pairs[i]
        for _ in range(3):
            results[i] = decode(src, encode(src, tgt)) == tgt

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {0: True, 1: True, 2: True, 3: True}


def test_decoded_output_streams_in_window_sized_pieces() -> None:
    # A few KiB of delta produce megabytes of output: stream() yields it window by window
    # instead of materialising it all.
    source, target = versioned_pair(8 << 20, seed=12)
    delta = encode(source, target, window_size=256 << 10)
    assert len(delta) < 64 << 10
    decoder = Decoder(source, target_size=len(target))
    pieces = list(decoder.stream(delta))
    pieces += list(decoder.finish_stream())
    assert len(pieces) >= 32
    assert max(len(p) for p in pieces) <= 256 << 10
    assert b"".join(pieces) == target


def test_abandoned_stream_fails_the_codec() -> None:
    source, target = versioned_pair(1 << 20, seed=13)
    delta = encode(source, target, window_size=64 << 10)
    decoder = Decoder(source)
    pieces = decoder.stream(delta)
    next(pieces)
    pieces.close()
    with pytest.raises(CodecStateError):
        decoder.feed(b"more")


def test_pipe_writes_multi_window_output_to_a_file_or_descriptor(tmp_path: Path) -> None:
    source = os.urandom(3 << 20)
    target = source[: 1 << 20] + b"inserted" + source[1 << 20 :] + os.urandom(5000)
    delta = encode(source, target, window_size=1 << 20)
    out = tmp_path / "out"
    with out.open("wb") as f:
        f.write(b"kept:")  # buffered by the file object; pipe() must flush it first
        written = Decoder(source).pipe([delta[:100], delta[100:]], f)
    assert written == len(target)
    assert out.read_bytes() == b"kept:" + target
    fd = os.open(tmp_path / "fd", os.O_WRONLY | os.O_CREAT)
    try:
        assert Decoder(source).pipe(iter([delta]), fd) == len(target)
    finally:
        os.close(fd)
    assert (tmp_path / "fd").read_bytes() == target


def test_pipe_reports_corruption_and_write_failures(tmp_path: Path) -> None:
    source = os.urandom(1 << 20)
    target = source[:1000] + b"x" + source[1000:]
    delta = encode(source, target)
    with (tmp_path / "out").open("wb") as f, pytest.raises(SourceMismatchError):
        Decoder(os.urandom(1 << 20)).pipe([delta], f)
    fd = os.open(tmp_path / "ro", os.O_RDONLY | os.O_CREAT)
    decoder = Decoder(source)
    try:
        with pytest.raises(OSError):
            decoder.pipe([delta], fd)
    finally:
        os.close(fd)
    with pytest.raises(CodecStateError):
        decoder.feed(b"")  # the failed codec is closed, not left half-way
    for not_a_file in ("out.bin", io.BytesIO()):
        with pytest.raises(CodecStateError, match="file descriptor"):
            Decoder(source).pipe([delta], not_a_file)  # type: ignore[arg-type]


def test_secondary_data_false_leaves_added_bytes_uncompressed() -> None:
    source = b"".join(b"line %d of the old release\n" % i for i in range(20_000))
    target = source + b"".join(b"new line %d, compressible text\n" % i for i in range(5_000))
    full = encode(source, target)
    plain_data = encode(source, target, secondary_data=False)
    assert len(plain_data) > len(full) * 2  # the added text is what LZMA compressed
    assert decode(source, plain_data) == target
