"""The archive delta format on a real server: opt-in, recorded per object, read without options,
byte-exact, smaller than vcdiff on compressed archives, and refused loudly by deltaglider 6.2."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import anyio
import pytest

from deltaglider_async import InvalidArgumentError
from tests.localserver import LocalS3

from ..artifacts import deflated_zip, release_tarball, release_zip
from ..conftest import boto, make_client
from ..oldtool import ensure_old_tool


async def _stored_bytes(server: LocalS3, bucket: str, prefix: str) -> int:
    resp = boto(server).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sum(o["Size"] for o in resp.get("Contents", []))


async def test_archive_series_round_trips_and_beats_vcdiff(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    series = {
        "whl": [deflated_zip(v) for v in range(1, 5)],
        "tgz": [release_tarball(v) for v in range(1, 4)],
        "nested": [deflated_zip(v, nested=True) for v in range(1, 4)],
    }
    ext = {"whl": "whl", "tgz": "tar.gz", "nested": "jar"}
    totals: dict[str, dict[str, int]] = {}
    for fmt in ("vcdiff", "archive"):
        async with make_client(s3, tmp_path / f"cache-{fmt}", delta_format=fmt) as dg:
            for name, versions in series.items():
                prefix = f"{fmt}/{name}/"
                for v, body in enumerate(versions, 1):
                    key = f"{prefix}pkg-1.{v}.{ext[name]}"
                    resp = await dg.put_object(Bucket=bucket, Key=key, Body=body)
                    info = resp["DeltaGliderInfo"]
                    if fmt == "archive":
                        assert info["StoredAs"] == "delta", (key, info)
                        assert info["DeltaFormat"] == "archive", (key, info)
                totals.setdefault(name, {})[fmt] = await _stored_bytes(s3, bucket, prefix)
    # Reads need no option, in a fresh client with an empty cache.
    async with make_client(s3, tmp_path / "cache-read") as dg:
        for name, versions in series.items():
            for v, body in enumerate(versions, 1):
                key = f"archive/{name}/pkg-1.{v}.{ext[name]}"
                got = await dg.get_object(Bucket=bucket, Key=key)
                assert await got["Body"].read() == body, key
                head = await dg.head_object(Bucket=bucket, Key=key)
                assert head["DeltaGliderInfo"]["DeltaFormat"] == "archive"
                assert (await dg.verify(f"s3://{bucket}/{key}")).valid
    raw = boto(s3).head_object(Bucket=bucket, Key="archive/whl/pkg-1.2.whl.delta")
    assert raw["Metadata"]["dg-delta-format"] == "archive"
    for name, sizes in totals.items():
        # The whole series, references included: members' contents delta far better.
        assert sizes["archive"] < sizes["vcdiff"], (name, sizes)
    assert totals["tgz"]["archive"] * 2 < totals["tgz"]["vcdiff"], totals["tgz"]


async def test_what_the_format_cannot_represent_falls_back_with_a_reason(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    async with make_client(s3, tmp_path / "cache", delta_format="archive") as dg:
        # A zip of stored members has nothing to expand: vcdiff already sees its contents.
        await dg.put_object(Bucket=bucket, Key="a/app-1.zip", Body=release_zip(1))
        second = await dg.put_object(Bucket=bucket, Key="a/app-2.zip", Body=release_zip(2))
        assert second["DeltaGliderInfo"]["DeltaFormat"] == "vcdiff"
        assert "no deflated member" in second["DeltaGliderInfo"]["Reason"]
        not_archive = os.urandom(1000) + release_zip(3)[1000:]
        await dg.put_object(Bucket=bucket, Key="b/app-1.zip", Body=b"plain bytes " * 500)
        fallback = await dg.put_object(Bucket=bucket, Key="b/app-2.zip", Body=b"plain byte! " * 500)
        info = fallback["DeltaGliderInfo"]
        assert info["StoredAs"] == "delta" and info["DeltaFormat"] == "vcdiff", info
        assert "archive format not used" in info["Reason"], info
        head = await dg.head_object(Bucket=bucket, Key="b/app-2.zip")
        assert "reference is not a zip or gzip archive" in head["DeltaGliderInfo"]["FormatNote"]
        await dg.put_object(Bucket=bucket, Key="a/app-3.zip", Body=not_archive)
        for key, body in [
            ("a/app-2.zip", release_zip(2)),
            ("a/app-3.zip", not_archive),
            ("b/app-2.zip", b"plain byte! " * 500),
        ]:
            got = await dg.get_object(Bucket=bucket, Key=key)
            assert await got["Body"].read() == body, key


async def test_deltaglider_62_refuses_archive_objects_loudly(
    seaweed: LocalS3, tmp_path: Path
) -> None:
    exe = ensure_old_tool() / "bin" / "deltaglider"
    bucket = f"old-{uuid.uuid4().hex[:10]}"
    boto(seaweed).create_bucket(Bucket=bucket)
    async with make_client(seaweed, tmp_path / "cache", delta_format="archive") as dg:
        await dg.put_object(Bucket=bucket, Key="rel/pkg-1.whl", Body=deflated_zip(1))
        await dg.put_object(Bucket=bucket, Key="rel/pkg-2.whl", Body=deflated_zip(2))
    out = tmp_path / "pkg-2.whl"
    env = {**os.environ, **seaweed.env(), "DG_SUPPRESS_DEPRECATION": "1"}
    result = await anyio.run_process(
        [str(exe), "cp", f"s3://{bucket}/rel/pkg-2.whl", str(out)],
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0, result.stdout.decode()
    # The space's reference is in compact form, which fails 6.2's SHA-256 check of it; a delta
    # against a raw reference would fail in xdelta3 on the magic (docs/wire-format.md).
    said = result.stdout.decode() + result.stderr.decode()
    assert "Reference SHA mismatch" in said or "not a VCDIFF input" in said, said
    # Never wrong bytes: no file, or (had it written one) not a different one.
    assert not out.exists() or out.read_bytes() == deflated_zip(2)

    # Converted in place to vcdiff, references included, the space is 6.2's again; and back.
    url = f"s3://{bucket}/rel/"
    for fmt, form in (("vcdiff", None), ("archive", "archive")):
        async with make_client(seaweed, tmp_path / f"cache-{fmt}", delta_format=fmt) as dg:
            steps = await dg.plan_migration(url, url, delta_format=fmt)
            assert all(r.ok for r in await dg.migrate(steps)), fmt
            assert await dg.reform_references(url) == ["rel/reference.bin"]
            assert await dg.reform_references(url) == []  # a re-run has nothing to do
        meta = boto(seaweed).head_object(Bucket=bucket, Key="rel/reference.bin")["Metadata"]
        assert meta.get("dg-reference-form") == form, meta
        if fmt == "vcdiff":
            got = await anyio.run_process(
                [str(exe), "cp", f"s3://{bucket}/rel/pkg-2.whl", str(out)],
                env=env,
                cwd=tmp_path,
                check=False,
            )
            assert got.returncode == 0, got.stdout.decode() + got.stderr.decode()
            assert out.read_bytes() == deflated_zip(2)
    # A client that cached nothing reads the space in its final form.
    async with make_client(seaweed, tmp_path / "cache-last") as dg:
        for v in (1, 2):
            got_obj = await dg.get_object(Bucket=bucket, Key=f"rel/pkg-{v}.whl")
            assert await got_obj["Body"].read() == deflated_zip(v)


@pytest.mark.parametrize("fmt", ["ARCHIVE", "archive "])
async def test_the_format_is_chosen_by_name_or_environment(
    s3: LocalS3, bucket: str, tmp_path: Path, fmt: str
) -> None:
    from deltaglider_async import create_client

    async with create_client(
        s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        env={"DG_DELTA_FORMAT": fmt, "DG_CACHE_DIR": str(tmp_path / "c")},
    ) as dg:
        await dg.put_object(Bucket=bucket, Key="e/pkg-1.whl", Body=deflated_zip(1))
        resp = await dg.put_object(Bucket=bucket, Key="e/pkg-2.whl", Body=deflated_zip(2))
    assert resp["DeltaGliderInfo"]["DeltaFormat"] == "archive"


async def test_estimate_format_predicts_what_a_space_would_store_and_writes_nothing(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    versions = [deflated_zip(v) for v in range(1, 6)]
    for fmt in ("vcdiff", "archive"):
        async with make_client(s3, tmp_path / f"cache-{fmt}", delta_format=fmt) as dg:
            for v, body in enumerate(versions, 1):
                await dg.put_object(Bucket=bucket, Key=f"{fmt}/pkg-1.{v}.whl", Body=body)
    before = boto(s3).list_objects_v2(Bucket=bucket, Prefix="vcdiff/")["Contents"]
    async with make_client(s3, tmp_path / "cache-estimate") as dg:
        estimate = await dg.estimate_format(bucket, "archive", prefix="vcdiff/", sample=3)
        already = await dg.estimate_format(bucket, "archive", prefix="archive/")
        back = await dg.estimate_format(bucket, "vcdiff", prefix="archive/", sample=1)
        with pytest.raises(InvalidArgumentError):
            await dg.estimate_format(bucket, "rar")
    assert boto(s3).list_objects_v2(Bucket=bucket, Prefix="vcdiff/")["Contents"] == before
    [space] = estimate.spaces
    assert (space.space, space.objects, space.sampled, space.fell_back) == ("vcdiff/", 5, 3, 0)
    assert space.stored_size == await _stored_bytes(s3, bucket, "vcdiff/")
    actual = await _stored_bytes(s3, bucket, "archive/")
    assert actual < space.stored_size
    assert abs(space.estimated_size - actual) <= 0.2 * actual, (space, actual)
    # The plain reference.bin, against the compact one a new space (or migrate) stores.
    assert space.reference_size > space.estimated_reference_size > 0
    # A space already in the format counts as it is stored; the way back is estimated too.
    assert already.spaces[0].estimated_size == already.spaces[0].stored_size == actual
    assert back.spaces[0].estimated_size > actual


async def test_a_release_that_no_longer_fits_starts_a_new_reference(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    """A file whose delta would be too large becomes the space's next reference instead of a
    whole object: later releases delta against it, each read is one reference fetch and one
    decode, and the references go with the space's last delta."""
    from deltaglider_async import ReservedNameError

    old = [deflated_zip(v) for v in (1, 2)]
    new = [deflated_zip(v, seed=99) for v in (1, 2, 3)]  # a rewrite: nothing in common
    keys = [f"s/pkg-1.{v}.whl" for v in (1, 2)] + [f"s/pkg-2.{v}.whl" for v in (1, 2, 3)]
    async with make_client(s3, tmp_path / "cache", delta_format="archive") as dg:
        infos = []
        for key, body in zip(keys, old + new, strict=True):
            resp = await dg.put_object(Bucket=bucket, Key=key, Body=body)
            infos.append(resp["DeltaGliderInfo"])
        refs = [info["ReferenceKey"] for info in infos]
        assert refs == ["s/reference.bin"] * 2 + ["s/reference-2.bin"] * 3, infos
        assert all(info["StoredAs"] == "delta" for info in infos), infos
        assert (
            infos[2]["ReferenceCreated"] and "new reference reference-2.bin" in infos[2]["Reason"]
        )
        assert infos[3]["StoredSize"] < len(new[1]) // 10, infos[3]
        raw = boto(s3).head_object(Bucket=bucket, Key="s/pkg-2.3.whl.delta")["Metadata"]
        assert raw["dg-ref-key"] == "s/reference-2.bin"
        listed = [
            o["Key"] for o in (await dg.list_objects_v2(Bucket=bucket, Prefix="s/"))["Contents"]
        ]
        assert listed == sorted(keys), listed  # references stay hidden
        stored = await _stored_bytes(s3, bucket, "s/")
        stats = await dg.bucket_stats(bucket, "detailed")
        assert stats.compressed_size == stored and stats.object_count == len(keys)
        (space,) = (await dg.estimate_format(bucket, "archive", prefix="s/")).spaces
        assert space.stored_size == space.estimated_size == stored, space
        with pytest.raises(ReservedNameError):
            await dg.put_object(Bucket=bucket, Key="s/reference-3.bin", Body=b"mine")
    async with make_client(s3, tmp_path / "fresh") as dg:  # no option, empty cache
        for key, body in zip(keys, old + new, strict=True):
            got = await dg.get_object(Bucket=bucket, Key=key)
            assert await got["Body"].read() == body, key
        # The first release's reference outlives the second's deltas, and both go with the last.
        await dg.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[2:]]})
        assert await _stored_keys(s3, bucket, "s/") == [
            "s/pkg-1.1.whl.delta",
            "s/pkg-1.2.whl.delta",
            "s/reference-2.bin",
            "s/reference.bin",
        ]
        for key in keys[:2]:
            await dg.delete_object(Bucket=bucket, Key=key)
        assert await _stored_keys(s3, bucket, "s/") == []


