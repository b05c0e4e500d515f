"""``--dask`` on migrate, verify and stats: the same lines, JSON and exit codes as the local run,
the work done by a LocalCluster of worker processes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.localserver import LocalS3

from ..artifacts import deflated_zip
from .test_cli import run


def _lines(text: str, prefix: str) -> list[str]:
    return sorted(line.replace(prefix, "P/") for line in text.splitlines())


def test_migrate_verify_and_stats_on_a_local_cluster(
    env: dict[str, str], seaweed: LocalS3, s3bucket: str, tmp_path: Path
) -> None:
    for space in ("web", "api"):
        dist = tmp_path / space
        dist.mkdir()
        for v in (1, 2, 3):
            (dist / f"{space}-1.{v}.whl").write_bytes(deflated_zip(v + len(space)))
        for copy in ("local", "dask"):
            url = f"s3://{s3bucket}/{copy}/{space}/"
            assert run(env, "sync", str(dist), url).returncode == 0
    local_url, dask_url = f"s3://{s3bucket}/local/", f"s3://{s3bucket}/dask/"
    args = ("--delta-format", "archive")
    local = run(env, "migrate", local_url, local_url, *args)
    on_dask = run(env, "migrate", dask_url, dask_url, *args, "--dask", "local:2")
    assert local.returncode == on_dask.returncode == 0, on_dask.stderr
    assert _lines(on_dask.stdout, dask_url) == _lines(local.stdout, local_url)
    assert len(on_dask.stdout.splitlines()) == 6 and "(delta " in on_dask.stdout
    again = run(env, "migrate", dask_url, dask_url, *args, "--dask", "local:2", "--json")
    assert again.returncode == 0
    assert [json.loads(x)["summary"]["files"] for x in again.stdout.splitlines()] == [0]

    verified = run(env, "verify", dask_url, "--recursive", "--dask", "local:2", "--json")
    assert verified.returncode == 0, verified.stderr
    records = [json.loads(line) for line in verified.stdout.splitlines()]
    assert len(records) == 6 and all(r["valid"] for r in records)
    plain = run(env, "verify", local_url, "--recursive")
    assert plain.returncode == 0 and len(plain.stdout.splitlines()) == 6

    stats = {}
    for how in ((), ("--dask", "local:2")):
        done = run(env, "stats", s3bucket, "--detailed", "--refresh", "--json", *how)
        assert done.returncode == 0, done.stderr
        stats[how] = json.loads(done.stdout)
    ignore = {"computed_at": None, "heads_issued": None}
    assert stats[()] | ignore == stats[("--dask", "local:2")] | ignore
    assert stats[()]["object_count"] == 12

    quick = run(env, "stats", s3bucket, "--dask", "local:2")
    assert quick.returncode == 2 and "--detailed or --sampled" in quick.stderr
    zero = run(env, "migrate", dask_url, dask_url, "--dask", "local:0")
    assert zero.returncode == 2 and "worker count" in zero.stderr
