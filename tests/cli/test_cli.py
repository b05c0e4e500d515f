"""The installed `deltaglider-async` console script, run as a subprocess against SeaweedFS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from deltaglider_async import __version__
from tests.localserver import LocalS3

from ..artifacts import release_zip
from ..conftest import boto

SCRIPT = str(Path(sys.executable).with_name("deltaglider-async"))


def run(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def stored(seaweed: LocalS3, bucket: str) -> list[str]:
    resp = boto(seaweed).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in resp.get("Contents", []))


def test_cp_ls_stats_verify_happy_path(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, releases: Path, tmp_path: Path
) -> None:
    up = run(env, "cp", "-r", str(releases), f"s3://{s3bucket}/rel/", "--show-savings")
    assert up.returncode == 0, up.stderr
    lines = up.stdout.splitlines()
    assert len(lines) == 5
    assert any("app-2.zip (delta" in line and "% saved)" in line for line in lines)
    assert "5 file(s)" in up.stderr and "saved" in up.stderr  # the summary
    assert any(line.endswith("notes.txt (direct 5 Bytes)") for line in lines)
    assert "rel/reference.bin" in stored(seaweed, s3bucket)
    assert "rel/sub/reference.bin" in stored(seaweed, s3bucket)

    listing = run(env, "ls", f"s3://{s3bucket}/rel/", "--summarize")
    assert listing.returncode == 0
    assert "PRE sub/" in listing.stdout
    assert f" {len(release_zip(2))} app-2.zip" in listing.stdout
    assert "reference.bin" not in listing.stdout and ".delta" not in listing.stdout
    assert "Total Objects: 4" in listing.stdout

    stats = run(env, "stats", f"s3://{s3bucket}", "--detailed", "--json")
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["object_count"] == 5 and data["delta_spaces"] == 2

    assert run(env, "verify", f"s3://{s3bucket}/rel/app-3.zip").returncode == 0
    out = tmp_path / "got"
    down = run(env, "cp", f"s3://{s3bucket}/rel/app-3.zip", f"{out}/")
    assert down.returncode == 0, down.stderr
    assert (out / "app-3.zip").read_bytes() == release_zip(3)
    back = run(env, "cp", "-r", f"s3://{s3bucket}/rel/", str(tmp_path / "mirror"))
    assert back.returncode == 0
    assert (tmp_path / "mirror" / "sub" / "lib-1.jar").read_bytes() == release_zip(7)


def test_json_lines_and_summary(env: dict[str, str], s3bucket: str, releases: Path) -> None:
    result = run(env, "cp", "-r", str(releases), f"s3://{s3bucket}/j/", "--json")
    assert result.returncode == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    ops, summary = records[:-1], records[-1]["summary"]
    assert len(ops) == 5 and all(r["ok"] and r["op"] == "upload" for r in ops)
    assert summary["files"] == 5 and summary["failed"] == 0
    assert summary["stored_bytes"] < summary["transferred_bytes"]
    first = next(r for r in ops if r["key"].endswith("app-1.zip"))
    assert first["reference_created"] is True and first["savings"] == 0.0


def test_dryrun_changes_nothing(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, releases: Path
) -> None:
    result = run(env, "cp", "-r", str(releases), f"s3://{s3bucket}/d/", "--dryrun")
    assert result.returncode == 0
    assert result.stdout.count("(dryrun) upload:") == 5
    assert stored(seaweed, s3bucket) == []
    run(env, "cp", str(releases / "app-1.zip"), f"s3://{s3bucket}/d/")
    before = stored(seaweed, s3bucket)
    assert run(env, "rm", "-r", f"s3://{s3bucket}/d/", "--dryrun").returncode == 0
    assert run(env, "sync", str(releases), f"s3://{s3bucket}/d/", "--dryrun").returncode == 0
    assert stored(seaweed, s3bucket) == before


def test_filters_follow_command_line_order(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, releases: Path
) -> None:
    only_zips = run(
        env,
        "cp",
        "-r",
        str(releases),
        f"s3://{s3bucket}/a/",
        "--exclude",
        "*",
        "--include",
        "*.zip",
        "--exclude",
        "app-2*",
    )
    assert only_zips.returncode == 0
    assert sorted(
        line.split(" to ")[1].split(" ")[0] for line in only_zips.stdout.splitlines()
    ) == [
        f"s3://{s3bucket}/a/app-1.zip",
        f"s3://{s3bucket}/a/app-3.zip",
    ]
    reversed_order = run(
        env,
        "cp",
        "-r",
        str(releases),
        f"s3://{s3bucket}/b/",
        "--include=*.zip",
        "--exclude=*",
        "--dryrun",
    )
    assert reversed_order.stdout == ""


def test_rm_and_sync_delete_keep_internal_objects(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, releases: Path
) -> None:
    assert run(env, "sync", str(releases), f"s3://{s3bucket}/").returncode == 0
    (releases / "app-3.zip").unlink()
    result = run(env, "sync", str(releases), f"s3://{s3bucket}/", "--delete")
    assert result.returncode == 0, result.stderr
    assert f"delete: s3://{s3bucket}/app-3.zip" in result.stdout
    keys = stored(seaweed, s3bucket)
    assert "reference.bin" in keys and "app-3.zip.delta" not in keys
    again = run(env, "sync", str(releases), f"s3://{s3bucket}/", "--delete")
    assert again.stdout == ""  # nothing changed: deltas compare by logical size and mtime
    assert run(env, "rm", "-r", f"s3://{s3bucket}/").returncode == 0
    assert stored(seaweed, s3bucket) == []


def test_exit_codes_for_bad_input(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, tmp_path: Path
) -> None:
    cases: list[tuple[tuple[str, ...], int, str]] = [
        # aws-cli's codes: 1 for transfers that failed, 255 when the command cannot start
        (("cp", str(tmp_path / "missing.zip"), f"s3://{s3bucket}/x/"), 255, "does not exist"),
        (("cp", f"s3://{s3bucket}/missing.zip", str(tmp_path)), 1, "no such object"),
        (("cp", f"s3://{s3bucket}/missing.zip", str(tmp_path), "--json"), 1, ""),
        (("ls", "s3://no-such-bucket-cli/"), 255, "bucket does not exist"),
        (("stats", "no-such-bucket-cli"), 255, "bucket does not exist"),
        (("cp", "a", "b"), 255, "needs at least one s3:// URL"),
        (("cp", str(tmp_path), f"s3://{s3bucket}/"), 1, "--recursive"),
        (("ls", "s3://Bad_Bucket!"), 2, "invalid bucket"),
        (("frobnicate",), 2, "No such command"),
        (("cp", "--nope", "a", "b"), 255, "Unknown options: --nope"),
        (("verify", f"s3://{s3bucket}/missing.zip"), 1, "no such object"),
    ]
    for args, code, text in cases:
        result = run(env, *args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert text in result.stderr + result.stdout, (args, result.stderr)
        assert "Traceback" not in result.stderr, args


def test_version_is_printed_before_anything_else_runs(env: dict[str, str]) -> None:
    for args in (("--version",), ("--version", "ls", "s3://no-such-bucket/")):
        result = run({**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"deltaglider-async/{__version__} Python/3."), args


def test_unreachable_endpoint_and_bad_credentials(env: dict[str, str], s3bucket: str) -> None:
    down = run({**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "ls", f"s3://{s3bucket}/")
    assert down.returncode == 255 and "cannot reach" in down.stderr
    bad = run({**env, "AWS_SECRET_ACCESS_KEY": "wrong"}, "ls", f"s3://{s3bucket}/")
    assert bad.returncode == 255 and "Traceback" not in bad.stderr


def test_verify_mismatch_exits_1(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, releases: Path
) -> None:
    run(env, "cp", "-r", str(releases), f"s3://{s3bucket}/v/")
    client = boto(seaweed)
    meta = client.head_object(Bucket=s3bucket, Key="v/app-2.zip.delta")["Metadata"]
    other = client.get_object(Bucket=s3bucket, Key="v/app-3.zip.delta")["Body"].read()
    client.put_object(Bucket=s3bucket, Key="v/app-2.zip.delta", Body=other, Metadata=meta)
    result = run(env, "verify", f"s3://{s3bucket}/v/app-2.zip", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout.splitlines()[0])["valid"] is False


def _own_temp_dirs(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"dg-async-{pid}-*"))


def _upload_in_progress(
    env: dict[str, str], client: Any, s3bucket: str, tmp_path: Path
) -> subprocess.Popen[str]:
    """A ``cp`` of 384 MiB (several seconds of multipart upload), once its upload has started."""
    before = len(client.list_multipart_uploads(Bucket=s3bucket).get("Uploads", []))
    big = tmp_path / "huge.img"
    with big.open("wb") as fh:
        for _ in range(48):
            fh.write(os.urandom(8 << 20))
    proc = subprocess.Popen(
        [SCRIPT, "cp", str(big), f"s3://{s3bucket}/big/"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(client.list_multipart_uploads(Bucket=s3bucket).get("Uploads", [])) > before:
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no multipart upload started: {proc.communicate()[1]}")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_or_terminate_during_upload_leaves_nothing(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, tmp_path: Path, sig: int, code: int
) -> None:
    client = boto(seaweed)
    proc = _upload_in_progress(env, client, s3bucket, tmp_path)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stored(seaweed, s3bucket) == []
    assert client.list_multipart_uploads(Bucket=s3bucket).get("Uploads", []) == []
    assert _own_temp_dirs(proc.pid) == []


def test_upload_a_killed_process_left_open_is_aborted_by_the_next_run(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, tmp_path: Path
) -> None:
    client = boto(seaweed)
    client.create_multipart_upload(Bucket=s3bucket, Key="big/not-ours.img")  # another tool's
    proc = _upload_in_progress(env, client, s3bucket, tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    result = run(env, "ls", f"s3://{s3bucket}/")  # any later run of this user on this machine
    assert result.returncode == 1, result.stderr  # nothing was stored: aws-cli's empty listing
    left = [u["Key"] for u in client.list_multipart_uploads(Bucket=s3bucket).get("Uploads", [])]
    assert left == ["big/not-ours.img"]
    assert list((tmp_path / "cache" / f"user-{os.getuid()}" / "uploads").glob("*.json")) == []


def test_terminate_during_download_leaves_no_partial_file(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, tmp_path: Path
) -> None:
    client = boto(seaweed)
    big = tmp_path / "served.img"
    with big.open("wb") as fh:
        for _ in range(16):  # long enough to be caught mid-way on a fast machine
            fh.write(os.urandom(8 << 20))
    client.upload_file(str(big), s3bucket, "big/served.img")
    target = tmp_path / "down"
    target.mkdir()
    (target / "served.img").write_bytes(b"the previous version")
    proc = subprocess.Popen(
        [SCRIPT, "cp", f"s3://{s3bucket}/big/served.img", str(target / "served.img")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the download writes its hidden part file
        if any(p.name.endswith(".dg-part") and p.stat().st_size for p in target.iterdir()):
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert [p.name for p in target.iterdir()] == ["served.img"]
    assert (target / "served.img").read_bytes() == b"the previous version"
    assert _own_temp_dirs(proc.pid) == []


def test_leftovers_of_a_killed_process_are_cleaned_up(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, tmp_path: Path
) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    leftover_tmp = Path(tempfile.mkdtemp(prefix=f"dg-async-{dead_pid}-"))
    (leftover_tmp / "delta").write_bytes(b"x" * 1000)
    boto(seaweed).put_object(Bucket=s3bucket, Key="k/app.zip", Body=b"zip")
    target = tmp_path / "app.zip"
    stale_part = tmp_path / ".app.zip.killed.dg-part"
    stale_part.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale_part, (old, old))
    fresh_part = tmp_path / ".app.zip.running.dg-part"  # another download, still writing
    fresh_part.write_bytes(b"busy")
    result = run(env, "cp", f"s3://{s3bucket}/k/app.zip", str(target))
    assert result.returncode == 0, result.stderr
    assert not leftover_tmp.exists()
    assert not stale_part.exists()
    assert fresh_part.exists()
    assert target.read_bytes() == b"zip"


def test_migrate_plain_prefix_into_delta_form_resumably(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str
) -> None:
    client = boto(seaweed)
    for i in range(1, 5):
        client.put_object(Bucket=s3bucket, Key=f"plain/app-{i}.zip", Body=release_zip(i))
    client.put_object(Bucket=s3bucket, Key="plain/readme.txt", Body=b"docs")
    dry = run(env, "migrate", f"s3://{s3bucket}/plain/", f"s3://{s3bucket}/packed/", "--dryrun")
    assert dry.returncode == 0 and dry.stdout.count("(dryrun) migrate:") == 5
    assert not [k for k in stored(seaweed, s3bucket) if k.startswith("packed/")]
    first = run(env, "migrate", f"s3://{s3bucket}/plain/", f"s3://{s3bucket}/packed/", "--json")
    assert first.returncode == 0, first.stderr
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert sorted(r["stored_as"] for r in records[:-1]) == ["delta"] * 4 + ["direct"]
    packed = [k for k in stored(seaweed, s3bucket) if k.startswith("packed/")]
    assert "packed/reference.bin" in packed and "packed/app-3.zip.delta" in packed
    again = run(env, "migrate", f"s3://{s3bucket}/plain/", f"s3://{s3bucket}/packed/")
    assert again.returncode == 0 and again.stdout == ""  # resumable: nothing left to do
    assert run(env, "verify", f"s3://{s3bucket}/packed/app-4.zip").returncode == 0


def test_sync_down_and_delete_local_extras(
    env: dict[str, str], s3bucket: str, releases: Path, tmp_path: Path
) -> None:
    assert run(env, "cp", "-r", str(releases), f"s3://{s3bucket}/mirror/").returncode == 0
    local = tmp_path / "local"
    local.mkdir()
    (local / "stale.zip").write_bytes(b"old build")
    first = run(env, "sync", f"s3://{s3bucket}/mirror/", str(local), "--delete")
    assert first.returncode == 0, first.stderr
    assert (local / "app-2.zip").read_bytes() == release_zip(2)
    assert (local / "sub" / "lib-1.jar").read_bytes() == release_zip(7)
    assert not (local / "stale.zip").exists()
    assert "delete:" in first.stdout
    again = run(env, "sync", f"s3://{s3bucket}/mirror/", str(local))
    assert again.returncode == 0 and again.stdout == ""  # logical sizes and mtimes match
    checksum = run(env, "sync", f"s3://{s3bucket}/mirror/", str(local), "--checksum")
    assert checksum.returncode == 0 and checksum.stdout == ""
    (local / "app-1.zip").write_bytes(release_zip(9))  # same size, other bytes
    changed = run(env, "sync", f"s3://{s3bucket}/mirror/", str(local), "--checksum")
    assert "app-1.zip" in changed.stdout
    assert (local / "app-1.zip").read_bytes() == release_zip(1)


def test_cp_from_stdin_and_to_stdout(env: dict[str, str], s3bucket: str) -> None:
    for version in (1, 2):
        up = subprocess.run(
            [SCRIPT, "cp", "--show-savings", "-", f"s3://{s3bucket}/pipe/app-{version}.zip"],
            input=release_zip(version),
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert up.returncode == 0, up.stderr
    assert b"(delta" in up.stdout
    down = subprocess.run(
        [SCRIPT, "cp", f"s3://{s3bucket}/pipe/app-2.zip", "-"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert down.returncode == 0 and down.stdout == release_zip(2)
    assert run(env, "cp", "-", f"s3://{s3bucket}/pipe/").returncode == 1


def test_shared_options_before_or_after_the_command_and_filters_in_process(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, releases: Path
) -> None:
    from typer.testing import CliRunner

    from deltaglider_cli.main import app

    bare = {k: v for k, v in env.items() if k != "AWS_ENDPOINT_URL"}
    before = run(bare, "--endpoint-url", seaweed.endpoint_url, "cp", str(releases / "app-1.zip"),
                 f"s3://{s3bucket}/g/")  # fmt: skip
    assert before.returncode == 0, before.stderr
    after = run(bare, "ls", f"s3://{s3bucket}/g/", "--endpoint-url", seaweed.endpoint_url)
    assert after.returncode == 0 and "app-1.zip" in after.stdout
    # Filters come from Click's own parse, so they hold when the app runs in-process too.
    result = CliRunner().invoke(
        app,
        [
            "cp",
            "-r",
            str(releases),
            f"s3://{s3bucket}/h/",
            "--dryrun",
            "--exclude",
            "*",
            "--include",
            "*.zip",
            "--exclude",
            "app-2*",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert sorted(line.rsplit("/", 1)[1] for line in result.output.splitlines()) == [
        "app-1.zip",
        "app-3.zip",
    ]


def test_endpoint_from_a_profile_is_addressed_path_style(
    seaweed: LocalS3, s3bucket: str, tmp_path: Path
) -> None:
    """botocore resolves the endpoint from the profile: still no ``bucket.127.0.0.1`` names."""
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile dgtest]\n"
        f"endpoint_url = {seaweed.endpoint_url}\n"
        f"aws_access_key_id = {seaweed.access_key}\n"
        f"aws_secret_access_key = {seaweed.secret_key}\n"
        "region = us-east-1\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("DG_")
    }
    env.update(AWS_CONFIG_FILE=str(config), DG_CACHE_DIR=str(tmp_path / "cache"))
    (tmp_path / "a.zip").write_bytes(release_zip(1))
    for args in (
        ("--profile", "dgtest", "cp", str(tmp_path / "a.zip"), f"s3://{s3bucket}/p/"),
        ("ls", f"s3://{s3bucket}/p/", "--profile", "dgtest"),
    ):
        result = run(env, *args)
        assert result.returncode == 0, (args, result.stderr)
    assert "a.zip" in result.stdout
