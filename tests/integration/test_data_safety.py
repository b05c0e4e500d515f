"""Ways to lose data or return wrong bytes, each driven deterministically on real servers.

Every test reads back through a *fresh* client (empty reference cache), so that a copy of a
reference cached by the writer cannot hide a reference missing from the bucket.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from deltaglider_async import (
    AsyncDeltaGliderClient,
    DeltaGliderError,
    InvalidArgumentError,
    NotFoundError,
    TransferConfig,
)
from tests.localserver import LocalS3

from ..artifacts import deflated_zip, release_zip
from ..conftest import make_client
from ..hooks import Gate, hold, key_is, small_tmpfs
from .test_sdk_basics import stored_keys

MiB = 1 << 20


async def read_fresh(server: LocalS3, cache: Path, bucket: str, key: str) -> bytes:
    async with make_client(server, cache) as fresh:
        resp = await fresh.get_object(Bucket=bucket, Key=key)
        data: bytes = await resp["Body"].read()
        return data


def assert_no_orphan_delta(raw: Any, bucket: str) -> None:
    """Every .delta names a reference that exists with the SHA-256 it was encoded against."""
    keys = stored_keys(raw, bucket)
    for key in keys:
        if not key.endswith(".delta"):
            continue
        meta = {
            k.lower(): v for k, v in raw.head_object(Bucket=bucket, Key=key)["Metadata"].items()
        }
        ref = meta.get("dg-ref-key") or (
            key.rsplit("/", 1)[0] + "/reference.bin" if "/" in key else "reference.bin"
        )
        assert ref in keys, f"{key} has no reference"
        ref_meta = raw.head_object(Bucket=bucket, Key=ref)["Metadata"]
        assert ref_meta["dg-file-sha256"] == meta["dg-ref-sha256"], f"{key}: wrong reference"


# ---------------------------------------------------------------- 1. upload vs. reference GC
async def test_upload_held_before_its_delta_put_while_the_last_delta_is_deleted(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    v1, v2 = release_zip(1), release_zip(2)
    async with (
        make_client(s3, tmp_path / "writer") as writer,
        make_client(s3, tmp_path / "deleter") as deleter,
    ):
        await writer.put_object(Bucket=bucket, Key="app/v1.zip", Body=v1)
        gate = Gate()
        hold(writer, "put_file", key_is("app/v2.zip.delta"), gate)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: writer.put_object(Bucket=bucket, Key="app/v2.zip", Body=v2))
            await gate.wait_reached()
            await deleter.delete_object(Bucket=bucket, Key="app/v1.zip")
            gate.release.set()
    assert await read_fresh(s3, tmp_path / "reader", bucket, "app/v2.zip") == v2
    assert_no_orphan_delta(raw, bucket)


async def test_reference_gc_held_before_its_delete_while_an_upload_completes(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    v1, v2 = release_zip(1), release_zip(2)
    async with (
        make_client(s3, tmp_path / "writer") as writer,
        make_client(s3, tmp_path / "deleter") as deleter,
    ):
        await writer.put_object(Bucket=bucket, Key="app/v1.zip", Body=v1)
        gate = Gate()
        hold(deleter, "delete", key_is("app/reference.bin"), gate)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: deleter.delete_object(Bucket=bucket, Key="app/v1.zip"))
            await gate.wait_reached()  # the deleter saw no delta left in app/
            resp = await writer.put_object(Bucket=bucket, Key="app/v2.zip", Body=v2)
            assert resp["DeltaGliderInfo"]["StoredAs"] == "delta"
            gate.release.set()
    assert await read_fresh(s3, tmp_path / "reader", bucket, "app/v2.zip") == v2
    assert_no_orphan_delta(raw, bucket)


async def test_upload_against_a_snapshot_held_while_the_space_is_emptied(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    """A delta encoded against a snapshot lands after the GC took every reference of its space:
    the writer notices and stores the file again."""
    a1, b1, b2 = deflated_zip(1), deflated_zip(1, seed=99), deflated_zip(2, seed=99)
    async with (
        make_client(s3, tmp_path / "writer", delta_format="archive") as writer,
        make_client(s3, tmp_path / "deleter") as deleter,
    ):
        await writer.put_object(Bucket=bucket, Key="s/a-1.whl", Body=a1)
        first = await writer.put_object(Bucket=bucket, Key="s/b-1.whl", Body=b1)
        assert first["DeltaGliderInfo"]["ReferenceKey"] == "s/reference-2.bin"
        gate = Gate()
        hold(writer, "put_file", key_is("s/b-2.whl.delta"), gate)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: writer.put_object(Bucket=bucket, Key="s/b-2.whl", Body=b2))
            await gate.wait_reached()
            for key in ("s/a-1.whl", "s/b-1.whl"):
                await deleter.delete_object(Bucket=bucket, Key=key)
            gate.release.set()
    assert await read_fresh(s3, tmp_path / "reader", bucket, "s/b-2.whl") == b2
    assert_no_orphan_delta(raw, bucket)


async def test_snapshot_gc_held_before_its_delete_while_an_upload_against_it_completes(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    """The GC copied a snapshot aside and is about to delete it when a delta against it lands:
    the snapshot comes back, and the older reference is left alone."""
    a1, b1, b2 = deflated_zip(1), deflated_zip(1, seed=99), deflated_zip(2, seed=99)
    async with (
        make_client(s3, tmp_path / "writer", delta_format="archive") as writer,
        make_client(s3, tmp_path / "deleter") as deleter,
    ):
        await writer.put_object(Bucket=bucket, Key="s/a-1.whl", Body=a1)
        await writer.put_object(Bucket=bucket, Key="s/b-1.whl", Body=b1)
        await deleter.delete_object(Bucket=bucket, Key="s/a-1.whl")
        gate = Gate()
        hold(deleter, "delete", key_is("s/reference-2.bin"), gate)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: deleter.delete_object(Bucket=bucket, Key="s/b-1.whl"))
            await gate.wait_reached()  # the space showed no delta
            resp = await writer.put_object(Bucket=bucket, Key="s/b-2.whl", Body=b2)
            assert resp["DeltaGliderInfo"]["ReferenceKey"] == "s/reference-2.bin"
            gate.release.set()
    assert await read_fresh(s3, tmp_path / "reader", bucket, "s/b-2.whl") == b2
    assert_no_orphan_delta(raw, bucket)
    assert "s/reference.bin" in stored_keys(raw, bucket)


async def test_new_first_writer_after_gc_does_not_strand_a_delta_of_the_old_reference(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    """The GC deletes the reference, a new first writer creates another one, and only then does
    a delta encoded against the old reference land: it must still read back."""
    v1, v2, v9 = release_zip(1), release_zip(2), release_zip(9, seed=99)
    async with (
        make_client(s3, tmp_path / "writer") as writer,
        make_client(s3, tmp_path / "deleter") as deleter,
        make_client(s3, tmp_path / "newcomer") as newcomer,
    ):
        await writer.put_object(Bucket=bucket, Key="app/v1.zip", Body=v1)
        gate = Gate()
        hold(writer, "put_file", key_is("app/v2.zip.delta"), gate)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: writer.put_object(Bucket=bucket, Key="app/v2.zip", Body=v2))
            await gate.wait_reached()
            await deleter.delete_object(Bucket=bucket, Key="app/v1.zip")
            await newcomer.put_object(Bucket=bucket, Key="app/v9.zip", Body=v9)
            gate.release.set()
    for key, body in (("app/v2.zip", v2), ("app/v9.zip", v9)):
        assert await read_fresh(s3, tmp_path / f"reader-{key[-6:]}", bucket, key) == body
    assert_no_orphan_delta(raw, bucket)


# ---------------------------------------------------------------- 2. delta and direct at once
async def test_same_key_written_as_delta_and_as_direct_at_once_keeps_one(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    as_delta, as_direct = release_zip(2), release_zip(3)
    async with (
        make_client(s3, tmp_path / "a") as a,
        make_client(s3, tmp_path / "b") as b,
    ):
        await a.put_object(Bucket=bucket, Key="tw/base.zip", Body=release_zip(1))
        gate_a, gate_b = Gate(), Gate()
        hold(a, "put_file", key_is("tw/x.zip.delta"), gate_a, after=True)
        hold(b, "put_bytes", key_is("tw/x.zip"), gate_b, after=True)
        hold(b, "put_file", key_is("tw/x.zip"), gate_b, after=True)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: a.put_object(Bucket=bucket, Key="tw/x.zip", Body=as_delta))
            tg.start_soon(
                lambda: b.put_object(Bucket=bucket, Key="tw/x.zip", Body=as_direct, NoDelta=True)
            )
            await gate_a.wait_reached()
            await gate_b.wait_reached()  # both objects are stored: now both clean up
            gate_a.release.set()
            gate_b.release.set()
    got = await read_fresh(s3, tmp_path / "reader", bucket, "tw/x.zip")
    assert got in (as_delta, as_direct)
    # A later upload of the key removes the loser of the race.
    async with make_client(s3, tmp_path / "later") as later:
        await later.put_object(Bucket=bucket, Key="tw/x.zip", Body=release_zip(4))
    assert await read_fresh(s3, tmp_path / "reader2", bucket, "tw/x.zip") == release_zip(4)


# ---------------------------------------------------------------- 3. keys the server aliases
async def test_keys_whose_spaces_cannot_be_told_apart_are_refused(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path, dg: AsyncDeltaGliderClient
) -> None:
    await dg.put_object(Bucket=bucket, Key="app/v1.zip", Body=release_zip(1))
    await dg.put_object(Bucket=bucket, Key="app/v2.zip", Body=release_zip(2))
    for alias in ("app//v1.zip", "app/./v1.zip", "app/x/../v1.zip", "/app/v1.zip"):
        with pytest.raises(InvalidArgumentError):
            await dg.delete_object(Bucket=bucket, Key=alias)
        with pytest.raises(InvalidArgumentError):
            await dg.put_object(Bucket=bucket, Key=alias, Body=b"x")
    with pytest.raises(InvalidArgumentError):
        await dg.put_object(Bucket=bucket, Key="report\\2024.txt", Body=b"x")
    assert "app/reference.bin" in stored_keys(raw, bucket)
    assert await read_fresh(s3, tmp_path / "reader", bucket, "app/v2.zip") == release_zip(2)


async def test_gc_never_deletes_a_reference_its_listing_did_not_show(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path, dg: AsyncDeltaGliderClient
) -> None:
    """Whatever spelling a server aliases, the reference goes only if the very listing that
    found no delta in its space also showed that reference."""
    await dg.put_object(Bucket=bucket, Key="gc/v1.zip", Body=release_zip(1))
    await dg.put_object(Bucket=bucket, Key="gc/v2.zip", Body=release_zip(2))
    storage: Any = dg._storage
    original = storage.list_page

    async def blind_listing(*args: Any, **kwargs: Any) -> Any:
        page = await original(*args, **kwargs)
        page.objects = []  # a server that lists nothing under this spelling
        return page

    storage.list_page = blind_listing
    await dg.delete_object(Bucket=bucket, Key="gc/v1.zip")
    storage.list_page = original
    assert "gc/reference.bin" in stored_keys(raw, bucket)
    assert await read_fresh(s3, tmp_path / "reader", bucket, "gc/v2.zip") == release_zip(2)


# ---------------------------------------------------------------- 4. nearly full filesystem
@pytest.mark.parametrize("kind", ["direct", "delta", "ranged"])
async def test_download_into_a_full_filesystem_fails_and_keeps_the_old_file(
    s3: LocalS3, bucket: str, tmp_path: Path, kind: str
) -> None:
    transfer = TransferConfig(multipart_threshold=8 * MiB, part_size=8 * MiB, range_size=MiB)
    body = {
        "direct": os.urandom(3 * MiB),
        "delta": release_zip(2, files=40, file_size=80 << 10),
        "ranged": os.urandom(12 * MiB),
    }[kind]
    key = {"direct": "fs/d.txt", "delta": "fs/d.zip", "ranged": "fs/big.bin"}[kind]
    async with make_client(s3, tmp_path / "cache", transfer=transfer) as dg:
        if kind == "delta":
            await dg.put_object(Bucket=bucket, Key="fs/base.zip", Body=release_zip(1))
        await dg.put_object(Bucket=bucket, Key=key, Body=body)
        with small_tmpfs(tmp_path / "small") as small:
            fresh = small / "new.out"
            with pytest.raises(OSError):
                await dg.download(f"s3://{bucket}/{key}", fresh)
            assert not fresh.exists()
            existing = small / "old.out"
            existing.write_bytes(b"previous")
            with pytest.raises(OSError):
                await dg.download(f"s3://{bucket}/{key}", existing)
            assert existing.read_bytes() == b"previous"
            assert sorted(p.name for p in small.iterdir()) == ["old.out"]


# ---------------------------------------------------------------- 5. a file that changes
@pytest.mark.parametrize(
    "name,size", [("grow.txt", 300 << 10), ("grow.bin", 20 * MiB), ("first.zip", 20 * MiB)]
)
async def test_a_file_changing_while_it_uploads_is_never_stored_unreadable(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path, name: str, size: int
) -> None:
    transfer = TransferConfig(multipart_threshold=8 * MiB, part_size=8 * MiB)
    source = tmp_path / name
    source.write_bytes(os.urandom(size))
    async with make_client(s3, tmp_path / "cache", transfer=transfer) as dg:
        codec: Any = dg._ctx.codec
        original = codec.hash_file

        async def hash_then_change(*args: Any) -> Any:
            result = await original(*args)
            with source.open("r+b") as fh:  # the user's file changes after it was hashed
                fh.seek(size // 2)
                fh.write(b"changed!")
            return result

        codec.hash_file = hash_then_change
        try:
            await dg.upload(source, f"s3://{bucket}/chg/")
        except DeltaGliderError as exc:
            assert "changed" in str(exc)
            assert not [k for k in stored_keys(raw, bucket) if k.startswith(f"chg/{name}")]
            assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
            return
    data = await read_fresh(s3, tmp_path / "reader", bucket, f"chg/{name}")
    assert len(data) == size  # readable, and its SHA-256 matched (checked by the body)


async def test_upload_of_a_file_whose_size_stat_does_not_tell(
    s3: LocalS3, bucket: str, tmp_path: Path, dg: AsyncDeltaGliderClient
) -> None:
    """/proc files report size 0 and change on every read: what is stored is one consistent
    read of them."""
    await dg.upload("/proc/self/status", f"s3://{bucket}/proc/status.txt")
    data = await read_fresh(s3, tmp_path / "reader", bucket, "proc/status.txt")
    assert data.startswith(b"Name:")
    assert (await dg.verify(f"s3://{bucket}/proc/status.txt")).valid


# ---------------------------------------------------------------- 6. special destinations
def _drain(fifo: Path, into: bytearray, deadline: float) -> None:
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if chunk:
                into += chunk
            elif into:
                return  # the writer closed
            else:
                time.sleep(0.01)
    finally:
        os.close(fd)


@pytest.mark.parametrize("key", ["sp/e3.zip", "sp/e3.txt"])
async def test_download_into_a_fifo_writes_into_it(
    s3: LocalS3, bucket: str, tmp_path: Path, dg: AsyncDeltaGliderClient, key: str
) -> None:
    await dg.put_object(Bucket=bucket, Key="sp/base.zip", Body=release_zip(1))
    body = release_zip(3)
    await dg.put_object(Bucket=bucket, Key=key, Body=body)
    fifo = tmp_path / "f.zip"
    os.mkfifo(fifo)
    received = bytearray()
    reader = threading.Thread(target=_drain, args=(fifo, received, time.monotonic() + 30))
    reader.start()
    try:
        await dg.download(f"s3://{bucket}/{key}", fifo)
    finally:
        reader.join(35)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert bytes(received) == body
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("cache")) == ["f.zip"]


async def test_download_onto_a_device_never_replaces_the_node(
    s3: LocalS3, bucket: str, tmp_path: Path, dg: AsyncDeltaGliderClient
) -> None:
    await dg.put_object(Bucket=bucket, Key="dev/a.txt", Body=b"x" * 100_000)
    full, null = tmp_path / "full", tmp_path / "null"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # like /dev/full
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # like /dev/null
    with pytest.raises(OSError):
        await dg.download(f"s3://{bucket}/dev/a.txt", full)
    await dg.download(f"s3://{bucket}/dev/a.txt", null)
    assert stat.S_ISCHR(full.lstat().st_mode) and stat.S_ISCHR(null.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["full", "null"]


async def test_download_through_a_symlink_replaces_its_target_not_the_link(
    s3: LocalS3, bucket: str, tmp_path: Path, dg: AsyncDeltaGliderClient
) -> None:
    await dg.put_object(Bucket=bucket, Key="ln/a.txt", Body=b"new content")
    target = tmp_path / "real.txt"
    target.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    await dg.download(f"s3://{bucket}/ln/a.txt", link)
    assert link.is_symlink() and target.read_bytes() == b"new content"


# ---------------------------------------------------------------- also found
async def test_foreign_reference_bin_stores_directly_and_bulk_goes_on(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path, dg: AsyncDeltaGliderClient
) -> None:
    raw.put_object(Bucket=bucket, Key="f/reference.bin", Body=b"<html>error page</html>")
    resp = await dg.put_object(Bucket=bucket, Key="f/a.zip", Body=release_zip(1))
    assert resp["DeltaGliderInfo"]["StoredAs"] == "direct"
    assert "reference" in resp["DeltaGliderInfo"]["Reason"]
    files = []
    for i, space in enumerate(("f", "g", "f", "g")):
        path = tmp_path / f"{space}-{i}.zip"
        path.write_bytes(release_zip(i + 2))
        files.append((path, f"s3://{bucket}/{space}/"))
    results = await dg.upload_many(files)
    assert all(r.ok for r in results), [r.error for r in results]
    keys = stored_keys(raw, bucket)
    assert "g/reference.bin" in keys
    assert raw.get_object(Bucket=bucket, Key="f/reference.bin")["Body"].read().startswith(b"<html>")
    for path, url in files:
        got = await read_fresh(
            s3, tmp_path / "r", bucket, url[len(f"s3://{bucket}/") :] + path.name
        )
        assert got == path.read_bytes()


async def test_empty_first_file_does_not_become_the_reference(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str
) -> None:
    empty = await dg.put_object(Bucket=bucket, Key="e/empty.zip", Body=b"")
    assert empty["DeltaGliderInfo"]["StoredAs"] == "direct"
    assert "e/reference.bin" not in stored_keys(raw, bucket)
    await dg.put_object(Bucket=bucket, Key="e/a.zip", Body=release_zip(1))
    second = await dg.put_object(Bucket=bucket, Key="e/b.zip", Body=release_zip(2))
    assert second["DeltaGliderInfo"]["StoredAs"] == "delta"
    resp = await dg.get_object(Bucket=bucket, Key="e/empty.zip")
    assert await resp["Body"].read() == b""


async def test_eligible_key_too_long_for_a_delta_name_is_stored_directly(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str
) -> None:
    await dg.put_object(Bucket=bucket, Key="long/base.zip", Body=release_zip(1))
    # Segments under 255 bytes: SeaweedFS limits each path segment like a filesystem.
    folders = "long/" + ("f" * 200 + "/") * 4
    key = folders + "n" * (1020 - len(folders) - len(".zip")) + ".zip"
    assert len(key) == 1020
    resp = await dg.put_object(Bucket=bucket, Key=key, Body=release_zip(2))
    assert resp["DeltaGliderInfo"]["StoredAs"] == "direct"
    deep = ("d" * 200 + "/") * 5 + "dddddd/a.zip"  # its reference.bin would not fit either
    resp = await dg.put_object(Bucket=bucket, Key=deep, Body=release_zip(3))
    assert resp["DeltaGliderInfo"]["StoredAs"] == "direct"
    keys = stored_keys(raw, bucket)
    assert sorted(k for k in keys if k.endswith("reference.bin")) == ["long/reference.bin"]
    resp = await dg.get_object(Bucket=bucket, Key=key)
    assert await resp["Body"].read() == release_zip(2)


async def test_verify_without_a_recorded_sha256_is_not_verified(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str
) -> None:
    raw.put_object(Bucket=bucket, Key="plain/x.bin", Body=b"foreign")
    result = await dg.verify(f"s3://{bucket}/plain/x.bin")
    assert not result.valid and "SHA-256" in result.message


async def test_dot_segments_are_sent_as_they_are(moto: LocalS3, tmp_path: Path) -> None:
    """moto stores ``q/../w.zip.delta`` literally; the fast path must not ask for a decoy."""
    from ..conftest import boto

    raw = boto(moto)
    bucket = "dots-" + os.urandom(4).hex()
    raw.create_bucket(Bucket=bucket)
    meta = {"dg-file-size": "111", "dg-ref-key": "reference.bin", "dg-file-sha256": "0" * 64}
    raw.put_object(Bucket=bucket, Key="q/../w.zip.delta", Body=b"d", Metadata=meta)
    raw.put_object(
        Bucket=bucket, Key="w.zip.delta", Body=b"d", Metadata={**meta, "dg-file-size": "222"}
    )
    async with make_client(moto, tmp_path / "c") as dg:
        page = await dg.list_objects_v2(Bucket=bucket, Prefix="q/", FetchMetadata=True)
    assert [(e["Key"], e["Size"]) for e in page["Contents"]] == [("q/../w.zip", 111)]


async def test_cache_on_a_full_filesystem_degrades_to_reading_without_it(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    big_v1 = release_zip(1, files=40, file_size=80 << 10)
    big_v2 = release_zip(2, files=40, file_size=80 << 10)
    async with make_client(s3, tmp_path / "writer") as writer:
        await writer.put_object(Bucket=bucket, Key="c/v1.zip", Body=big_v1)
        await writer.put_object(Bucket=bucket, Key="c/v2.zip", Body=big_v2)
    with small_tmpfs(tmp_path / "tiny") as tiny:
        assert await read_fresh(s3, tiny / "cache", bucket, "c/v2.zip") == big_v2
    # An entry that became a directory is dropped and the read still works.
    cache = tmp_path / "reader"
    assert await read_fresh(s3, cache, bucket, "c/v2.zip") == big_v2
    (entry,) = cache.glob("*/*/*.dgc")
    entry.unlink()
    entry.mkdir()
    (entry / "junk").write_bytes(b"x")
    assert await read_fresh(s3, cache, bucket, "c/v2.zip") == big_v2


async def test_missing_key_stays_not_found(dg: AsyncDeltaGliderClient, bucket: str) -> None:
    with pytest.raises(NotFoundError):
        await dg.get_object(Bucket=bucket, Key="nothing/here.zip")


# ---------------------------------------------------------------- randomized soak
def test_soak_concurrent_writers_and_deleters_across_processes(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    workers, ops = 4, 50
    repo = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.soak_worker",
                s3.endpoint_url,
                s3.access_key,
                s3.secret_key,
                bucket,
                str(seed),
                str(ops),
                str(tmp_path / f"cache-{seed}"),
                str(tmp_path / f"log-{seed}.jsonl"),
            ],
            cwd=repo,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(1, workers + 1)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    records = [
        json.loads(line)
        for seed in range(1, workers + 1)
        for line in (tmp_path / f"log-{seed}.jsonl").read_text().splitlines()
    ]
    assert len(records) == workers * ops
    assert sum(r["ok"] for r in records) > workers * ops // 2

    async def check() -> None:
        async with make_client(s3, tmp_path / "checker") as dg:
            for seed in range(1, workers + 1):
                resp = await dg.get_object(Bucket=bucket, Key=f"soak/final-{seed}.zip")
                assert await resp["Body"].read() == release_zip(1, seed=seed)
            for key in ("soak/a.zip", "soak/b.zip", "soak/c.zip"):
                mine = sorted((r for r in records if r["key"] == key), key=lambda r: r["end"])
                written = {r["body"] for r in mine if r["ok"] and r["op"] != "delete"}
                try:
                    resp = await dg.get_object(Bucket=bucket, Key=key)
                    data: bytes | None = await resp["Body"].read()
                except NotFoundError:
                    data = None
                if data is not None:  # byte-exact, and one of the bodies written there
                    assert any(data == release_zip(b % 50 + 1, seed=b) for b in written), key
                last = mine[-1] if mine else None
                if last and last["ok"] and not any(r["end"] > last["start"] for r in mine[:-1]):
                    # Nothing overlapped the last operation: its outcome is what is stored.
                    if last["op"] == "delete":
                        assert data is None, key
                    else:
                        b = last["body"]
                        assert data == release_zip(b % 50 + 1, seed=b), key

    anyio.run(check)
    assert_no_orphan_delta(raw, bucket)