async def test_products_that_take_turns_in_a_space_each_keep_their_reference(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    """Two products released into one space: each release deltas against its own product's
    reference, not a new one per release."""
    turns = [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
    seeds = {"a": 11, "b": 99}
    async with make_client(s3, tmp_path / "cache", delta_format="archive") as dg:
        refs = []
        for product, v in turns:
            body = deflated_zip(v, seed=seeds[product])
            resp = await dg.put_object(Bucket=bucket, Key=f"t/{product}-1.{v}.whl", Body=body)
            refs.append(resp["DeltaGliderInfo"]["ReferenceKey"])
        assert refs == ["t/reference.bin", "t/reference-2.bin"] * 3, refs
        for product, v in turns:
            got = await dg.get_object(Bucket=bucket, Key=f"t/{product}-1.{v}.whl")
            assert await got["Body"].read() == deflated_zip(v, seed=seeds[product])


async def test_concurrent_puts_of_several_products_into_one_space_stay_readable(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    """Every put races for the next snapshot number at once: each lands as a delta against a
    reference that exists, or whole, and the space's references go with its objects."""
    bodies = {
        f"c/p{seed}-1.{v}.whl": deflated_zip(v, seed=seed) for seed in (11, 99, 5) for v in (1, 2)
    }
    async with make_client(s3, tmp_path / "cache", delta_format="archive") as dg:

        async def put(key: str) -> None:
            await dg.put_object(Bucket=bucket, Key=key, Body=bodies[key])

        async with anyio.create_task_group() as tg:
            for key in bodies:
                tg.start_soon(put, key)
    async with make_client(s3, tmp_path / "fresh") as dg:
        for key, body in bodies.items():
            got = await dg.get_object(Bucket=bucket, Key=key)
            assert await got["Body"].read() == body, key
        references = [k for k in await _stored_keys(s3, bucket, "c/") if "reference" in k]
        assert 2 <= len(references) <= len(bodies), references
        await dg.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in bodies]})
    assert await _stored_keys(s3, bucket, "c/") == []


