"""Interoperability with Debian's xdelta3 binary, the oracle for the VCDIFF we read and write."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from xdelta_ffi import CorruptDeltaError, Decoder, Encoder, decode, encode

from .conftest import versioned_pair

SIZES = [0, 1, 100_000, 3 << 20, 20 << 20]


def _cli(binary: str, *args: str | Path) -> None:
    subprocess.run([binary, *map(str, args)], check=True, capture_output=True)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("level", [1, 3, 9])
@pytest.mark.parametrize("secondary_data", [True, False])
def test_cli_decodes_our_deltas(
    xdelta3_cli: str, tmp_path: Path, size: int, level: int, secondary_data: bool
) -> None:
    source, target = versioned_pair(max(size, 1), seed=size + level)
    source = source[:size]
    (tmp_path / "ref").write_bytes(source)
    delta = encode(source, target, level=level, secondary_data=secondary_data)
    assert decode(source, delta) == target
    (tmp_path / "d").write_bytes(delta)
    _cli(xdelta3_cli, "-d", "-f", "-s", tmp_path / "ref", tmp_path / "d", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == target


@pytest.mark.parametrize("secondary", ["lzma", "djw", "none"])
@pytest.mark.parametrize("size", [100_000, 20 << 20])
def test_we_decode_cli_deltas(xdelta3_cli: str, tmp_path: Path, size: int, secondary: str) -> None:
    source, target = versioned_pair(size, seed=size)
    (tmp_path / "ref").write_bytes(source)
    (tmp_path / "new").write_bytes(target)
    opts = [] if secondary == "lzma" else ["-S", secondary]  # lzma is the CLI default
    _cli(
        xdelta3_cli,
        "-e",
        "-9",
        *opts,
        "-f",
        "-s",
        tmp_path / "ref",
        tmp_path / "new",
        tmp_path / "d",
    )
    delta = (tmp_path / "d").read_bytes()
    assert decode(tmp_path / "ref", delta) == target
    streamed = Decoder(source)
    assert b"".join(streamed.iter(delta[i : i + 999] for i in range(0, len(delta), 999))) == target


def test_gzip_round_trips_byte_for_byte(xdelta3_cli: str, tmp_path: Path) -> None:
    # The CLI without -D would gunzip inputs; the library must treat them as raw bytes.
    source = gzip.compress(b"release 1 " * 50_000, compresslevel=9)
    target = gzip.compress(b"release 2 " * 50_000, compresslevel=9)
    delta = encode(source, target)
    assert decode(source, delta) == target
    (tmp_path / "ref").write_bytes(source)
    (tmp_path / "d").write_bytes(delta)
    # -D: the CLI would otherwise gunzip the source and re-gzip the output.
    _cli(xdelta3_cli, "-d", "-D", "-f", "-s", tmp_path / "ref", tmp_path / "d", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == target


def test_cli_fgk_deltas_decode_or_fail_loudly(xdelta3_cli: str, tmp_path: Path) -> None:
    """Known upstream incompatibility: 3.1.1's FGK decoder rejects some 3.0.11 FGK sections.

    Nothing in the deltaglider family writes FGK; what matters is that it is never wrong bytes.
    """
    for size in (100_000, 20 << 20):
        source, target = versioned_pair(size, seed=size)
        (tmp_path / "ref").write_bytes(source)
        (tmp_path / "new").write_bytes(target)
        _cli(
            xdelta3_cli,
            "-e",
            "-9",
            "-S",
            "fgk",
            "-f",
            "-s",
            tmp_path / "ref",
            tmp_path / "new",
            tmp_path / "d",
        )
        try:
            out = decode(source, (tmp_path / "d").read_bytes(), target_size=len(target))
        except CorruptDeltaError:
            continue
        assert out == target


def test_our_delta_has_no_application_header(tmp_path: Path) -> None:
    source, target = versioned_pair(100_000)
    delta = encode(source, target)
    # VCDIFF magic, version 0, then the header indicator: bit 0x04 would announce an app header.
    assert delta[:4] == b"\xd6\xc3\xc4\x00"
    assert delta[4] & 0x04 == 0


def test_streamed_encode_matches_cli_decode_multi_window(xdelta3_cli: str, tmp_path: Path) -> None:
    source, target = versioned_pair(24 << 20, seed=99)
    (tmp_path / "ref").write_bytes(source)
    encoder = Encoder(tmp_path / "ref", window_size=16 << 20)
    with (tmp_path / "d").open("wb") as out:
        for i in range(0, len(target), 1 << 20):
            out.write(encoder.feed(target[i : i + (1 << 20)]))
        out.write(encoder.finish())
    _cli(xdelta3_cli, "-d", "-f", "-s", tmp_path / "ref", tmp_path / "d", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == target
