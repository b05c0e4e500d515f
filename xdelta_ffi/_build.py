"""cffi builder for ``xdelta_ffi._xdelta3_cffi`` (run by setup.py, never imported at runtime).

The xdelta3 3.1.x C sources come from the pinned build requirement ``xdelta3==0.0.5``, which
installs them as package data under ``xdelta3/lib/``.  Its own Python extension is not used (and
not imported: ``find_spec`` only locates the package).  The library is compiled in library mode:
no ``NOT_MAIN`` (that would drag in the command-line program), 32-bit ``usize_t`` to halve the
hash tables, and DJW/FGK/LZMA secondary compressors because Debian's ``xdelta3`` writes LZMA.

zlib (the deflater that rebuilds archive members byte-exact, so it must be the same code on every
machine) comes from a pinned registry artifact too.  No PyPI wheel installs zlib's C sources, so
the build takes them from a pinned PyPI *sdist* that vendors madler's zlib: ``grpcio==1.85.3``
(``third_party/zlib``, zlib 1.3.1.1), verified by SHA-256 and cached outside the repository
(``DG_BUILD_CACHE``, default ``~/.cache/deltaglider-async-build``).  ``DG_ZLIB_SDIST`` may name a
local copy of that tarball for offline builds.  Only zlib's deflate/inflate files are compiled, with
``Z_PREFIX`` and hidden visibility so that nothing binds them to the system's libz.

miniz's deflate (tdefl, 2.0.8), which rebuilds members written by Rust's miniz_oxide, comes the
same way from the pinned sdist ``duckdb==2.0.1`` (``external/duckdb/third_party/miniz``, C++ in
namespace ``duckdb_miniz``; ``DG_MINIZ_SDIST`` names a local copy).  ``_mzglue.cpp`` wraps it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import struct
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import NamedTuple

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _xdelta3_include_dir() -> str:
    spec = importlib.util.find_spec("xdelta3")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the build requirement xdelta3==0.0.5 is not installed; build with "
            "`pip install .` (it installs build requirements) or install it first"
        )
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    if not (lib / "xdelta3.c").is_file():
        raise RuntimeError(f"xdelta3 C sources not found under {lib}")
    return str(lib)


class PinnedSources(NamedTuple):
    """C sources vendored by a pinned PyPI sdist: the tarball (URL, SHA-256) and the files
    taken from one of its directories."""

    name: str
    sdist: str
    sha256: str
    url: str
    member_dir: str
    files: tuple[str, ...]
    #: environment variable that may name a local copy of the tarball (offline builds)
    local_env: str


ZLIB = PinnedSources(
    name="zlib",
    sdist="grpcio-1.85.3.tar.gz",
    sha256="8e18f15d1b09b8771edbf59d634b26cbe4903bc2577cb667264934a6655eb8b4",
    url="https://files.pythonhosted.org/packages/1e/48/"
    "8e14d92cca434b448c7018654da80f574aea3663f7d1f87ed044455c45c6/grpcio-1.85.3.tar.gz",
    member_dir="grpcio-1.85.3/third_party/zlib/",
    files=(
        "adler32.c",
        "crc32.c",
        "deflate.c",
        "inffast.c",
        "inflate.c",
        "inftrees.c",
        "trees.c",
        "zutil.c",
    ),
    local_env="DG_ZLIB_SDIST",
)

#: miniz 2.0.8's deflate (tdefl), what Rust's miniz_oxide (flate2's default backend: maturin
#: wheels, the ``zip`` crate) reproduces; DuckDB vendors it as C++ in namespace duckdb_miniz
MINIZ = PinnedSources(
    name="miniz",
    sdist="duckdb-2.0.1.tar.gz",
    sha256="5b3f493140e35b75298ee0fc606d98e3065e8601e64fe81b09326de7a6fd68e0",
    url="https://files.pythonhosted.org/packages/49/d8/"
    "ebb8ff07c617d1a8c25e7f7718a6955d2d5f7e539ec5219be1da478c0a42/duckdb-2.0.1.tar.gz",
    member_dir="duckdb-2.0.1/external/duckdb/third_party/miniz/",
    files=("miniz.cpp",),
    local_env="DG_MINIZ_SDIST",
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sources_dir(pinned: PinnedSources) -> Path:
    """The pinned sources (every C/C++ file and header of their directory, and its LICENSE),
    extracted once from the sdist into the build cache."""
    cache = Path(
        os.environ.get("DG_BUILD_CACHE") or Path.home() / ".cache" / "deltaglider-async-build"
    )
    target = cache / f"{pinned.name}-{pinned.sha256[:16]}"
    if (target / pinned.files[0]).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tarball = Path(os.environ.get(pinned.local_env) or cache / pinned.sdist)
    if not tarball.is_file() or _sha256(tarball) != pinned.sha256:
        tmp = cache / (pinned.sdist + ".part")
        with urllib.request.urlopen(pinned.url, timeout=300) as resp, tmp.open("wb") as out:
            shutil.copyfileobj(resp, out)
        if _sha256(tmp) != pinned.sha256:
            tmp.unlink()
            raise RuntimeError(f"{pinned.url}: SHA-256 mismatch, refusing to build with it")
        tarball = cache / pinned.sdist
        os.replace(tmp, tarball)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{pinned.name}-"))
    prefix = pinned.member_dir
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            name = member.name
            if (
                member.isfile()
                and name.startswith(prefix)
                and "/" not in name[len(prefix) :]
                and (name.endswith((".c", ".h", ".cpp", ".hpp")) or name.endswith("LICENSE"))
            ):
                source = tar.extractfile(member)
                assert source is not None
                (staging / name[len(prefix) :]).write_bytes(source.read())
    if not (staging / pinned.files[0]).is_file():
        raise RuntimeError(f"{pinned.sdist} has no {prefix}{pinned.files[0]}")
    try:
        os.replace(staging, target)
    except OSError:  # a concurrent build got there first
        shutil.rmtree(staging, ignore_errors=True)
    return target


CDEF = """
typedef struct dg_codec dg_codec;

