"""Every code example in README.md and docs/*.md runs, against a real SeaweedFS.

Python blocks run as scripts; bash blocks run their `deltaglider-async` lines.  Each document gets
an empty `releases` bucket and a working directory with `dist/app-1.3.zip` and `dist/app-1.4.zip`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.localserver import LocalS3

from ..artifacts import release_zip
from ..conftest import boto

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)
SCRIPT = str(Path(sys.executable).with_name("deltaglider-async"))


def examples() -> list[tuple[str, int, str, str]]:
    found = []
    for doc in DOCS:
        for number, match in enumerate(BLOCK.finditer(doc.read_text())):
            found.append((doc.name, number, match.group(1), match.group(2)))
    return found


def _fresh_bucket(server: LocalS3) -> None:
    client = boto(server)
    try:
        for obj in client.list_objects_v2(Bucket="releases").get("Contents", []):
            client.delete_object(Bucket="releases", Key=obj["Key"])
    except client.exceptions.NoSuchBucket:
        client.create_bucket(Bucket="releases")


@pytest.mark.parametrize(
    ("doc", "number", "language", "code"),
    examples(),
    ids=[f"{d}#{n}" for d, n, _, _ in examples()],
)
def test_example_runs(
    doc: str, number: int, language: str, code: str, seaweed: LocalS3, tmp_path: Path
) -> None:
    _fresh_bucket(seaweed)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "app-1.3.zip").write_bytes(release_zip(3))
    (tmp_path / "dist" / "app-1.4.zip").write_bytes(release_zip(4))
    env = {**os.environ, **seaweed.env(), "DG_CACHE_DIR": str(tmp_path / "cache")}
    if language == "python":
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{doc} example {number}:\n{code}\n{result.stderr}"
        return
    ran = 0
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] != "deltaglider-async":
            continue  # set-up commands (scripts/*.sh, make) are exercised by CI itself
        result = subprocess.run(
            [SCRIPT, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{doc}: {line}\n{result.stderr}"
        ran += 1
    if "deltaglider-async " in code:
        assert ran, f"{doc} example {number} ran no command"


def test_demo_runs_small(tmp_path: Path) -> None:
    """The README's main job, at a small size (the full run is `bash scripts/demo.sh`)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--releases", "3", "--size-mib", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert "byte-identical to the original: True" in result.stdout
    assert "verified: s3://artifacts/myapp/myapp-2.2.0.zip" in result.stdout
