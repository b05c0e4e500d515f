"""cffi builder for ``xdelta_ffi._xdelta3_cffi`` (run by setup.py, never imported at runtime).

The xdelta3 3.1.x C sources come from the pinned build requirement ``xdelta3==0.0.5``, which
installs them as package data under ``xdelta3/lib/``.  Its own Python extension is not used (and
not imported: ``find_spec`` only locates the package).  The library is compiled in library mode:
no ``NOT_MAIN`` (that would drag in the command-line program), 32-bit ``usize_t`` to halve the
hash tables, and DJW/FGK/LZMA secondary compressors because Debian's ``xdelta3`` writes LZMA.
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

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
size_t dg_pooled_bytes(void);

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

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "xdelta_ffi._xdelta3_cffi",
    '#include "xdelta3.h"\n#include "xdelta3.c"\n' + (HERE / "_glue.c").read_text(),
    include_dirs=[_xdelta3_include_dir()],
    libraries=["lzma"],
    define_macros=_MACROS,
    extra_compile_args=["-O3", "-Wno-unused-function", "-Wno-unused-variable"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
