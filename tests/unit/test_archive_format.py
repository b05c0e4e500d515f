"""The archive format without a server: every archive either round-trips byte-exact through it or
falls back to vcdiff with a reason; nothing it writes is unreadable.

Archives come from Python's zipfile/gzip/tarfile, from Debian's ``zip``, ``fastjar``, ``gzip`` and
``tar``, from the real wheels CPython bundles (``ensurepip``), from hypothesis, and from mutation.
"""

from __future__ import annotations

import ensurepip
import gzip
import hashlib
import io
import random
import shutil
import subprocess
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xdelta_ffi
from deltaglider_async._engine.codec import encoder_plan
from deltaglider_async._engine.memory import DEFAULT_LIMIT
from deltaglider_async._exceptions import IntegrityError
from deltaglider_async._formats import _document as document
from deltaglider_async._formats._containers import expected_expansion, file_expected_expansion
from deltaglider_async._formats._document import Rebuilder, ReferenceForm, reference_form
from deltaglider_async._formats.archive import (
    ARCHIVE_MAGIC,
    REFERENCE_MAGIC,
    _encode_sync,
    _split,
    decode_reference_sync,
    encode_reference_sync,
    holds_x86_code,
)

from ..artifacts import deflated_zip, release_tarball, source_tree
from .golden import gzip_pinned

FALLBACKS = (
    "no deflated member that re-deflates byte-exact",
    "reference is not an archive",
    "not a zip or gzip archive",
)
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name")
BUNDLED = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("*.whl"))
PLAN = encoder_plan(1 << 30, DEFAULT_LIMIT, in_memory=True)  # what a put under the default gets


def roundtrip(reference: bytes, target: bytes, tmp: Path) -> str:
    """Encode ``target`` against ``reference`` as a put would; decode what was written and
    require the very bytes.  Returns ``archive`` or the fallback's reason."""
    src, out = tmp / "target", tmp / "delta"
    src.write_bytes(target)
    form = reference_form(reference)
    if not form.is_archive:
        return "reference is not an archive"
    encoded = _encode_sync(form, src, out, None, PLAN)
    if encoded.result is None:
        assert encoded.why_not
        return encoded.why_not
    blob = out.read_bytes()
    assert blob.startswith(ARCHIVE_MAGIC)
    head, body = _split(blob, "t")
    assert head.version == form.version
    rebuilder = Rebuilder(form.raw, "t", head.segments, known=form.known)  # as a get reads
    decoder = xdelta_ffi.Decoder(form.source, source_size=len(form.source), target_size=None)
    pieces = [*decoder.stream(body), *decoder.finish_stream()]
    rebuilt = b"".join(bytes(p) for piece in pieces for p in rebuilder.feed(piece))
    rebuilder.finish()
    assert rebuilt == target
    return "archive"


def test_the_pinned_zlib_is_compiled_in_and_reproduces_zlib_output() -> None:
    import zlib

    assert xdelta_ffi.ZLIB_VERSION.startswith("1.3.1")
    data = b"".join(source_tree(1).values())
    for level in range(1, 10):
        system = zlib.compressobj(level, zlib.DEFLATED, -15)
        expected = system.compress(data) + system.flush()
        assert xdelta_ffi.deflate_raw(data, level) == expected
        assert xdelta_ffi.deflate_matches(data, expected, level)
        assert xdelta_ffi.inflate_raw(expected + b"tail")[0] == data


def test_garbage_does_not_inflate() -> None:
    with pytest.raises(xdelta_ffi.ZlibError):
        xdelta_ffi.inflate_raw(b"\xff" * 64)
    with pytest.raises(xdelta_ffi.ZlibError):
        xdelta_ffi.inflate_raw(zlib_raw(b"x" * 1000)[:-3])


def zlib_raw(data: bytes, level: int = 6) -> bytes:
    return xdelta_ffi.deflate_raw(data, level)


@pytest.mark.parametrize("level", [1, 6, 9])
def test_python_zips_at_any_level(level: int, tmp_path: Path) -> None:
    assert (
        roundtrip(deflated_zip(1, level=level), deflated_zip(3, level=level), tmp_path) == "archive"
    )


