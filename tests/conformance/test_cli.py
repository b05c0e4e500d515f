"""Our CLI beside aws-cli (from PyPI) on the same SeaweedFS: the same commands, on identical
local trees and on a bucket each, compared for stdout lines, exit codes and the trees they leave
(in S3 and on disk).  Every difference allowed here is a row of docs/conformance.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from deltaglider_async._core.metadata import user_metadata
from tests.artifacts import release_zip
from tests.awscli import ensure_awscli
from tests.conftest import boto
from tests.localserver import LocalS3

OURS = str(Path(sys.executable).with_name("deltaglider-async"))
PROGRESS = re.compile(r"Completed .* file\(s\) remaining")
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@dataclass
class Side:
    """One tool with its own bucket and working directory."""

    command: list[str]
    bucket: str
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [a.replace("BUCKET", self.bucket) for a in args]
        return subprocess.run(
            [*self.command, *argv],
            cwd=self.cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def lines(self, result: subprocess.CompletedProcess[str]) -> list[str]:
        """stdout with the bucket's name and timestamps made comparable, sorted (both tools
        print transfers as they finish), without aws's progress lines (ours are drawn on
        stderr, on a terminal only)."""
        text = STAMP.sub("DATE", result.stdout.replace(self.bucket, "BUCKET"))
        return sorted(
            line.rstrip() for line in text.splitlines() if line.strip() and not PROGRESS.match(line)
        )

    def s3_tree(self, server: LocalS3) -> dict[str, int]:
        """Logical keys and sizes (our stored forms read back through our own listing)."""
        listing = subprocess.run(
            [OURS, "ls", "--recursive", f"s3://{self.bucket}/"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        tree = {}
        for line in listing.stdout.splitlines():
            _, _, size, key = line.split(None, 3)
            tree[key] = int(size)
        return tree

    def local_tree(self, folder: str) -> dict[str, bytes]:
        root = self.cwd / folder
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }


@pytest.fixture
def sides(seaweed: LocalS3, tmp_path: Path) -> tuple[Side, Side]:
    return _sides(seaweed, tmp_path)


def _sides(server: LocalS3, tmp_path: Path) -> tuple[Side, Side]:
    aws = str(ensure_awscli())
    env = {
        **os.environ,
        **server.env(),
        "TZ": "Asia/Kolkata",  # local time is not UTC: ls must print local time
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "DG_CACHE_DIR": str(tmp_path / "cache"),
    }
    made = []
    for name, command in (("aws", [aws, "s3"]), ("ours", [OURS])):
        bucket = f"cf-{name}-{uuid.uuid4().hex[:8]}"
        boto(server).create_bucket(Bucket=bucket)
        cwd = tmp_path / name
        dist = cwd / "dist"
        (dist / "sub").mkdir(parents=True)
        for version in (1, 2, 3):
            (dist / f"app-{version}.zip").write_bytes(release_zip(version))
        (dist / "notes.txt").write_text("release notes\n")
        (dist / "sub" / "lib-1.jar").write_bytes(release_zip(7))
        made.append(Side(command, bucket, cwd, env))
    return made[0], made[1]


def both(
    aws: Side, ours: Side, *args: str
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """Run ``args`` with both tools side by side (each on its own bucket and tree)."""
    with ThreadPoolExecutor(2) as pool:
        theirs = pool.submit(aws.run, *args)
        return theirs.result(), ours.run(*args)


def same(aws: Side, ours: Side, *args: str) -> list[str]:
    """Run ``args`` with both tools: same exit code, same stdout lines."""
    theirs, mine = both(aws, ours, *args)
    what = " ".join(args)
    assert mine.returncode == theirs.returncode, (
        f"{what}: exit {mine.returncode} vs aws {theirs.returncode}\n"
        f"ours: {mine.stderr}\naws: {theirs.stderr}"
    )
    assert ours.lines(mine) == aws.lines(theirs), what
    return aws.lines(theirs)


def test_uploads_listings_and_downloads(sides: tuple[Side, Side], seaweed: LocalS3) -> None:
    aws, ours = sides
    same(aws, ours, "cp", "dist/app-1.zip", "s3://BUCKET/one/")
    same(aws, ours, "cp", "dist/app-3.zip", "s3://BUCKET/one/", "--exclude", "*.zip")
    same(aws, ours, "cp", "./dist/app-2.zip", "s3://BUCKET/one/renamed.zip")
    same(aws, ours, "cp", "--recursive", "dist", "s3://BUCKET/rel/", "--dryrun")
    lines = same(aws, ours, "cp", "--recursive", "dist", "s3://BUCKET/rel/")
    assert len(lines) == 5
    same(
        aws,
        ours,
        "cp",
        "--recursive",
        "dist",
        "s3://BUCKET/f/",
        "--exclude",
        "*",
        "--include",
        "*.zip",
    )
    assert ours.s3_tree(seaweed) == aws.s3_tree(seaweed)
    for args in (
        ("ls", "s3://BUCKET/rel/"),
        ("ls", "s3://BUCKET/rel"),
        ("ls", "--recursive", "s3://BUCKET/"),
        ("ls", "--recursive", "--summarize", "--human-readable", "s3://BUCKET/rel/"),
        ("ls", "s3://BUCKET/rel/app-1.zip"),
    ):
        same(aws, ours, *args)
    # local time, as aws prints it (the environment's zone is 5:30 off UTC)
    mine, theirs = ours.run("ls", "s3://BUCKET/one/"), aws.run("ls", "s3://BUCKET/one/")
    stamps = [
        datetime.strptime(STAMP.findall(r.stdout)[0], "%Y-%m-%d %H:%M:%S") for r in (mine, theirs)
    ]
    assert abs((stamps[0] - stamps[1]).total_seconds()) < 600
    same(aws, ours, "cp", "s3://BUCKET/rel/app-1.zip", "out/")
    same(aws, ours, "cp", "s3://BUCKET/rel/app-2.zip", "out/two.zip")
    same(aws, ours, "cp", "--recursive", "s3://BUCKET/rel/", "tree", "--dryrun")
    same(aws, ours, "cp", "--recursive", "s3://BUCKET/rel/", "tree")
    assert ours.local_tree("tree") == aws.local_tree("tree")
    assert ours.local_tree("out") == aws.local_tree("out")
    same(aws, ours, "cp", "s3://BUCKET/rel/app-1.zip", "s3://BUCKET/copy/app-1.zip")
    piped = [
        side.run("cp", "-", "s3://BUCKET/piped/notes.txt", stdin="from a pipe\n") for side in sides
    ]
    assert [r.returncode for r in piped] == [0, 0] and [r.stdout for r in piped] == ["", ""]
    same(aws, ours, "rm", "s3://BUCKET/one/app-1.zip")
    same(aws, ours, "rm", "--recursive", "s3://BUCKET/f/", "--dryrun")
    same(aws, ours, "rm", "--recursive", "s3://BUCKET/f/")
    assert ours.s3_tree(seaweed) == aws.s3_tree(seaweed)


def test_sync_both_ways(sides: tuple[Side, Side], seaweed: LocalS3) -> None:
    aws, ours = sides
    for side in sides:  # built a while ago: aws compares times to the second, after truncating
        for path in (side.cwd / "dist").rglob("*"):
            os.utime(path, (time.time() - 3600, time.time() - 3600))
    same(aws, ours, "sync", "dist", "s3://BUCKET/s/")
    same(aws, ours, "sync", "dist", "s3://BUCKET/s/")  # nothing left to do
    for side in sides:
        (side.cwd / "dist" / "notes.txt").write_text("changed notes\n")
        (side.cwd / "dist" / "app-1.zip").unlink()
    same(aws, ours, "sync", "dist", "s3://BUCKET/s/", "--delete", "--dryrun")
    same(aws, ours, "sync", "dist", "s3://BUCKET/s/", "--delete")
    assert ours.s3_tree(seaweed) == aws.s3_tree(seaweed)
    same(aws, ours, "sync", "s3://BUCKET/s/", "back")
    same(aws, ours, "sync", "s3://BUCKET/s/", "back")
    same(aws, ours, "sync", "s3://BUCKET/s/", "s3://BUCKET/t/")
    same(aws, ours, "sync", "s3://BUCKET/s/", "s3://BUCKET/t/")
    same(aws, ours, "rm", "s3://BUCKET/s/notes.txt")
    same(aws, ours, "sync", "s3://BUCKET/s/", "s3://BUCKET/t/", "--delete", "--dryrun")
    same(aws, ours, "sync", "s3://BUCKET/s/", "s3://BUCKET/t/", "--delete")
    assert ours.s3_tree(seaweed) == aws.s3_tree(seaweed)
    # Same size: a local copy newer than its object is replaced, an older one kept (aws's rule).
    for side in sides:
        newer, older = side.cwd / "back" / "app-2.zip", side.cwd / "back" / "app-3.zip"
        newer.write_bytes(b"x" * newer.stat().st_size)
        older.write_bytes(b"y" * older.stat().st_size)
        os.utime(older, (1_000_000_000, 1_000_000_000))
    same(aws, ours, "sync", "s3://BUCKET/s/", "back")
    assert ours.local_tree("back") == aws.local_tree("back")


def test_exit_codes(sides: tuple[Side, Side], seaweed: LocalS3) -> None:
    aws, ours = sides
    missing = f"nobucket-{uuid.uuid4().hex[:8]}"
    wrong: list[str] = []
    for args in (
        ("ls", "s3://BUCKET/nothing-here/"),
        ("ls", f"s3://{missing}/"),
        ("cp", "no-such-file.zip", "s3://BUCKET/x/"),
        ("cp", "s3://BUCKET/no-such-key.zip", "out/"),
        ("cp", "dist/app-1.zip", f"s3://{missing}/x/"),
        ("rm", "s3://BUCKET/no-such-key.zip"),
        ("cp", "dist", "s3://BUCKET/x/"),  # a directory without --recursive
        ("cp", "--no-such-option", "dist/app-1.zip", "s3://BUCKET/x/"),
    ):
        theirs, mine = both(aws, ours, *args)
        if mine.returncode != theirs.returncode:
            wrong.append(
                f"{' '.join(args)}: exit {mine.returncode} vs aws {theirs.returncode}\n"
                f"ours: {mine.stderr}\naws: {theirs.stderr}"
            )
    assert not wrong, "\n".join(wrong)
    for side in sides:
        (side.cwd / "dist" / "dangling.zip").symlink_to(side.cwd / "gone.zip")
    theirs, mine = (
        aws.run("cp", "--recursive", "dist", "s3://BUCKET/l/"),
        ours.run("cp", "--recursive", "dist", "s3://BUCKET/l/"),
    )
    assert mine.returncode == theirs.returncode == 2, mine.stderr
    assert "dangling.zip" in mine.stderr
    assert ours.lines(mine) == aws.lines(theirs)


def test_upload_options_set_what_is_stored(sides: tuple[Side, Side], seaweed: LocalS3) -> None:
    aws, ours = sides
    options = (
        "--cache-control",
        "max-age=60",
        "--content-disposition",
        "attachment",
        "--metadata",
        '{"build":"42","note":"kept"}',
    )
    same(aws, ours, "cp", "--recursive", "dist", "s3://BUCKET/o/", *options)
    same(aws, ours, "cp", "dist/app-1.zip", "s3://BUCKET/typed/", "--content-type", "x/y")
    same(aws, ours, "cp", "dist/app-2.zip", "s3://BUCKET/meta/", "--metadata", "a=1,b=2")
    raw = boto(seaweed)

    def stored_head(side: Side, key: str) -> dict[str, object]:
        for stored in (key, key + ".delta"):
            try:
                head = raw.head_object(Bucket=side.bucket, Key=stored)
            except raw.exceptions.ClientError:
                continue
            return {
                "ContentType": head.get("ContentType"),
                "CacheControl": head.get("CacheControl"),
                "ContentDisposition": head.get("ContentDisposition"),
                "user": user_metadata(head["Metadata"]),  # ours stores "note" escaped
            }
        raise AssertionError(f"{key} not stored")

    for key in ("o/app-1.zip", "o/app-3.zip", "o/notes.txt", "typed/app-1.zip", "meta/app-2.zip"):
        assert stored_head(ours, key) == stored_head(aws, key), key
    # copies within S3: COPY keeps the source's metadata and content headers, REPLACE (also
    # implied by --metadata) takes the command's
    same(aws, ours, "cp", "s3://BUCKET/o/app-1.zip", "s3://BUCKET/c1/")
    same(aws, ours, "cp", "s3://BUCKET/o/app-3.zip", "s3://BUCKET/c2/", "--metadata", "c=3")
    same(
        aws,
        ours,
        "cp",
        "--recursive",
        "s3://BUCKET/o/",
        "s3://BUCKET/c3/",
        "--metadata-directive",
        "REPLACE",
        "--content-type",
        "a/b",
        "--cache-control",
        "no-cache",
    )
    same(aws, ours, "mv", "s3://BUCKET/c1/app-1.zip", "s3://BUCKET/c4/", "--content-type", "a/b")
    copies = ("c2/app-3.zip", "c3/app-1.zip", "c3/notes.txt", "c4/app-1.zip")
    for key in copies:
        assert stored_head(ours, key) == stored_head(aws, key), key
    assert stored_head(ours, "c4/app-1.zip") == stored_head(ours, "o/app-1.zip")


def test_storage_class_sse_and_acl_apply_to_every_stored_form(
    moto: LocalS3, tmp_path: Path
) -> None:
    """On moto, which applies all three (SeaweedFS ignores ACLs and needs a KMS for SSE)."""
    aws, ours = _sides(moto, tmp_path)
    options = ("--storage-class", "STANDARD_IA", "--sse", "AES256", "--acl", "public-read")
    same(aws, ours, "cp", "--recursive", "dist", "s3://BUCKET/x/", *options)
    same(aws, ours, "cp", "s3://BUCKET/x/app-2.zip", "s3://BUCKET/y/", *options)
    raw = boto(moto)

    def applied(side: Side, stored: str) -> tuple[object, ...]:
        head = raw.head_object(Bucket=side.bucket, Key=stored)
        grants = raw.get_object_acl(Bucket=side.bucket, Key=stored)["Grants"]
        public = any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in grants)
        return head.get("StorageClass"), head.get("ServerSideEncryption"), public

    expected = applied(aws, "x/app-1.zip")
    assert expected == ("STANDARD_IA", "AES256", True)
    for stored in ("x/app-1.zip.delta", "x/app-3.zip.delta", "x/notes.txt", "y/app-2.zip.delta"):
        assert applied(ours, stored) == expected, stored
    for logical in ("x/notes.txt", "y/app-2.zip"):
        assert applied(aws, logical) == expected, logical
    # the reference serves every key of its space: it takes the SSE only
    reference = raw.head_object(Bucket=ours.bucket, Key="x/reference.bin")
    assert reference.get("ServerSideEncryption") == "AES256"


def test_mv_moves(sides: tuple[Side, Side], seaweed: LocalS3) -> None:
    aws, ours = sides
    same(aws, ours, "mv", "dist/app-1.zip", "s3://BUCKET/m/", "--dryrun")
    same(aws, ours, "mv", "dist/app-1.zip", "s3://BUCKET/m/")
    same(aws, ours, "mv", "--recursive", "dist/sub", "s3://BUCKET/m/sub/")
    same(aws, ours, "mv", "s3://BUCKET/m/app-1.zip", "s3://BUCKET/n/app-1.zip")
    same(aws, ours, "mv", "--recursive", "s3://BUCKET/m/", "back/")
    same(aws, ours, "mv", "s3://BUCKET/n/app-1.zip", "back/one.zip")
    assert ours.s3_tree(seaweed) == aws.s3_tree(seaweed) == {}
    assert ours.local_tree("back") == aws.local_tree("back")
    assert ours.local_tree("dist") == aws.local_tree("dist")


#: a sweep of everyday invocations, run in this order (later ones see what earlier ones left)
SWEEP = [
    ("ls", "s3://BUCKET"),
    ("ls", "s3://BUCKET/rel/app"),
    ("ls", "s3://BUCKET/rel/", "--recursive", "--human-readable"),
    ("ls", "--summarize", "s3://BUCKET/"),
    ("ls", "s3://BUCKET/nonexistent-key"),
    ("ls", "s3://BUCKET/rel/", "--page-size", "2"),
    ("cp", "dist/app-1.zip", "s3://BUCKET"),
    ("cp", "dist/app-1.zip", "s3://BUCKET/dir"),
    ("cp", "s3://BUCKET/rel/app-1.zip", "."),
    ("cp", "s3://BUCKET/rel/notes.txt", "-"),
    ("cp", "--recursive", "s3://BUCKET/rel", "s3://BUCKET/rel2"),
    ("cp", "--quiet", "dist/app-2.zip", "s3://BUCKET/q/"),
    ("cp", "--only-show-errors", "dist/app-2.zip", "s3://BUCKET/q/"),
    ("cp", "--recursive", "dist", "s3://BUCKET/q/", "--exclude", "sub/*"),
    ("cp", "s3://BUCKET/rel/", "out/"),  # a prefix without --recursive
    ("cp", "s3://BUCKET/rel/app-1.zip", "s3://BUCKET/rel/app-1.zip"),  # onto itself
    ("cp", "dist/app-1.zip"),
    ("cp", "dist/app-1.zip", "dist/x.zip"),  # no S3 side
    ("cp", "s3://BUCKET/rel/nope.zip", "s3://BUCKET/x.zip"),
    ("cp", "s3://", "out/"),
    ("cp", "--recursive", "s3://BUCKET/rel/sub/", "deep/"),
    ("cp", "s3://BUCKET/rel/app-1.zip", "newdir/nested/"),
    ("rm", "s3://BUCKET/rel2/", "--recursive", "--exclude", "*.zip"),
    ("rm", "s3://BUCKET/rel/notes.txt", "--dryrun"),
    ("rm", "s3://BUCKET/rel2/"),  # a folder marker, as aws deletes it
    ("rm", "s3://BUCKET/q/", "--recursive", "--quiet"),
    ("sync", "dist", "s3://BUCKET/s", "--exclude", "*.txt"),
    ("sync", "dist", "s3://BUCKET/s", "--size-only"),
    ("sync", "nonexistent", "s3://BUCKET/s3/"),
    ("sync", "s3://BUCKET/nothing/", "outs"),
    ("sync", "s3://BUCKET/s/", "outs", "--exclude", "*.zip"),
    ("sync", "dist", "s3://BUCKET/s", "--delete", "--exclude", "sub/*"),
    ("sync", "dist/app-1.zip", "s3://BUCKET/s/"),  # a file where a directory belongs
    ("mv", "s3://BUCKET/s/app-1.zip", "s3://BUCKET/s/app-1.zip"),
    ("mv", "s3://BUCKET/s/app-2.zip", "s3://BUCKET/s/"),
    ("mv", "s3://BUCKET/nope.zip", "s3://BUCKET/n2.zip"),
    ("frob",),
    ("ls", "--no-such-flag"),
    ("rm", "s3://NOBUCKET/x"),
    ("sync", "dist", "s3://NOBUCKET/"),
    ("ls", "s3://BUCKET/", "--recursive", "--summarize", "--human-readable"),
]


def test_sweep_of_everyday_invocations(sides: tuple[Side, Side], seaweed: LocalS3) -> None:
    aws, ours = sides
    missing = f"nobucket-{uuid.uuid4().hex[:8]}"
    for side in sides:
        for path in (side.cwd / "dist").rglob("*"):
            os.utime(path, (time.time() - 3600, time.time() - 3600))
        assert side.run("cp", "--recursive", "dist", "s3://BUCKET/rel/").returncode == 0
    wrong: list[str] = []
    for case in SWEEP:
        args = [a.replace("NOBUCKET", missing) for a in case]
        theirs, mine = both(aws, ours, *args)
        if mine.returncode != theirs.returncode or ours.lines(mine) != aws.lines(theirs):
            wrong.append(
                f"{' '.join(args)}: exit {mine.returncode} vs aws {theirs.returncode}\n"
                f"  ours: {ours.lines(mine)} {mine.stderr.strip()}\n"
                f"  aws:  {aws.lines(theirs)} {theirs.stderr.strip()}"
            )
    assert not wrong, "\n".join(wrong)
    assert ours.s3_tree(seaweed) == aws.s3_tree(seaweed)
    assert ours.local_tree(".") == aws.local_tree(".")
