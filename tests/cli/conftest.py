"""Fixtures of the CLI tests: the environment that points the console script at SeaweedFS."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.localserver import LocalS3

from ..artifacts import release_zip
from ..conftest import boto


@pytest.fixture
def env(seaweed: LocalS3, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **seaweed.env(), "DG_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture
def s3bucket(seaweed: LocalS3) -> str:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    boto(seaweed).create_bucket(Bucket=name)
    return name


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    (folder / "sub").mkdir(parents=True)
    for i in (1, 2, 3):
        (folder / f"app-{i}.zip").write_bytes(release_zip(i))
    (folder / "notes.txt").write_text("notes")
    (folder / "sub" / "lib-1.jar").write_bytes(release_zip(7))
    return folder