#define DG_NEED_INPUT 0
#define DG_OUTPUT 1
#define DG_NEED_BLOCK 2
#define DG_DONE 3
#define DG_ERROR -1

#define DG_ERR_INTERNAL 1
#define DG_ERR_CORRUPT 2
#define DG_ERR_TRUNCATED 3
#define DG_ERR_MISMATCH 4
#define DG_ERR_SOURCE_READ 5

void dg_global_init(void);
dg_codec *dg_new(int encoding, int level, uint32_t flags, uint32_t winsize, uint64_t src_size,
                 uint32_t blksize, uint32_t nslots, uint64_t src_winsize, uint32_t large_step,
                 int src_fd, const uint8_t *src_mem, char *err, size_t errlen);
void dg_free(dg_codec *c);
void dg_set_input(dg_codec *c, const uint8_t *data, size_t len);
void dg_close_input(dg_codec *c);
void dg_require_checksums(dg_codec *c, int on);
int dg_run(dg_codec *c);
const uint8_t *dg_output(dg_codec *c, size_t *len);
int64_t dg_wanted_block(dg_codec *c);
int dg_supply_block(dg_codec *c, int64_t blkno, const uint8_t *data, size_t len);
const char *dg_error(dg_codec *c);
int dg_error_code(dg_codec *c);
int dg_error_kind(dg_codec *c);
uint64_t dg_cache_hits(dg_codec *c);
uint64_t dg_cache_misses(dg_codec *c);
uint32_t dg_adler32_kernel(const uint8_t *buf, size_t len, int vector);
int dg_adler32_vectorized(void);
size_t dg_release_pool(void);
void dg_set_pool_limit(size_t limit);
size_t dg_pooled_bytes(void);

typedef struct dg_z dg_z;
const char *dg_z_version(void);
dg_z *dg_z_new(int deflating, int level, int window_bits, int mem_level, int strategy);
void dg_z_free(dg_z *z);
int dg_z_run(dg_z *z, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, int finish,
             size_t *used, size_t *made);