async def test_migrating_to_the_default_format_removes_snapshots_no_delta_names(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    bodies = [deflated_zip(1), deflated_zip(1, seed=99), deflated_zip(2, seed=99)]
    keys = [f"m/pkg-{i}.whl" for i in range(3)]
    async with make_client(s3, tmp_path / "c1", delta_format="archive") as dg:
        for key, body in zip(keys, bodies, strict=True):
            await dg.put_object(Bucket=bucket, Key=key, Body=body)
    assert "m/reference-2.bin" in await _stored_keys(s3, bucket, "m/")
    url = f"s3://{bucket}/m/"
    async with make_client(s3, tmp_path / "c2", delta_format="vcdiff") as dg:
        await dg.migrate(await dg.plan_migration(url, url, delta_format="vcdiff"))
        await dg.reform_references(url)
        assert "m/reference-2.bin" not in await _stored_keys(s3, bucket, "m/")
        for key, body in zip(keys, bodies, strict=True):
            got = await dg.get_object(Bucket=bucket, Key=key)
            assert await got["Body"].read() == body, key


async def test_the_default_format_never_makes_a_second_reference(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    """deltaglider 6.2 knows one reference per space: a misfit is stored whole, as 6.2 would."""
    async with make_client(s3, tmp_path / "cache") as dg:
        await dg.put_object(Bucket=bucket, Key="v/pkg-1.whl", Body=deflated_zip(1))
        resp = await dg.put_object(Bucket=bucket, Key="v/pkg-2.whl", Body=deflated_zip(1, seed=99))
    assert resp["DeltaGliderInfo"]["StoredAs"] == "direct"
    assert await _stored_keys(s3, bucket, "v/") == [
        "v/pkg-1.whl.delta",
        "v/pkg-2.whl",
        "v/reference.bin",
    ]


async def _stored_keys(server: LocalS3, bucket: str, prefix: str) -> list[str]:
    resp = boto(server).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))


