"""Pure core: aws-style filter order and the sync planner."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from deltaglider_async.aws import PathFilter, SyncEntry, is_included, plan_sync


def test_later_filter_wins() -> None:
    rules = [
        PathFilter("exclude", "*"),
        PathFilter("include", "*.zip"),
        PathFilter("exclude", "old*"),
    ]
    assert is_included("app.zip", rules)
    assert not is_included("notes.txt", rules)
    assert not is_included("old-app.zip", rules)
    assert is_included("sub/x.zip", rules)  # * matches across /, as aws does
    assert is_included("anything", [])
    assert not is_included("a.zip", [PathFilter("include", "*.zip"), PathFilter("exclude", "*")])


def entries(**items: tuple[int, float]) -> dict[str, SyncEntry]:
    return {k.replace("__", "/"): SyncEntry(size, mtime) for k, (size, mtime) in items.items()}


def test_upload_plan_new_changed_and_newer() -> None:
    local = entries(a=(10, 100.0), b=(20, 100.0), c=(30, 200.0), d=(40, 100.5))
    remote = entries(b=(21, 100.0), c=(30, 100.0), d=(40, 100.0), z=(1, 1.0))
    plan = plan_sync(local, remote, "upload")
    assert plan.transfer == ["a", "b", "c"]
    assert plan.reasons == {"a": "new", "b": "size", "c": "newer"}  # d: within 1 s
    assert plan.delete == []
    assert plan_sync(local, remote, "upload", delete=True).delete == ["z"]
    assert plan_sync(local, remote, "upload", size_only=True).transfer == ["a", "b"]


def test_download_exact_timestamps_and_checksum() -> None:
    remote = entries(a=(10, 100.0), b=(10, 100.0), c=(10, 100.0))
    local = entries(a=(10, 150.0), b=(10, 100.0), c=(10, 50.0))
    # aws-cli: a local copy newer than its object was changed locally and is replaced; an
    # older one is what an earlier download left (it set the object's time) and is kept.
    assert plan_sync(remote, local, "download").transfer == ["a"]
    assert plan_sync(remote, local, "download", exact_timestamps=True).transfer == ["a", "c"]
    src = {"a": SyncEntry(10, 0, "x" * 64), "b": SyncEntry(10, 0, "y" * 64)}
    dst = {"a": SyncEntry(10, 0, "x" * 64), "b": SyncEntry(10, 0, "z" * 64)}
    assert plan_sync(src, dst, "upload", checksum=True).transfer == ["b"]


@given(
    st.dictionaries(st.text(min_size=1, max_size=5), st.tuples(st.integers(0, 9), st.floats(0, 9))),
    st.dictionaries(st.text(min_size=1, max_size=5), st.tuples(st.integers(0, 9), st.floats(0, 9))),
)
def test_plan_invariants(
    src: dict[str, tuple[int, float]], dst: dict[str, tuple[int, float]]
) -> None:
    source = {k: SyncEntry(*v) for k, v in src.items()}
    destination = {k: SyncEntry(*v) for k, v in dst.items()}
    plan = plan_sync(source, destination, "upload", delete=True)
    assert set(plan.transfer) <= set(source)
    assert set(plan.delete) == set(destination) - set(source)
    assert set(source) - set(destination) <= set(plan.transfer)
    for path in plan.transfer:
        if path in destination:
            assert plan.reasons[path] in ("size", "newer")