int dg_deflate_matches(int level, int window_bits, int mem_level, int strategy, const uint8_t *in,
                       size_t in_len, const uint8_t *expect, size_t expect_len);
void dg_bytes_combine(uint8_t *out, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                      int subtract);
long dg_deflate_block_ends(const uint8_t *in, size_t in_len, size_t *contents_at,
                           size_t *compressed_at, size_t cap);
int dg_deflate_resume(int level, int mem_level, const uint8_t *in, size_t dict_len, size_t in_len,
                      int finish, uint8_t *out, size_t out_len, const uint8_t *expect);
void dg_block_sums(const uint8_t *data, size_t count, uint32_t *sums);

typedef struct dg_gz dg_gz;
dg_gz *dg_gz_new(int level);
void dg_gz_free(dg_gz *g);
int dg_gz_feed(dg_gz *g, const uint8_t *in, size_t in_len, int final);
size_t dg_gz_take(dg_gz *g, uint8_t *out, size_t cap);
size_t dg_gz_pending(const dg_gz *g);
int dg_gzip_matches(int level, const uint8_t *in, size_t in_len, const uint8_t *expect,
                    size_t expect_len);
int dg_gzip_resume(int level, const uint8_t *in, size_t begin, size_t in_len, int finish,
                   uint8_t *out, size_t out_len, const uint8_t *expect);


#define XD3_SEC_DJW ...
#define XD3_SEC_FGK ...
#define XD3_SEC_LZMA ...
#define XD3_SEC_NODATA ...
#define XD3_ADLER32 ...
#define XD3_ALLOCSIZE ...
#define XD3_INVALID_INPUT ...
#define XD3_INTERNAL ...
#define XD3_INVALID ...
#define XD3_UNIMPLEMENTED ...
#define XD3_TOOFARBACK ...
"""

_SIZES = {
    "SIZEOF_SIZE_T": struct.calcsize("N"),
    "SIZEOF_UNSIGNED_LONG": struct.calcsize("L"),
    "SIZEOF_UNSIGNED_INT": struct.calcsize("I"),
    "SIZEOF_UNSIGNED_LONG_LONG": struct.calcsize("Q"),
}

_MACROS = [
    *((name, str(size)) for name, size in _SIZES.items()),
    ("XD3_MAIN", "0"),
    ("XD3_DEBUG", "0"),
    ("REGRESSION_TEST", "0"),
    ("XD3_USE_LARGEFILE64", "1"),
    ("XD3_USE_LARGESIZET", "0"),
    ("SECONDARY_DJW", "1"),
    ("SECONDARY_FGK", "1"),
    ("SECONDARY_LZMA", "1"),
]


def _header_cdef(header: Path) -> str:
    """The declarations a glue header marks for cffi (which takes no preprocessor lines)."""
    text = header.read_text()
    return text.split("/* cdef: from here")[1].split("*/", 1)[1].split("/* cdef: end */")[0]


ZLIB_DIR = _sources_dir(ZLIB)
MINIZ_DIR = _sources_dir(MINIZ)
ffibuilder = FFI()
ffibuilder.cdef(CDEF + _header_cdef(HERE / "_mzglue.h"))
ffibuilder.set_source(
    "xdelta_ffi._xdelta3_cffi",
    '#include "xdelta3.h"\n#include "xdelta3.c"\n'
    + (HERE / "_glue.c").read_text()
    + (HERE / "_zglue.c").read_text()
    + (HERE / "_gzglue.c").read_text()
    + '#include "_mzglue.h"\n',
    sources=[
        *(str(ZLIB_DIR / name) for name in ZLIB.files),
        *(str(MINIZ_DIR / name) for name in MINIZ.files),
        "xdelta_ffi/_mzglue.cpp",
    ],
    include_dirs=[_xdelta3_include_dir(), str(ZLIB_DIR), str(MINIZ_DIR), str(HERE)],
    libraries=["lzma"],
    define_macros=[*_MACROS, ("Z_PREFIX", "1")],
    extra_compile_args=[
        "-O3",
        "-fvisibility=hidden",
        "-fno-exceptions",
        "-Wno-unused-function",
        "-Wno-unused-variable",
    ],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
