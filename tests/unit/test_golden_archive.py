"""Objects the archive format wrote (``data/``, made by ``python -m tests.unit.golden``) still
decode to the very bytes, and references' source forms are still what each stream version fixed.

A failure here means stored buckets would stop reading: change the reader back, never the files.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from deltaglider_async._engine.cache import MemoryEntry
from deltaglider_async._engine.codec import CodecRunner
from deltaglider_async._formats._document import SAME_FORM, STREAM_VERSIONS, reference_form
from deltaglider_async._formats.archive import ARCHIVE, _split, decode_reference_sync

from .golden import DATA

#: kind -> (SHA-256 of the reference, of the file the deltas rebuild, of the reference's source
#: form by stream version)
GOLDEN = {
    "zip": (
        "e746b85a7e68fb87e8fa3a3a04db041dfb0c8370fead6e604f8bab87f20410fe",
        "5e3122d6e305d1fe6a3005a499cf8bb1e1cff21277f8f46cc9f37a7b85b2ac79",
        {
            1: "c10951a0c01e398e62cb22c62f3be98796d6e808f16a10a65127d82971fa78ea",
            2: "b0b37fb97470823e898994fa566466dc954636a0972f53627037a6c8bedf20ab",
            3: "b0b37fb97470823e898994fa566466dc954636a0972f53627037a6c8bedf20ab",
            4: "b0b37fb97470823e898994fa566466dc954636a0972f53627037a6c8bedf20ab",
            5: "b0b37fb97470823e898994fa566466dc954636a0972f53627037a6c8bedf20ab",
            6: "b0b37fb97470823e898994fa566466dc954636a0972f53627037a6c8bedf20ab",
        },
    ),
    "tgz": (
        "e79f9b20e56affbcd967a031e8a7d42fc309fe86f3a8fbb7a4f1e5cfb4337038",
        "f7a9f32291e3bc1b475ca74fb5ce32700ac5957ddcddc654b8a462ab30c799d3",
        {
            1: "effe02d2347324e4f353038842f711f95c3752f72f3fdd6dd1bc6a2b60d6c6a4",
            2: "effe02d2347324e4f353038842f711f95c3752f72f3fdd6dd1bc6a2b60d6c6a4",
            3: "effe02d2347324e4f353038842f711f95c3752f72f3fdd6dd1bc6a2b60d6c6a4",
            4: "923665a0e47282e70141f42177ed41ca2d55949a0e04b75064972b09fbac911c",
            5: "923665a0e47282e70141f42177ed41ca2d55949a0e04b75064972b09fbac911c",
            6: "923665a0e47282e70141f42177ed41ca2d55949a0e04b75064972b09fbac911c",
        },
    ),
    "gzdata": (
        "0ca387df87d878c078e12b506455d3f721641160982ae7e566fef7c98b0f4d77",
        "6e6253e7b95334861cb6d43041fed0ab70de9fb9129aeff056916381189314be",
        {
            1: "0e7d1e5090613a9c50a336520a7244697108782bac377088ca0fdb6eddbe8183",
            2: "0e7d1e5090613a9c50a336520a7244697108782bac377088ca0fdb6eddbe8183",
            3: "bc95bc3a9cb0b4c582e94f1f6c5faf137d992b74d555af943637c82db3c33848",
            4: "bc95bc3a9cb0b4c582e94f1f6c5faf137d992b74d555af943637c82db3c33848",
            5: "bc95bc3a9cb0b4c582e94f1f6c5faf137d992b74d555af943637c82db3c33848",
            6: "bc95bc3a9cb0b4c582e94f1f6c5faf137d992b74d555af943637c82db3c33848",
        },
    ),
    "paxtgz": (
        "4a0121a4a3f444e5444ce387925b86c6151a46411e4f42d55ce36d49b0acb892",
        "eb5a6a384787f5f44e1f1bd944ec7846158f3d9a66e0fcbf22c25ecbb62eb58d",
        {
            1: "c7a36cd5c1e6563cd4edaa91fee9ad915ec6c5b77afa184887ffef70c9f271ce",
            2: "c7a36cd5c1e6563cd4edaa91fee9ad915ec6c5b77afa184887ffef70c9f271ce",
            3: "c7a36cd5c1e6563cd4edaa91fee9ad915ec6c5b77afa184887ffef70c9f271ce",
            4: "70a30da80ae6c236129519763c57cf9077e55e845a82fdfa2bf07e57559039d0",
            5: "70a30da80ae6c236129519763c57cf9077e55e845a82fdfa2bf07e57559039d0",
            6: "70a30da80ae6c236129519763c57cf9077e55e845a82fdfa2bf07e57559039d0",
        },
    ),
    "pytgz": (
        "a7d6b3ab1e335780569533894764788765b524a4513ac5d8ec8f92378a8ed9a4",
        "136ed599dd9ab082a23fb8f300f0c8d52d10dcca75985b9d6947e41b0f586c32",
        {
            1: "2d90ef124ff157159f5d41b4fa39e021c43f1fef4287671aa93f4e1ba2af42ed",
            2: "2d90ef124ff157159f5d41b4fa39e021c43f1fef4287671aa93f4e1ba2af42ed",
            3: "2d90ef124ff157159f5d41b4fa39e021c43f1fef4287671aa93f4e1ba2af42ed",
            4: "69c77c2d3f4e5a5c31b98db8cccb0605987840102d78a9a5d56dd383043d3ccc",
            5: "69c77c2d3f4e5a5c31b98db8cccb0605987840102d78a9a5d56dd383043d3ccc",
            6: "69c77c2d3f4e5a5c31b98db8cccb0605987840102d78a9a5d56dd383043d3ccc",
        },
    ),
    "gnutgz": (
        "58e158045f840a53230f5677390458fde7bd12a5849dbf9886326786208167be",
        "8d0e9dd5e795e3718e90732be03aa609d8a905641490055a114f0bad2cb20052",
        {
            1: "a29ec3acd58a39ab7f9e35b44037ade208d5f0dba19a034c82edabfe0a38364a",
            2: "a29ec3acd58a39ab7f9e35b44037ade208d5f0dba19a034c82edabfe0a38364a",
            3: "a29ec3acd58a39ab7f9e35b44037ade208d5f0dba19a034c82edabfe0a38364a",
            4: "24c6e3a6367ae0148ebba656be784cf4ffef4f84d77d343d9d5814682b4846b9",
            5: "24c6e3a6367ae0148ebba656be784cf4ffef4f84d77d343d9d5814682b4846b9",
            6: "24c6e3a6367ae0148ebba656be784cf4ffef4f84d77d343d9d5814682b4846b9",
        },
    ),
}


def _reference(kind: str) -> bytes:
    raw = decode_reference_sync((DATA / f"golden-{kind}-reference.bin").read_bytes(), kind)
    assert hashlib.sha256(raw).hexdigest() == GOLDEN[kind][0]
    return raw


@pytest.mark.parametrize("kind", sorted(GOLDEN))
def test_source_forms_are_what_each_version_fixed(kind: str) -> None:
    raw = _reference(kind)
    assert set(GOLDEN[kind][2]) == set(STREAM_VERSIONS)
    for version, digest in GOLDEN[kind][2].items():
        assert hashlib.sha256(reference_form(raw, version=version).source).hexdigest() == digest
    for version, same in SAME_FORM.items():  # what lets a reader keep one form for both
        assert GOLDEN[kind][2][version] == GOLDEN[kind][2][same]


@pytest.mark.parametrize("version", STREAM_VERSIONS)
@pytest.mark.parametrize("kind", sorted(GOLDEN))
async def test_stored_deltas_still_decode(kind: str, version: int) -> None:
    raw = _reference(kind)
    delta = (DATA / f"golden-{kind}-delta-v{version}.bin").read_bytes()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(delta), 4096):
            yield delta[start : start + 4096]

    reference = MemoryEntry(GOLDEN[kind][0], len(raw), raw)
    out = [p async for p in ARCHIVE.decode(CodecRunner(1), reference, chunks(), None, kind)]
    assert hashlib.sha256(b"".join(out)).hexdigest() == GOLDEN[kind][1]


@pytest.mark.parametrize("kind", ["pytgz", "gnutgz"])
def test_the_golden_large_tarballs_decode_split_from_version_6(kind: str) -> None:
    for version in STREAM_VERSIONS:
        head, _ = _split((DATA / f"golden-{kind}-delta-v{version}.bin").read_bytes(), kind)
        assert any(s.splits for s in head.segments) == (version >= 6)
