"""The memo of members deflated lately against a reference: a rebuild or an expansion takes a
memoed member instead of deflating (or trying settings on) it again, only when it is the very
member, and the memo stays bounded and reads back from the cache's bytes."""

from __future__ import annotations

import binascii
from pathlib import Path

import pytest

from deltaglider_async import ReferenceCache
from deltaglider_async._formats import _document as document
from deltaglider_async._formats._document import DeflateMemo, Rebuilder, reference_form

from ..artifacts import deflated_zip


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("deflated although the memo holds the member")


def _rebuild(segments: list[document.Segment], payload: bytes, memo: DeflateMemo) -> bytes:
    rebuilder = Rebuilder(b"", "t", segments, memo=memo)
    out = b"".join(bytes(p) for p in rebuilder.feed(payload))
    rebuilder.finish()
    return out


def _no_deflating(patched: pytest.MonkeyPatch) -> None:
    for name in ("deflate_raw", "deflate_resume", "deflate_matches", "Deflater"):
        patched.setattr(document, name, _never)


def test_a_rebuild_takes_memoed_members_only_when_they_are_the_very_members() -> None:
    data = deflated_zip(2)
    head, payload = document.Expander(None).expand(data)
    segments = document.parse_head(head).segments
    deflated = [s for s in segments if s.kind == document.DEFLATE]
    assert len(deflated) >= 10
    memo = DeflateMemo(1 << 20)
    assert _rebuild(segments, payload, memo) == data
    assert len(memo) == len(deflated) and memo.size == sum(s.out_len for s in deflated)
    with pytest.MonkeyPatch.context() as patched:
        _no_deflating(patched)
        assert _rebuild(segments, payload, memo) == data
    # Entries under the very keys, of other contents, are not taken: the members are deflated.
    lying = DeflateMemo(1 << 20)
    for s in deflated:
        lying.add(s.crc, b"x" * s.out_len, b"0" * 32, (s.level, s.mem_level), ())
    assert _rebuild(segments, payload, lying) == data


def test_an_expansion_does_not_try_settings_on_members_the_memo_holds() -> None:
    form = reference_form(deflated_zip(1))
    target = deflated_zip(3)
    memo = DeflateMemo(1 << 20)
    first = document.Expander(form, memo=memo).expand(target)
    assert len(memo) > 0  # the members changed since the reference
    with pytest.MonkeyPatch.context() as patched:
        _no_deflating(patched)
        again = document.Expander(form, memo=memo).expand(target)
    assert again == first  # the same settings, the same document
    rebuilder = Rebuilder(form.raw, "t", document.parse_head(again[0]).segments, known=form.known)
    assert b"".join(bytes(p) for p in rebuilder.feed(again[1])) == target
    rebuilder.finish()


def test_a_memo_stays_within_its_limit_and_reads_back() -> None:
    memo = DeflateMemo(10_000)
    for i in range(5):
        memo.add(i, bytes([i]) * 3000, bytes([i]) * 32, (6, 8), ((1000, 400),) if i else ())
    assert memo.size <= 10_000 and len(memo) == 3
    assert memo.find(0, 3000) is None and memo.find(1, 3000) is None  # oldest first
    assert memo.find(4, 3000, (6, 8)) is not None and memo.find(4, 3000, (9, 8)) is None
    # CRC-32s that are the compressed bytes' own, as a reader requires
    real = DeflateMemo(1 << 20)
    for i in range(3):
        body = bytes([i + 1]) * (100 + i)
        real.add(binascii.crc32(body), body, bytes([i]) * 32, (9, 8), ((50, 20),) if i else ())
    data = b"".join(bytes(p) for p in real.pieces())
    big = DeflateMemo(1 << 20)
    body = bytes(range(256)) * 1024  # 256 KiB
    big.add(binascii.crc32(body), body, b"1" * 32, (9, 8), ())
    assert real.fresh == 0
    back = DeflateMemo.parse(data, 1 << 20)
    assert back is not None and len(back) == 3 and back.fresh == 0
    for i in range(3):
        body = bytes([i + 1]) * (100 + i)
        found = back.find(binascii.crc32(body), len(body), (9, 8))
        assert found is not None and bytes(found.deflate.compressed) == body
        assert found.deflate.contents_digest == bytes([i]) * 32
        assert found.splits == (((50, 20),) if i else ())
    for damaged in (b"", data[:-1], data[: len(data) // 2], b"x" + data, data + b"x"):
        assert DeflateMemo.parse(damaged, 1 << 20) is None
    # kept by a process with a larger budget: more than this one may hold
    assert DeflateMemo.parse(b"".join(bytes(p) for p in big.pieces()), 1 << 16) is None
    flipped = bytearray(data)
    flipped[-1] ^= 1  # compressed bytes that are not what their CRC-32 says
    assert DeflateMemo.parse(bytes(flipped), 1 << 20) is None


async def test_a_derived_entry_kept_again_replaces_the_one_before(tmp_path: Path) -> None:
    cache = ReferenceCache(directory=tmp_path)
    await cache.keep_derived("m-memo", [b"first ", b"memo"])
    await cache.keep_derived("m-memo", [b"second memo, grown"])
    assert cache.load_derived("m-memo") == b"second memo, grown"
    assert len(list(tmp_path.rglob("*.dgc"))) == 1  # the first one went