async def test_a_new_process_reads_the_form_the_cache_kept_instead_of_expanding_again(
    s3: LocalS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltaglider_async._formats import _document, archive

    versions = [deflated_zip(v, nested=True) for v in (1, 2, 3)]
    cache = tmp_path / "cache"
    async with make_client(s3, cache, delta_format="archive") as dg:
        for v, body in enumerate(versions):
            await dg.put_object(Bucket=bucket, Key=f"kept/app-{v}.jar", Body=body)
    head = boto(s3).head_object(Bucket=bucket, Key="kept/reference.bin")
    assert head["Metadata"]["dg-reference-form"] == "archive"

    def expanded_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("the reference was expanded again")

    with monkeypatch.context() as patched:
        patched.setattr(_document, "expand_reference", expanded_again)
        for where in (cache, tmp_path / "empty"):
            # what a new process starts with: the form kept in its cache, or, in an empty
            # cache, the compact reference whose rebuild gives the form too
            archive.ARCHIVE._forms.clear()
            async with make_client(s3, where) as dg:
                for v, body in enumerate(versions):
                    got = await dg.get_object(Bucket=bucket, Key=f"kept/app-{v}.jar")
                    assert await got["Body"].read() == body, where


async def test_a_first_put_counts_its_reference_as_stored(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    body = deflated_zip(1)
    source = tmp_path / "app-1.whl"
    source.write_bytes(body)
    async with make_client(s3, tmp_path / "cache", delta_format="archive") as dg:
        summary = await dg.upload(source, f"s3://{bucket}/counted/")
        info = (await dg.put_object(Bucket=bucket, Key="other/app-1.whl", Body=body))[
            "DeltaGliderInfo"
        ]
    listed = {
        o["Key"]: o["Size"] for o in boto(s3).list_objects_v2(Bucket=bucket).get("Contents", [])
    }
    reference = listed["counted/reference.bin"]
    assert reference < len(body)  # compact
    assert summary.reference_created and summary.reference_size == reference
    assert summary.stored_size == reference + listed["counted/app-1.whl.delta"]
    assert info["ReferenceCreated"] and info["ReferenceSize"] == listed["other/reference.bin"]
    assert info["StoredSize"] == listed["other/reference.bin"] + listed["other/app-1.whl.delta"]


async def test_a_bulk_upload_into_a_new_space_expands_its_reference_once(
    s3: LocalS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltaglider_async._formats import _document, archive

    expansions = []
    original = _document.expand_reference

    def counted(*args: object, **kwargs: object) -> _document.ReferenceExpansion:
        expansions.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_document, "expand_reference", counted)
    monkeypatch.setattr(archive, "expand_reference", counted)
    files = []
    for v in range(1, 7):
        path = tmp_path / f"app-1.{v}.jar"
        path.write_bytes(deflated_zip(v, nested=True))
        files.append((path, f"s3://{bucket}/bulk/"))
    async with make_client(s3, tmp_path / "cache", delta_format="archive") as dg:
        results = await dg.upload_many(files)
        assert all(r.error is None for r in results)
        for path, _ in files:
            got = await dg.get_object(Bucket=bucket, Key=f"bulk/{path.name}")
            assert await got["Body"].read() == path.read_bytes()
    # the reference's compaction made its form; the puts waiting for it took that one
    assert len(expansions) == 1


async def test_a_new_process_takes_the_members_an_earlier_get_deflated(
    s3: LocalS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deploy host's case: the members a get deflated are kept in its reference cache, so
    the next process's get of that release (or of the next one, which holds most of them) does
    not deflate them again."""
    from deltaglider_async._formats import _document, archive

    versions = [deflated_zip(v) for v in (1, 2)]
    async with make_client(s3, tmp_path / "uploader", delta_format="archive") as dg:
        for v, body in enumerate(versions):
            await dg.put_object(Bucket=bucket, Key=f"memo/app-{v}.whl", Body=body)

    def deflated(*args: object, **kwargs: object) -> None:
        raise AssertionError("deflated again")

    host = tmp_path / "host"
    for deflating in (True, False):
        archive.ARCHIVE._memos.clear()  # what a new process starts with
        with monkeypatch.context() as patched:
            if not deflating:
                for name in ("deflate_raw", "deflate_resume", "Deflater"):
                    patched.setattr(_document, name, deflated)
            async with make_client(s3, host) as dg:
                got = await dg.get_object(Bucket=bucket, Key="memo/app-1.whl")
                assert await got["Body"].read() == versions[1]
