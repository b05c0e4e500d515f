"""Pure core: delta spaces, key rules, metadata dialects, ratio policy.  No I/O, no server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deltaglider_async import InvalidArgumentError, ReservedNameError
from deltaglider_async._core.metadata import (
    MetaKind,
    decode_name,
    delta_metadata,
    direct_metadata,
    encode_name,
    parse_metadata,
    reference_metadata,
)
from deltaglider_async._core.policy import (
    compress_added_bytes,
    delta_budget,
    keep_delta,
    parse_max_ratio,
)
from deltaglider_async._core.spaces import (
    StoredKind,
    check_logical_key,
    classify,
    is_eligible,
    parse_s3_url,
    reference_number,
    safe_local_relpath,
    snapshot_key,
    space_of,
    under_prefix,
    upload_key,
)
from deltaglider_async._core.stats import Listing, StoredObject, compute_stats

SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.mark.parametrize(
    ("key", "space"),
    [("releases/app/app-1.2.zip", "releases/app/"), ("app.zip", ""), ("a/b/c/d.jar", "a/b/c/")],
)
def test_space_of(key: str, space: str) -> None:
    assert space_of(key) == space


@pytest.mark.parametrize(
    ("name", "eligible"),
    [
        ("a.zip", True), ("A.ZIP", True), ("x.tar.gz", True), ("x.whl", True), ("db.sql", True),
        ("notes.txt", False), ("x.sha256", False), ("zip", False), (".zip", False),
        ("dir.zip/readme", False),
    ],
)  # fmt: skip
def test_eligibility(name: str, eligible: bool) -> None:
    assert is_eligible(name) is eligible


def test_classify_stored_keys() -> None:
    assert classify("a/reference.bin") == (StoredKind.REFERENCE, "")
    assert classify("a/x.zip.delta") == (StoredKind.DELTA, "a/x.zip")
    assert classify("a/.delta") == (StoredKind.DIRECT, "a/.delta")
    assert classify(".deltaglider/stats_quick.json") == (StoredKind.INTERNAL, "")
    assert classify("a/x.txt") == (StoredKind.DIRECT, "a/x.txt")
    assert classify("a/reference-2.bin") == (StoredKind.REFERENCE, "")


@pytest.mark.parametrize(
    ("key", "number"),
    [
        ("a/reference.bin", 1), ("reference-2.bin", 2), ("a/b/reference-117.bin", 117),
        ("a/reference-1.bin", None), ("a/reference-0.bin", None), ("a/reference-02.bin", None),
        ("a/reference-2.bin.delta", None), ("a/my-reference-2.bin", None),
        ("a/reference-.bin", None), ("a/reference-2.zip", None),
    ],
)  # fmt: skip
def test_reference_numbers(key: str, number: int | None) -> None:
    assert reference_number(key) == number
    if number is not None:
        assert snapshot_key(space_of(key), number) == key


def test_snapshot_names_are_reserved() -> None:
    with pytest.raises(ReservedNameError, match="reserved"):
        check_logical_key("a/reference-3.bin")
    check_logical_key("a/reference-03.bin")  # not a name we write


def test_stats_count_every_reference_of_a_space() -> None:
    listing = Listing()
    for key, size in [
        ("a/reference.bin", 100), ("a/reference-2.bin", 80), ("a/x-1.zip.delta", 5),
        ("a/x-2.zip.delta", 6), ("b/reference.bin", 50), ("b/reference-2.bin", 40),
        ("c.txt", 7),
    ]:  # fmt: skip
        listing.add(StoredObject(key, size, "e"))
    stats = compute_stats(
        "bkt", "detailed", listing, {"a/x-1.zip.delta": 100, "a/x-2.zip.delta": 90}
    )
    assert stats.compressed_size == 7 + 100 + 80 + 5 + 6
    assert stats.total_size == 7 + 100 + 90
    assert [o.key for o in stats.orphaned_references] == ["b/reference-2.bin", "b/reference.bin"]
    assert listing.stored_bytes == 7 + 100 + 80 + 5 + 6 + 50 + 40


@pytest.mark.parametrize(
    "key", ["reference.bin", "a/reference.bin", "a/b.zip.delta", ".deltaglider/x"]
)
def test_reserved_names(key: str) -> None:
    with pytest.raises(ReservedNameError):
        check_logical_key(key)


@pytest.mark.parametrize("key", ["", "dir/", "x" * 1100])
def test_invalid_keys(key: str) -> None:
    with pytest.raises(InvalidArgumentError):
        check_logical_key(key)


def test_s3_urls_and_upload_keys() -> None:
    url = parse_s3_url("s3://bucket/app/")
    assert url.is_prefix and upload_key(url, "f.zip") == "app/f.zip"
    assert upload_key(parse_s3_url("s3://bucket/app/renamed.zip"), "f.zip") == "app/renamed.zip"
    assert upload_key(parse_s3_url("s3://bucket"), "f.zip") == "f.zip"
    for bad in ("bucket/key", "s3://", "s3:///key", "s3://UPPER/x", "http://b/k"):
        with pytest.raises(InvalidArgumentError):
            parse_s3_url(bad)


@pytest.mark.parametrize(
    "key", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/..", "..", "a\\b"]
)
def test_keys_never_escape_the_destination(key: str) -> None:
    with pytest.raises(InvalidArgumentError):
        safe_local_relpath(key)


def test_safe_relpath_keeps_normal_keys() -> None:
    assert safe_local_relpath("a/b/c.zip") == "a/b/c.zip"


def test_prefix_matching_on_whole_segments() -> None:
    assert under_prefix("rel/a.zip", "rel")
    assert under_prefix("rel/a.zip", "rel/")
    assert not under_prefix("release-notes/a.zip", "rel")
    assert not under_prefix("release-notes/a.zip", "rel/")
    assert under_prefix("anything", "")


def test_metadata_round_trip_all_kinds() -> None:
    ref = parse_metadata(
        reference_metadata(tool="t", source_name="a.zip", sha256=SHA_A, created_at="c"),
        "x/reference.bin",
    )
    assert ref.kind is MetaKind.REFERENCE and ref.file_sha256 == SHA_A
    delta = parse_metadata(
        delta_metadata(tool="t", original_name="b.zip", sha256=SHA_B, size=10, created_at="c",
                       ref_key="x/reference.bin", ref_sha256=SHA_A, delta_size=3, zero_diff=False,
                       format_fields={}),
        "x/b.zip.delta",
    )  # fmt: skip
    assert delta.kind is MetaKind.DELTA
    assert (delta.file_size, delta.ref_key, delta.ref_sha256) == (10, "x/reference.bin", SHA_A)
    direct = parse_metadata(
        direct_metadata(tool="t", original_name="n.txt", sha256=SHA_B, size=5, created_at="c"),
        "x/n.txt",
    )
    assert direct.kind is MetaKind.DIRECT and direct.file_size == 5
    assert parse_metadata({}, "x/plain.bin").kind is MetaKind.PLAIN


def test_every_dialect_is_read() -> None:
    v5 = {"file_sha256": SHA_B, "ref_key": "a/reference.bin", "file_size": "7", "ref_sha256": SHA_A}
    underscored = {"dg_file_sha256": SHA_B, "dg_ref_key": "a/reference.bin", "dg_file_size": "7"}
    dashed = {"file-sha256": SHA_B, "ref-key": "a/reference.bin", "file-size": "7"}
    upper = {"DG-FILE-SHA256": SHA_B.upper(), "DG-REF-KEY": "a/reference.bin", "DG-FILE-SIZE": "7"}
    proxy = {"dg-ref-path": "reference.bin", "dg-file-sha256": SHA_B, "dg-file-size": "7",
             "dg-note": "delta"}  # fmt: skip
    for meta in (v5, underscored, dashed, upper, proxy):
        parsed = parse_metadata(meta, "a/x.zip.delta")
        assert parsed.kind is MetaKind.DELTA, meta
        assert parsed.ref_key == "a/reference.bin"
        assert parsed.file_sha256 == SHA_B and parsed.file_size == 7
    passthrough = parse_metadata({"dg-note": "passthrough"}, "a/x.txt")
    assert passthrough.kind is MetaKind.DIRECT
    bad = parse_metadata({"dg-file-sha256": "nothex", "dg-file-size": "-3"}, "a/x.txt")
    assert bad.file_sha256 is None and bad.file_size is None


@given(st.text(min_size=1, max_size=40))
def test_names_survive_metadata_encoding(name: str) -> None:
    encoded = encode_name(name)
    assert encoded.isascii() and encoded.isprintable()
    assert decode_name(encoded) == name


def test_plain_names_stay_readable() -> None:
    assert encode_name("app-1.2.zip") == "app-1.2.zip"
    assert decode_name(encode_name("100%25 done.zip")) == "100%25 done.zip"


def test_ratio_policy() -> None:
    assert parse_max_ratio(None, {}) == 0.5
    assert parse_max_ratio(None, {"DG_MAX_RATIO": "0.3"}) == 0.3
    assert parse_max_ratio(0.8, {"DG_MAX_RATIO": "0.3"}) == 0.8
    for bad in ("x", "1.5", -0.1):
        with pytest.raises(InvalidArgumentError):
            parse_max_ratio(bad, {})
    assert keep_delta(50, 100, 0.5) and not keep_delta(51, 100, 0.5)
    assert keep_delta(0, 0, 0.5)
    assert delta_budget(1000, 0.5) == 500


def test_added_bytes_of_compressed_formats_skip_secondary_compression() -> None:
    import gzip
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.txt", "hello " * 100)
    for compressed in (
        buf.getvalue(),
        gzip.compress(b"x" * 100),
        b"BZh91AY&SY",
        b"\xfd7zXZ\x00\x00",
    ):
        assert not compress_added_bytes(compressed[:6])
    for plain in (b"", b"PK", b"ustar\x00", b"\x7fELF\x02\x01", b"plain text"):
        assert compress_added_bytes(plain)


def test_transfer_config_rejects_impossible_values() -> None:
    from deltaglider_async import TransferConfig

    MiB = 1 << 20
    for bad in (
        {"part_size": 4 * MiB},
        {"range_size": MiB - 1},
        {"multipart_threshold": 6 * MiB, "part_size": 8 * MiB},
        {"max_concurrency": 0},
        {"max_files": 0},
    ):
        with pytest.raises(InvalidArgumentError):
            TransferConfig(**bad)  # type: ignore[arg-type]
    config = TransferConfig()
    assert config.range_size == 16 * MiB
    assert config.part_size_for(1 << 40) * 10_000 >= 1 << 40


def test_writable_keys_refuse_spellings_servers_alias() -> None:
    from deltaglider_async._core.spaces import check_writable_key, fits_delta_layout

    for key in ("a//b.zip", "a/./b.zip", "a/../b.zip", "/a.zip", "a\\b.zip", "./a.zip"):
        with pytest.raises(InvalidArgumentError):
            check_writable_key(key)
    check_writable_key("a/b.c/..d.zip")  # dots inside a segment are fine
    assert fits_delta_layout("a/" + "x" * 1000 + ".zip")
    assert not fits_delta_layout("a/" + "x" * 1016 + ".zip")  # .delta name > 1024 bytes
    assert not fits_delta_layout("d" * 1012 + "/a.zip")  # reference.bin > 1024 bytes


def test_twin_rules() -> None:
    from datetime import UTC, datetime, timedelta

    from deltaglider_async._core.twins import newer_copy

    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert newer_copy((now, "b"), (now - timedelta(seconds=1), "z")) == "delta"
    assert newer_copy((now, "a"), (now, "b")) == "direct"  # same second: created-at decides
    assert newer_copy((now, "a"), (now, "a")) == "delta"
    assert newer_copy((None, None), (now, None)) == "direct"


def test_delta_formats_are_chosen_by_name_and_read_by_metadata() -> None:
    from deltaglider_async import IntegrityError
    from deltaglider_async._formats import DEFAULT_FORMAT, format_named, format_of

    assert format_named("VCDIFF").name == DEFAULT_FORMAT == "vcdiff"
    assert format_named(" Archive ").name == "archive"
    with pytest.raises(InvalidArgumentError, match="known: archive, vcdiff"):
        format_named("archive-v9")
    plain = parse_metadata({"dg-ref-key": "x/reference.bin"}, "x/a.zip.delta")
    assert format_of(plain, "s3://b/x/a.zip").name == "vcdiff"  # absent = deltaglider's format
    future = parse_metadata(
        {"dg-ref-key": "x/reference.bin", "dg-delta-format": "zstd-dict"}, "x/a.zip.delta"
    )
    with pytest.raises(IntegrityError, match=r"'zstd-dict'.*upgrade"):
        format_of(future, "s3://b/x/a.zip")


def test_samples_spread_over_the_versions_first_and_last_included() -> None:
    from deltaglider_async._core.stats import sample_evenly

    assert sample_evenly(list(range(5)), 8) == [0, 1, 2, 3, 4]
    assert sample_evenly(list(range(10)), 3) == [0, 4, 9]  # round(4.5) is 4
    assert sample_evenly(list(range(10)), 1) == [0]
    assert sample_evenly([], 3) == []


def test_a_space_estimate_projects_the_unsampled_objects_by_the_samples_ratio() -> None:
    from deltaglider_async._core.stats import FormatEstimate, StoredObject, project_space

    objects = [StoredObject(f"p/v{i}.zip.delta", size, "") for i, size in enumerate([100, 300, 50])]
    space = project_space(
        "p/",
        objects,
        {"p/v0.zip.delta": 10, "p/v1.zip.delta": 30},
        reference_now=1_000,
        reference_then=400,
        fell_back=1,
    )
    assert space.objects == 3 and space.sampled == 2 and space.fell_back == 1
    assert space.stored_size == 1_450
    assert space.estimated_size == 400 + 10 + 30 + 5  # the unsampled one shrinks 10x too
    assert round(space.ratio, 2) == round(1_450 / 445, 2)
    assert (space.reference_size, space.estimated_reference_size) == (1_000, 400)
    whole = FormatEstimate("b", "archive", 2, (space, space))
    assert (whole.stored_size, whole.estimated_size) == (2_900, 890)
    assert whole.as_dict()["spaces"][0]["ratio"] == round(1_450 / 445, 3)
    nothing = project_space("q/", objects, {}, reference_now=0, reference_then=0)
    assert nothing.estimated_size == nothing.stored_size == 450
