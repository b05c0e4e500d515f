"""``--delta-format`` on the CLI: cp, sync and migrate write archive-format deltas; migrate
converts a deltaglider prefix in place, resumably, and a re-run has nothing to do."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from tests.localserver import LocalS3

from ..artifacts import deflated_zip
from ..conftest import boto
from .test_cli import run


def _formats(seaweed: LocalS3, bucket: str, prefix: str) -> dict[str, str]:
    client = boto(seaweed)
    found = {}
    for obj in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        if obj["Key"].endswith(".delta"):
            meta = client.head_object(Bucket=bucket, Key=obj["Key"])["Metadata"]
            found[obj["Key"]] = meta.get("dg-delta-format", "vcdiff")
    return found


def test_cp_sync_and_migrate_with_the_archive_format(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, tmp_path: Path
) -> None:
    dist = tmp_path / "wheels"
    dist.mkdir()
    for v in (1, 2, 3):
        (dist / f"pkg-1.{v}.whl").write_bytes(deflated_zip(v))
    bad = run(env, "cp", str(dist / "pkg-1.1.whl"), f"s3://{s3bucket}/x/", "--delta-format", "rar")
    assert bad.returncode == 2 and "--delta-format must be one of" in bad.stderr
    for v in (1, 2):
        done = run(
            env,
            "cp",
            str(dist / f"pkg-1.{v}.whl"),
            f"s3://{s3bucket}/cp/",
            "--delta-format",
            "archive",
        )
        assert done.returncode == 0, done.stderr
    assert set(_formats(seaweed, s3bucket, "cp/").values()) == {"archive"}
    synced = run(env, "sync", str(dist), f"s3://{s3bucket}/sync/", "--delta-format", "archive")
    assert synced.returncode == 0, synced.stderr
    assert set(_formats(seaweed, s3bucket, "sync/").values()) == {"archive"}

    # A prefix in the default format, converted in place.
    assert run(env, "sync", str(dist), f"s3://{s3bucket}/old/").returncode == 0
    assert set(_formats(seaweed, s3bucket, "old/").values()) == {"vcdiff"}
    url = f"s3://{s3bucket}/old/"
    estimated = run(env, "stats", url, "--estimate-format", "archive", "--sample", "2", "--json")
    assert estimated.returncode == 0, estimated.stderr
    estimate = json.loads(estimated.stdout)["format_estimate"]
    assert estimate["delta_format"] == "archive" and estimate["sample"] == 2
    [space] = estimate["spaces"]
    assert space["space"] == "old/" and space["objects"] == 3 and space["sampled"] == 2
    assert 0 < space["estimated_size"] < space["stored_size"], space
    text = run(env, "stats", url, "--estimate-format", "archive")
    assert text.returncode == 0, text.stderr
    assert "In the archive format" in text.stdout and "old/: " in text.stdout, text.stdout
    wrong = run(env, "stats", url, "--estimate-format", "rar")
    assert wrong.returncode == 2 and "--estimate-format must be one of" in wrong.stderr
    converted = run(env, "migrate", url, url, "--delta-format", "archive", "--json")
    assert converted.returncode == 0, converted.stderr
    records = [json.loads(line) for line in converted.stdout.splitlines()][:-1]
    assert len(records) == 3
    # The first file is the reference: its zero-diff delta is re-encoded too.
    assert set(_formats(seaweed, s3bucket, "old/").values()) == {"archive"}
    # ... and the reference is stored again as a new space's would be: compact.
    ref = boto(seaweed).head_object(Bucket=s3bucket, Key="old/reference.bin")
    assert ref["Metadata"]["dg-reference-form"] == "archive"
    again = run(env, "migrate", url, url, "--delta-format", "archive")
    assert again.returncode == 0 and again.stdout == "", again.stdout
    # Without --delta-format, migrate converts nothing: references stay as they are too.
    assert run(env, "migrate", url, url).returncode == 0
    ref = boto(seaweed).head_object(Bucket=s3bucket, Key="old/reference.bin")
    assert ref["Metadata"]["dg-reference-form"] == "archive"
    out = tmp_path / "back"
    assert run(env, "cp", "-r", url, str(out)).returncode == 0
    for v in (1, 2, 3):
        assert (out / f"pkg-1.{v}.whl").read_bytes() == deflated_zip(v)
    assert run(env, "verify", f"s3://{s3bucket}/old/pkg-1.3.whl").returncode == 0


def test_an_archive_the_budget_cannot_expand_is_stored_as_vcdiff_and_says_why(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, tmp_path: Path
) -> None:
    for v in (1, 2):
        with zipfile.ZipFile(tmp_path / f"big-{v}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("zeros.bin", bytes(100 << 20))  # 100 MiB that deflate to 100 KB
            zf.writestr("version.txt", f"{v}\n")
    tight = {**env, "DG_MEMORY_LIMIT": "128M"}
    lines = []
    for v in (1, 2):
        args = (str(tmp_path / f"big-{v}.zip"), f"s3://{s3bucket}/big/", "--show-savings")
        done = run(tight, "cp", *args, "--delta-format", "archive")
        assert done.returncode == 0, done.stderr
        lines.append(done.stdout)
    assert "archive format not used: its expansion needs" in lines[1], lines
    assert "DG_MEMORY_LIMIT" in lines[1]
    assert set(_formats(seaweed, s3bucket, "big/").values()) == {"vcdiff"}
    reference = boto(seaweed).get_object(Bucket=s3bucket, Key="big/reference.bin")["Body"]
    assert reference.read(4) == b"PK\x03\x04"  # stored as it is, not in compact form