def test_bundled_real_wheels(tmp_path: Path) -> None:
    assert len(BUNDLED) >= 2
    pip_wheel, other = BUNDLED[0].read_bytes(), BUNDLED[1].read_bytes()
    assert roundtrip(pip_wheel, pip_wheel, tmp_path) == "archive"
    assert roundtrip(pip_wheel, other, tmp_path) == "archive"
    # A new release of a real wheel: one member changed, rewritten by zipfile.
    changed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(pip_wheel)) as src, zipfile.ZipFile(changed, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith("__init__.py"):
                body += b"\n# patched\n"
            dst.writestr(info, body, compress_type=info.compress_type)
    assert roundtrip(pip_wheel, changed.getvalue(), tmp_path) == "archive"


def _tree_on_disk(root: Path, version: int) -> Path:
    for name, body in source_tree(version).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return root


@pytest.mark.parametrize("tool", ["zip", "fastjar"])
def test_debian_zip_and_fastjar(tool: str, tmp_path: Path) -> None:
    assert shutil.which(tool), f"{tool} is installed by scripts/setup.sh"
    made = []
    for version in (1, 2):
        tree = _tree_on_disk(tmp_path / f"v{version}", version)
        out = tmp_path / f"app-{version}.jar"
        cmd = (
            ["zip", "-q", "-r", "-X", str(out), "pkg"]
            if tool == "zip"
            else ["fastjar", "-cf", str(out), "pkg"]
        )
        subprocess.run(cmd, cwd=tree, check=True)
        made.append(out.read_bytes())
    assert roundtrip(made[0], made[1], tmp_path) == "archive"


@pytest.mark.parametrize("level", range(1, 10))
def test_gnu_gzip_levels(level: int, tmp_path: Path) -> None:
    made = []
    for version in (1, 2):
        tree = _tree_on_disk(tmp_path / f"v{version}", version)
        subprocess.run(["tar", "cf", "src.tar", "pkg"], cwd=tree, check=True)
        subprocess.run(["gzip", f"-{level}", "-n", "-f", "src.tar"], cwd=tree, check=True)
        made.append((tree / "src.tar.gz").read_bytes())
    # GNU gzip's deflate is not zlib's: the extension's own re-implementation rebuilds it.
    assert roundtrip(made[0], made[1], tmp_path) == "archive"


def test_tar_czf_python_gzip_and_tarfile(tmp_path: Path) -> None:
    trees = [_tree_on_disk(tmp_path / f"v{v}", v) for v in (1, 2)]
    for tree in trees:
        subprocess.run(["tar", "czf", "czf.tar.gz", "pkg"], cwd=tree, check=True)
    czf = [(t / "czf.tar.gz").read_bytes() for t in trees]
    assert roundtrip(czf[0], czf[1], tmp_path) == "archive"
    py = [gzip.compress(b"".join(source_tree(v).values()), mtime=0) for v in (1, 2)]
    assert roundtrip(py[0], py[1], tmp_path) == "archive"
    assert roundtrip(release_tarball(1), release_tarball(4), tmp_path) == "archive"
    # Several gzip members in one file, and bytes after the last one.
    multi = py[0] + py[1] + b"trailing"
    assert roundtrip(py[0], multi, tmp_path) == "archive"


def _zip(members: list[tuple[str, bytes, int]], **kw: object) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", **kw) as zf:  # type: ignore[arg-type]
        for name, body, method in members:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = method
            zf.writestr(info, body)
    return out.getvalue()


def test_zip_features_are_kept_byte_exact(tmp_path: Path) -> None:
    tree = list(source_tree(1).items())
    base = _zip([(n, b, zipfile.ZIP_DEFLATED) for n, b in tree])
    changed = [(n, b + b"#", zipfile.ZIP_DEFLATED) for n, b in tree[:2]] + [
        (n, b, zipfile.ZIP_DEFLATED) for n, b in tree[2:]
    ]
    variants = {
        "stored and deflated": _zip(
            [
                (n, b, zipfile.ZIP_STORED if i % 3 == 0 else zipfile.ZIP_DEFLATED)
                for i, (n, b) in enumerate(tree)
            ]
        ),
        "duplicate names": _zip([*changed, changed[0]]),
        "empty members": _zip([("empty/", b"", zipfile.ZIP_STORED), *changed]),
    }

    # Data descriptors: zipfile writes them when it cannot seek back.
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            self.data += b
            return len(b)

    stream = Unseekable()
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # type: ignore[arg-type]
        for name, body, _ in changed:
            with zf.open(name, "w") as member:
                member.write(body)
    variants["data descriptors"] = bytes(stream.data)
    zip64 = io.BytesIO()
    with zipfile.ZipFile(zip64, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, body, _ in changed:
            with zf.open(name, "w", force_zip64=True) as member:
                member.write(body)
    variants["zip64"] = zip64.getvalue()
    commented = io.BytesIO()
    with zipfile.ZipFile(commented, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.comment = b"archive comment"
        for name, body, _ in changed:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.comment = b"member comment"
            info.extra = b"\xca\xfe\x04\x00abcd"
            zf.writestr(info, body, zipfile.ZIP_DEFLATED)
    variants["comments and extra fields"] = commented.getvalue()
    variants["prepended bytes"] = b"#!/bin/sh\nexec java -jar $0\n" + _zip(
        changed, compression=zipfile.ZIP_DEFLATED
    )
    for name, archive in variants.items():
        assert roundtrip(base, archive, tmp_path) == "archive", name


def test_members_that_do_not_re_deflate_are_kept_compressed(tmp_path: Path) -> None:
    tree = list(source_tree(1).items())
    base = _zip([(n, b, zipfile.ZIP_DEFLATED) for n, b in tree])
    archive = bytearray(_zip([(n, b + b"!", zipfile.ZIP_DEFLATED) for n, b in tree]))
    # A member deflated by something else (here: a level-0 stream zlib 1.3 would not emit).
    odd = zipfile.ZipInfo("odd.bin", date_time=(2026, 1, 1, 0, 0, 0))
    buf = io.BytesIO(bytes(archive))
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr(odd, b"z" * 5000, zipfile.ZIP_DEFLATED, compresslevel=0)
    assert roundtrip(base, buf.getvalue(), tmp_path) == "archive"


def test_nested_archives(tmp_path: Path) -> None:
    assert (
        roundtrip(deflated_zip(1, nested=True), deflated_zip(2, nested=True), tmp_path) == "archive"
    )
    form = reference_form(deflated_zip(1, nested=True))
    expander = document.Expander(form)
    head, _ = expander.expand(deflated_zip(2, nested=True))
    kinds = {s.kind for s in document.parse_head(head).segments}
    assert document.DEFLATE_NESTED in kinds and document.NESTED in kinds


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_nested_member_the_reference_holds_is_named_not_carried(
    tmp_path: Path, method: int
) -> None:
    """botocore's case: each release's ``.json.gz`` gets a new gzip mtime over the same deflate
    stream; the stream is a KNOWN segment, so its contents are neither in the delta's payload
    nor deflated again, and a reader without that member fails loudly."""
    model = b"".join(source_tree(1, files=8, lines=400).values())

    def release(version: int) -> bytes:
        code = b"".join(source_tree(version, files=2).values())
        return _zip(
            [
                ("pkg/code.py", code, zipfile.ZIP_DEFLATED),
                ("pkg/model.json.gz", gzip_pinned(model, mtime=1_700_000_000 + version), method),
            ]
        )

    old, new = release(1), release(2)
    assert roundtrip(old, new, tmp_path) == "archive"
    form = reference_form(old)
    _, payload = document.Expander(form).expand(new)
    assert len(payload) < len(model) // 4  # the model is not in it
    src, out = tmp_path / "target", tmp_path / "delta"
    src.write_bytes(new)
    assert _encode_sync(form, src, out, None, PLAN).result is not None
    parsed, body = _split(out.read_bytes(), "t")
    decoder = xdelta_ffi.Decoder(form.source, source_size=len(form.source), target_size=None)
    expanded = b"".join(bytes(p) for p in [*decoder.stream(body), *decoder.finish_stream()])
    blind = Rebuilder(form.raw, "t", parsed.segments, known={})
    with pytest.raises(IntegrityError, match="does not hold"):
        blind.feed(expanded)
        blind.finish()


def test_rebuilding_a_compact_reference_gives_its_form(tmp_path: Path) -> None:
    from deltaglider_async._formats.archive import _decode_compact

    for name, raw in (
        ("nested.jar", deflated_zip(3, nested=True)),
        ("app.tar.gz", release_tarball(2)),
        ("golden.tgz", gzip_pinned(b"".join(b"%d\n" % i for i in range(50000)), 9)),
    ):
        path, out = tmp_path / name, tmp_path / f"{name}.compact"
        path.write_bytes(raw)
        assert encode_reference_sync(path, out) is not None, name
        rebuilt, form = _decode_compact(out.read_bytes(), name)
        assert rebuilt == raw and form is not None, name
        expected = reference_form(raw)
        assert (form.source, form.members, form.tail, form.version, form.is_archive) == (
            expected.source,
            expected.members,
            expected.tail,
            expected.version,
            expected.is_archive,
        ), name
        assert _known(form) == _known(expected), name


def _known(form: ReferenceForm) -> dict[tuple[int, int], tuple[bytes, bytes, int, int]]:
    return {
        k: (bytes(v.compressed), v.contents_digest, v.level, v.mem_level)
        for k, v in form.known.items()
    }


def test_compact_reference_of_several_xz_streams(tmp_path: Path) -> None:
    words = [random.Random(7).randbytes(3).hex() for _ in range(5_000)]
    members = [
        (f"m{i}.txt", "".join(f"{n} {words[n * 7919 % 5_000]}\n" for n in range(400_000)).encode())
        for i in range(2)
    ]
    assert sum(len(body) for _, body in members) > 8 << 20
    data = _zip([(name, body, zipfile.ZIP_DEFLATED) for name, body in members])
    src, out = tmp_path / "ref.zip", tmp_path / "ref.bin"
    src.write_bytes(data)
    form = encode_reference_sync(src, out, parallel=2)
    assert form is not None
    body = out.read_bytes()
    assert body.count(b"\xfd7zXZ\x00") >= 2  # more than 8 MiB expanded: one stream per piece
    assert decode_reference_sync(body, "ref") == data
    fresh = reference_form(data)
    assert (form.source, form.members, form.known.keys()) == (
        fresh.source,
        fresh.members,
        fresh.known.keys(),
    )


def _elf(machine: int, code: bytes) -> bytes:
    header = b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little")
    return header + bytes(64 - len(header)) + code


def test_x86_code_is_told_by_its_headers() -> None:
    code = random.Random(3).randbytes(1_000)
    assert holds_x86_code(b"text " + _elf(62, code))
    assert holds_x86_code(_elf(3, code))
    assert not holds_x86_code(_elf(183, code))  # aarch64
    assert not holds_x86_code(b"\x7fELF\x01\x02" + code)  # big-endian, truncated
    assert holds_x86_code(b"MZ" + bytes(60) + b"PE\x00\x00\x64\x86" + code)
    assert holds_x86_code(b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + code)
    assert not holds_x86_code(code.replace(b"\x7fELF", b"").replace(b"PE\x00\x00", b""))


def test_compact_reference_of_x86_code_filters_it(tmp_path: Path) -> None:
    rng = random.Random(5)
    # calls to a few targets from everywhere: what the x86 filter makes repeat
    calls = b"".join(
        b"\x48\x89\xc7\xe8"
        + (rng.choice((4096, 9000, 20000)) - at * 8).to_bytes(4, "little", signed=True)
        for at in range(60_000)
    )
    for machine, filtered in ((62, True), (183, False)):
        data = _zip(
            [
                ("lib.so", _elf(machine, calls), zipfile.ZIP_DEFLATED),
                ("a.txt", b"x" * 999, zipfile.ZIP_DEFLATED),
            ]
        )
        src, out = tmp_path / f"{machine}.zip", tmp_path / f"{machine}.bin"
        src.write_bytes(data)
        assert encode_reference_sync(src, out) is not None
        body = out.read_bytes()
        assert decode_reference_sync(body, "ref") == data
        # the first block header's flags: how many filters, less one (x86 + LZMA2, or LZMA2)
        block_flags = body[len(REFERENCE_MAGIC) + 12 + 1]
        assert block_flags & 3 == (1 if filtered else 0)


def test_known_members_are_copied_only_when_their_contents_match() -> None:
    data = deflated_zip(1)
    form = reference_form(data)
    assert form.known
    # The archive's own expansion without a reference: every member is a DEFLATE segment
    # under the very key of a known entry.
    head, payload = document.Expander(None).expand(data)
    segments = document.parse_head(head).segments
    lying = {
        key: document.KnownDeflate(
            memoryview(b"x" * key[1]), b"0" * 16, known.level, known.mem_level
        )
        for key, known in form.known.items()
    }
    for known in (form.known, lying):
        rebuilder = Rebuilder(b"", "t", segments, known=known)
        rebuilt = b"".join(bytes(p) for p in rebuilder.feed(payload))
        rebuilder.finish()
        assert rebuilt == data


def test_non_archives_fall_back_with_a_reason(tmp_path: Path) -> None:
    base = deflated_zip(1)
    assert roundtrip(base, b"just some bytes" * 100, tmp_path) == "not a zip or gzip archive"
    assert roundtrip(b"not an archive" * 100, base, tmp_path) == "reference is not an archive"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    members=st.lists(
        st.tuples(
            st.text(alphabet="abcdefgh/._", min_size=1, max_size=12),
            st.binary(max_size=3000) | st.text(max_size=3000).map(str.encode),
            st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
            st.integers(min_value=0, max_value=9),
        ),
        min_size=1,
        max_size=8,
    ),
    prefix=st.binary(max_size=40),
    comment=st.binary(max_size=40),
)
def test_hypothesis_zips(
    members: list[tuple[str, bytes, int, int]], prefix: bytes, comment: bytes, tmp_path: Path
) -> None:
    def build(extra: bytes) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            zf.comment = comment
            for name, body, method, level in members:
                info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
                zf.writestr(info, body + extra, method, compresslevel=level)
        return prefix + out.getvalue()

    result = roundtrip(build(b""), build(b"v2"), tmp_path)
    assert result in ("archive", *FALLBACKS)


def test_two_thousand_mutated_archives_round_trip_or_fall_back(tmp_path: Path) -> None:
    rng = random.Random(2026)
    originals = [
        _zip(
            [
                (n, b, zipfile.ZIP_DEFLATED)
                for n, b in list(source_tree(1, files=6, lines=40).items())
            ]
        ),
        gzip.compress(b"".join(source_tree(1, files=4, lines=40).values()), mtime=0),
        _zip(
            [
                (
                    "inner.jar",
                    _zip([("a.txt", b"abc" * 300, zipfile.ZIP_DEFLATED)]),
                    zipfile.ZIP_DEFLATED,
                )
            ]
        ),
    ]
    outcomes: dict[str, int] = {}
    for i in range(2000):
        original = originals[i % len(originals)]
        mutated = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            choice = rng.random()
            at = rng.randrange(len(mutated))
            if choice < 0.6:
                mutated[at] = rng.randrange(256)
            elif choice < 0.8:
                del mutated[at : at + rng.randint(1, 16)]
            else:
                mutated[at:at] = rng.randbytes(rng.randint(1, 16))
        result = roundtrip(original, bytes(mutated), tmp_path)
        outcomes[result.split(" (")[0]] = outcomes.get(result.split(" (")[0], 0) + 1
    print(outcomes)
    assert outcomes.get("archive", 0) > 500, outcomes


@pytest.mark.parametrize(
    "command",
    [
        ["tar", "czf", "out.a", "pkg"],
        ["zip", "-q", "-r", "-6", "out.a", "pkg"],
        ["zip", "-q", "-r", "-9", "out.a", "pkg"],
    ],
    ids=["tar czf", "zip -6", "zip -9"],
)
def test_gnu_deflate_producers_expand_every_member(command: list[str], tmp_path: Path) -> None:
    tree = _tree_on_disk(tmp_path / "v1", 1)
    subprocess.run(command, cwd=tree, check=True)
    expander = document.Expander(None)
    expander.expand((tree / "out.a").read_bytes())
    assert expander.stats.members > 0
    assert expander.stats.not_reproduced == 0


def _big_gnu_tarball(root: Path, version: int) -> bytes:
    """A ``tar czf`` of about 10 MiB of text: one deflate member rebuilt as a stream."""
    rnd = random.Random(11)
    words = [
        bytes(rnd.choices(b"abcdefghijklmnopqrstuvwxyz", k=rnd.randint(2, 9))) for _ in range(4000)
    ]
    pkg = root / "pkg"
    pkg.mkdir(parents=True)
    for index in range(10):
        body = b" ".join(rnd.choice(words) for _ in range(190_000))
        if index == 4:
            body += f"\nversion {version}\n".encode()
        (pkg / f"part{index}.txt").write_bytes(body)
    subprocess.run(
        ["tar", "--mtime=@0", "--sort=name", "-czf", "out.tgz", "pkg"], cwd=root, check=True
    )
    return (root / "out.tgz").read_bytes()


def encoded_expansion(
    old: bytes, new: bytes, tmp: Path
) -> tuple[ReferenceForm, list[document.Segment], bytes]:
    """``new`` encoded against ``old`` as a put does: the form, the segments and the expanded
    document a reader decodes."""
    form = reference_form(old)
    src, out = tmp / "target", tmp / "delta"
    src.write_bytes(new)
    assert _encode_sync(form, src, out, None, PLAN).result is not None
    head, body = _split(out.read_bytes(), "t")
    decoder = xdelta_ffi.Decoder(form.source, source_size=len(form.source), target_size=None)
    expanded = b"".join(bytes(p) for p in [*decoder.stream(body), *decoder.finish_stream()])
    return form, head.segments, expanded


def assert_rebuilds_however_fed(
    form: ReferenceForm, segments: list[document.Segment], expanded: bytes, want: bytes
) -> None:
    for piece in (1_000, 3 << 20, len(expanded)):
        rebuilder = Rebuilder(form.raw, "t", segments, known=form.known)
        rebuilt = b"".join(
            bytes(p)
            for start in range(0, len(expanded), piece)
            for p in rebuilder.feed(expanded[start : start + piece])
        )
        rebuilder.finish()
        assert rebuilt == want


def test_a_large_gnu_member_rebuilds_the_same_however_it_is_fed(tmp_path: Path) -> None:
    old, new = (_big_gnu_tarball(tmp_path / f"v{v}", v) for v in (1, 2))
    assert roundtrip(old, new, tmp_path) == "archive"
    form, segments, expanded = encoded_expansion(old, new, tmp_path)
    assert any(s.payload_len > document.STREAM_MEMBER for s in segments)
    assert_rebuilds_however_fed(form, segments, expanded, new)


def test_a_large_known_member_is_copied_only_when_its_contents_match(tmp_path: Path) -> None:
    old = _big_gnu_tarball(tmp_path / "v1", 1)
    form = reference_form(old)
    head, payload = document.Expander(None).expand(old)
    segments = document.parse_head(head).segments
    assert any(  # its tar, a TAR document (stream version 4), streams through the rebuilder
        s.kind == document.DEFLATE_NESTED and s.payload_len > document.STREAM_MEMBER
        for s in segments
    )

    def rebuild(body: bytes) -> bytes:
        rebuilder = Rebuilder(b"", "t", segments, known=form.known)
        out = b"".join(
            bytes(p)
            for start in range(0, len(body), 1 << 20)
            for p in rebuilder.feed(body[start : start + (1 << 20)])
        )
        rebuilder.finish()
        return out

    assert rebuild(payload) == old
    changed = bytearray(payload)
    changed[len(changed) // 2] ^= 1
    with pytest.raises(IntegrityError, match="does not rebuild byte-exact"):
        rebuild(bytes(changed))


def test_a_kept_form_reads_back_as_the_form() -> None:
    raw = deflated_zip(3, nested=True)
    form = reference_form(raw)
    assert any(k.compressed.obj is not raw for k in form.known.values())  # nested: kept inline
    data = b"".join(bytes(p) for p in document.form_pieces(form))
    back = document.parse_form(data, raw)
    assert back is not None
    assert (back.source, back.members, back.tail, back.version) == (
        form.source,
        form.members,
        form.tail,
        form.version,
    )
    assert back.is_archive and back.raw is raw
    assert _known(back) == _known(form)
    for damaged in (b"", data[:-1], data[: len(data) // 2], b"x" + data, data + b"x"):
        assert document.parse_form(damaged, raw) is None


def test_the_expected_expansion_is_read_from_the_containers_records() -> None:
    text = b"".join(b"line %d\n" % i for i in range(20000))
    members = [("a.txt", text, zipfile.ZIP_DEFLATED), ("b.bin", b"kept", zipfile.ZIP_STORED)]
    data = b"prepended" + _zip(members)
    compressed = zipfile.ZipFile(io.BytesIO(data)).getinfo("a.txt").compress_size
    assert expected_expansion(data) == len(data) - compressed + len(text)
    assert expected_expansion(gzip.compress(text)) == len(text)
    for junk in (b"", b"PK\x05\x06", b"not an archive" * 10, data[:-30]):
        assert expected_expansion(junk) == len(junk)
    # From a file, reading only the parts the records are in: the same answers.
    big = b"x" * (300 << 10) + data  # the central directory far from the file's start
    for body in (big, data, gzip.compress(text), b"", b"not an archive" * 10):
        with io.BytesIO(body) as f:
            assert file_expected_expansion(f, len(body)) == expected_expansion(body)


async def test_an_archive_whose_expansion_exceeds_the_budget_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltaglider_async._engine.codec import CodecRunner
    from deltaglider_async._engine.memory import MemoryBudget
    from deltaglider_async._formats import archive
    from deltaglider_async._formats.archive import ARCHIVE

    members = [("big.txt", bytes(60 << 20), zipfile.ZIP_DEFLATED)]  # 60 MiB of zeros, deflated
    reference = tmp_path / "v1.zip"
    reference.write_bytes(_zip(members))
    target = tmp_path / "v2.zip"
    target.write_bytes(_zip([*members, ("new.txt", b"new", zipfile.ZIP_DEFLATED)]))
    sha = hashlib.sha256(reference.read_bytes()).hexdigest()
    codec = CodecRunner(1)
    codec.memory = MemoryBudget(128 << 20)
    with monkeypatch.context() as patched:  # refused from the zips' records: nothing expanded
        patched.setattr(archive, "reference_form", _never)
        patched.setattr(archive, "encode_reference_sync", _never)
        result = await ARCHIVE.encode(codec, reference, target, tmp_path / "delta", None)
        assert await ARCHIVE.reference_body(codec, reference, sha, tmp_path / "ref") is None
    assert result.format_name == "vcdiff"
    assert "DG_MEMORY_LIMIT" in result.note and "expansion needs" in result.note
    assert codec.memory.in_use == 0
    codec.memory = MemoryBudget(512 << 20)
    assert (await ARCHIVE.encode(codec, reference, target, tmp_path / "d2", None)).format_name == (
        "archive"
    )
    assert await ARCHIVE.reference_body(codec, reference, sha, tmp_path / "ref") is not None


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("expanded although the budget cannot hold the expansion")


class _MinizCompressor:
    """What zipfile deflates with, backed by miniz's deflate: zips as Rust's ``zip`` crate
    (miniz_oxide) writes them."""

    def __init__(self, level: int = 6) -> None:
        self._deflater = xdelta_ffi.Deflater(level, xdelta_ffi.MINIZ)

    def compress(self, data: bytes) -> bytes:
        return self._deflater.compress(data)

    def flush(self) -> bytes:
        return self._deflater.compress(b"", finish=True)


def _rust_zip(tree: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, *, zlib_too: bool) -> bytes:
    """A zip of ``tree`` deflated by miniz; with ``zlib_too``, every other member by zlib."""
    import zlib

    turn = iter(range(1 << 20))

    def compressor(compress_type: int, level: int | None = None) -> object:
        if zlib_too and next(turn) % 2:
            return zlib.compressobj(6, zlib.DEFLATED, -15)
        return _MinizCompressor()

    with monkeypatch.context() as patched:
        patched.setattr(zipfile, "_get_compressor", compressor)
        return _zip([(name, body, zipfile.ZIP_DEFLATED) for name, body in tree.items()])


def test_miniz_deflate_streams_the_same_however_it_is_fed() -> None:
    data = random.Random(5).randbytes(300_000) + b"miniz " * 200_000
    for level in range(11):
        whole = xdelta_ffi.deflate_raw(data, level, xdelta_ffi.MINIZ)
        assert xdelta_ffi.inflate_raw(whole)[0] == data
        deflater = xdelta_ffi.Deflater(level, xdelta_ffi.MINIZ)
        pieces = [deflater.compress(data[i : i + 7_777]) for i in range(0, len(data), 7_777)]
        assert b"".join([*pieces, deflater.compress(b"", finish=True)]) == whole
        assert xdelta_ffi.deflate_matches(data, whole, level, xdelta_ffi.MINIZ)
    by_zlib = xdelta_ffi.deflate_raw(data, 6)
    assert not xdelta_ffi.deflate_matches(data, by_zlib, 6, xdelta_ffi.MINIZ)


def test_zips_deflated_by_miniz_expand_and_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _rust_zip(source_tree(1), monkeypatch, zlib_too=False)
    new = _rust_zip(source_tree(2), monkeypatch, zlib_too=False)
    assert roundtrip(old, new, tmp_path) == "archive"
    head, _ = document.Expander(None).expand(new)
    deflated = [s for s in document.parse_head(head).segments if s.kind == document.DEFLATE]
    assert deflated and all(s.mem_level == xdelta_ffi.MINIZ for s in deflated)
    # Stream version 1 did not know miniz: nothing of these zips expands in it.
    assert reference_form(old, version=1).source == old


async def test_version_1_deltas_still_decode_against_version_1_source_forms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from deltaglider_async._engine.cache import MemoryEntry
    from deltaglider_async._engine.codec import CodecRunner
    from deltaglider_async._formats.archive import ARCHIVE

    old = _rust_zip(source_tree(1), monkeypatch, zlib_too=True)
    new = _rust_zip(source_tree(2), monkeypatch, zlib_too=True)
    v1, v2 = reference_form(old, version=1), reference_form(old)
    assert v1.source != v2.source  # miniz's members expand in version 2 only
    (tmp_path / "new.zip").write_bytes(new)
    encoded = _encode_sync(v1, tmp_path / "new.zip", tmp_path / "delta", None, PLAN)
    assert encoded.result is not None
    delta = (tmp_path / "delta").read_bytes()
    assert _split(delta, "t")[0].version == 1

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(delta), 1_000):
            yield delta[start : start + 1_000]

    reference = MemoryEntry(hashlib.sha256(old).hexdigest(), len(old), old)
    codec = CodecRunner(1)
    for _ in range(2):  # the second time, with version 2's form of the reference kept too
        out = [p async for p in ARCHIVE.decode(codec, reference, chunks(), None, "t")]
        assert b"".join(out) == new
        await ARCHIVE.encode(codec, reference, tmp_path / "new.zip", tmp_path / "d2", None)


def test_large_members_only_another_deflater_reproduces_expand_from_version_3(
    tmp_path: Path,
) -> None:
    from .golden import golden_gzipped_data

    old, new = golden_gzipped_data(1), golden_gzipped_data(2)
    v2, v3 = reference_form(old, version=2), reference_form(old, version=3)
    # zlib's level 6 reproduces the small .gz files, so version 2 tries the large ones with it
    # alone; version 3 goes on to GNU gzip's and expands their ~570 KB of text.
    assert len(v3.source) > len(v2.source) + 400_000
    assert roundtrip(old, new, tmp_path) == "archive"
    assert (tmp_path / "delta").stat().st_size < 5_000


def test_a_producer_tries_large_members_with_every_setting_only_a_few_times() -> None:
    params = document._PARAMS[3]
    producer = document._Producer(params, 2, split=False)
    large = document._CHEAP_TRIAL + 1
    producer.worked((6, 8))
    assert producer.trials(large, None) == list(params)
    producer.missed(large)
    producer.missed(large)
    assert producer.trials(large, None) == [(6, 8)]
    assert producer.trials(document._CHEAP_TRIAL, None) == list(params)


def test_a_large_nested_archive_rebuilds_as_a_stream(tmp_path: Path) -> None:
    def war(version: int) -> bytes:
        rng = random.Random(version)
        tree = source_tree(version, files=40, lines=300)
        # a jar of 40 text members and 9 MiB of incompressible ones: over STREAM_MEMBER
        members = [(n, b, zipfile.ZIP_DEFLATED) for n, b in tree.items()]
        members += [(f"blob{i}.bin", rng.randbytes(1 << 20), zipfile.ZIP_STORED) for i in range(9)]
        return _zip([("WEB-INF/lib/app.jar", _zip(members), zipfile.ZIP_DEFLATED)])

    old, new = war(1), war(2)
    head, _ = document.Expander(None).expand(new)
    [jar] = [s for s in document.parse_head(head).segments if s.kind == document.DEFLATE_NESTED]
    assert jar.payload_len > document.STREAM_MEMBER
    assert roundtrip(old, new, tmp_path) == "archive"
