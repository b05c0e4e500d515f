"""The CLI on hostile input: full filesystems, special files, odd keys and odd endpoints."""

from __future__ import annotations

import http.server
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.localserver import LocalS3

from ..artifacts import release_zip
from ..conftest import boto
from ..hooks import small_tmpfs
from .test_cli import run, stored


def test_cp_into_a_full_filesystem_exits_1_and_keeps_the_old_file(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, tmp_path: Path
) -> None:
    boto(seaweed).put_object(Bucket=s3bucket, Key="x/direct.bin", Body=os.urandom(3 << 20))
    with small_tmpfs(tmp_path / "small") as small:
        (small / "direct.bin").write_bytes(b"previous")
        result = run(env, "cp", f"s3://{s3bucket}/x/direct.bin", f"{small}/")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "No space left" in result.stderr and "Traceback" not in result.stderr
        assert (small / "direct.bin").read_bytes() == b"previous"
        assert sorted(p.name for p in small.iterdir()) == ["direct.bin"]


def test_cp_onto_a_fifo_and_a_device_keeps_them(
    env: dict[str, str], s3bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "e3.zip"
    src.write_bytes(release_zip(3))
    assert run(env, "cp", str(src), f"s3://{s3bucket}/e/").returncode == 0
    full = tmp_path / "full"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    result = run(env, "cp", f"s3://{s3bucket}/e/e3.zip", str(full))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert stat.S_ISCHR(full.lstat().st_mode)
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert run(env, "cp", f"s3://{s3bucket}/e/e3.zip", str(null)).returncode == 0
    assert stat.S_ISCHR(null.lstat().st_mode)


def test_rm_of_an_aliased_key_keeps_the_reference(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, tmp_path: Path
) -> None:
    for i in (1, 2):
        path = tmp_path / f"v1.{i}.zip"
        path.write_bytes(release_zip(i))
        assert run(env, "cp", str(path), f"s3://{s3bucket}/app/").returncode == 0
    result = run(env, "rm", f"s3://{s3bucket}/app//v1.1.zip")
    assert result.returncode == 1, result.stderr  # refused, as any aliased key
    assert "app/reference.bin" in stored(seaweed, s3bucket)
    local = tmp_path / "tree"
    local.mkdir()
    (local / "report\\2024.txt").write_text("q4")
    (local / "ok.txt").write_text("ok")
    synced = run(env, "sync", str(local), f"s3://{s3bucket}/r/", "--delete")
    assert synced.returncode == 1 and "report\\2024.txt" in synced.stderr
    assert [k for k in stored(seaweed, s3bucket) if k.startswith("r/")] == ["r/ok.txt"]


def test_keys_that_cannot_be_local_paths_are_skipped_with_an_error(
    moto: LocalS3, tmp_path: Path
) -> None:
    env = {**os.environ, **moto.env(), "DG_CACHE_DIR": str(tmp_path / "cache")}
    raw = boto(moto)
    bucket = "odd-" + os.urandom(4).hex()
    raw.create_bucket(Bucket=bucket)
    for key in ("p/ok.txt", "p/sub/", "p/a/../x.txt", "p/a\\b.txt"):
        raw.put_object(Bucket=bucket, Key=key, Body=b"data")
    out = tmp_path / "out"
    result = run(env, "cp", "-r", f"s3://{bucket}/p/", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert (out / "ok.txt").read_bytes() == b"data"
    assert sorted(p.name for p in out.rglob("*")) == ["ok.txt"]
    assert "Traceback" not in result.stderr and "a/../x.txt" in result.stderr


def test_ls_escapes_control_characters_of_keys(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str
) -> None:
    boto(seaweed).put_object(Bucket=s3bucket, Key="c/evil\x1b[31mred\x07.txt", Body=b"x")
    result = run(env, "ls", f"s3://{s3bucket}/c/")
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "evil" in result.stdout


def test_reference_from_stdin_is_reported_as_a_new_reference(
    env: dict[str, str], s3bucket: str
) -> None:
    import subprocess

    from .test_cli import SCRIPT

    result = subprocess.run(
        [SCRIPT, "--show-savings", "cp", "-", f"s3://{s3bucket}/s/first.zip"],
        env=env,
        input=release_zip(1),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert b"new reference" in result.stdout and b"-0." not in result.stdout


def test_bad_arguments_and_settings_are_usage_errors(env: dict[str, str], s3bucket: str) -> None:
    for args, extra in (
        (("stats", "t1"), {}),
        (("stats", ""), {}),
        (("ls", f"s3://{s3bucket}/"), {"DG_LOG_LEVEL": "LOUD"}),
    ):
        result = run({**env, **extra}, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_verify_of_an_object_without_sha256_exits_1(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str
) -> None:
    boto(seaweed).put_object(Bucket=s3bucket, Key="plain.bin", Body=b"foreign")
    result = run(env, "verify", f"s3://{s3bucket}/plain.bin")
    assert result.returncode == 1 and "verified" not in result.stdout


class _NotS3(http.server.BaseHTTPRequestHandler):
    """Answers every request 200 like a captive portal or a misconfigured proxy."""

    short_body = False

    def _answer(self, body_wanted: bool) -> None:
        body = b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        if self.short_body:
            self.send_header("ETag", '"abc"')
            self.send_header("Content-Length", str(len(body) * 4))  # promises more than it sends
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body_wanted:
            self.wfile.write(body)
        self.close_connection = True

    def do_GET(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[False, True], ids=["html", "short-body"])
def not_s3(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (_NotS3,), {"short_body": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_an_endpoint_that_is_not_s3_fails_instead_of_answering(
    env: dict[str, str], not_s3: str, tmp_path: Path
) -> None:
    bad = {**env, "AWS_ENDPOINT_URL": not_s3, "AWS_MAX_ATTEMPTS": "2"}
    for args in (
        ("ls", "s3://bucket/"),
        ("stats", "bucket", "--detailed"),
        ("cp", "s3://bucket/x.zip", str(tmp_path / "x.zip")),
    ):
        result = run(bad, *args)
        assert result.returncode not in (0, 2), (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, args
    assert not (tmp_path / "x.zip").exists()
