/* Raw deflate by miniz's tdefl, compiled from the pinned sources (see _build.py).
 *
 * tdefl is the deflater that Rust's miniz_oxide (flate2's default backend) ports: maturin wheels
 * and everything written with Rust's zip crate carry its output, which no zlib setting
 * reproduces.  The archive format rebuilds such members with this copy; its C++ namespace and
 * hidden visibility keep it apart from any other miniz in the process.  Streaming works as for
 * zlib (dg_z_run): tdefl's output does not depend on how its input is cut.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "miniz.hpp"
#include "_mzglue.h"

using duckdb_miniz::tdefl_compressor;

struct dg_mz {
  tdefl_compressor comp;
};

static int mz_flags(int level) {
  return (int)duckdb_miniz::tdefl_create_comp_flags_from_zip_params(level, -15, 0);
}

extern "C" {

dg_mz *dg_mz_new(int level) {
  dg_mz *m;
  if (level < 0 || level > 10) return NULL;
  m = (dg_mz *)malloc(sizeof(dg_mz));
  if (m == NULL) return NULL;
  if (duckdb_miniz::tdefl_init(&m->comp, NULL, NULL, mz_flags(level)) !=
      duckdb_miniz::TDEFL_STATUS_OKAY) {
    free(m);
    return NULL;
  }
  return m;
}

void dg_mz_free(dg_mz *m) { free(m); }

/* One step: consumes from in, produces into out.  Returns 1 once the stream is complete, 0 while
 * it is not, negative on error; *used and *made say how much moved. */
int dg_mz_run(dg_mz *m, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
              int finish, size_t *used, size_t *made) {
  size_t in_size = in_len, out_size = out_cap;
  duckdb_miniz::tdefl_status rc =
      duckdb_miniz::tdefl_compress(&m->comp, in, &in_size, out, &out_size,
                                   finish ? duckdb_miniz::TDEFL_FINISH
                                          : duckdb_miniz::TDEFL_NO_FLUSH);
  *used = in_size;
  *made = out_size;
  return (int)rc;
}

/* Whether tdefl at this level turns in[0..in_len) into exactly expect[0..expect_len), comparing
 * as output appears (a wrong guess costs about one block). */
int dg_miniz_matches(int level, const uint8_t *in, size_t in_len, const uint8_t *expect,
                     size_t expect_len) {
  uint8_t buf[1 << 15];
  size_t seen = 0;
  int result = 0;
  dg_mz *m = dg_mz_new(level);
  if (m == NULL) return -1;
  for (;;) {
    size_t feed = in_len > (1u << 16) ? (1u << 16) : in_len, used, made;
    int rc = dg_mz_run(m, in, feed, buf, sizeof buf, feed == in_len, &used, &made);
    if (rc < 0) { result = -1; break; }
    in += used;
    in_len -= used;
    if (seen + made > expect_len || memcmp(buf, expect + seen, made) != 0) break;
    seen += made;
    if (rc == duckdb_miniz::TDEFL_STATUS_DONE) { result = seen == expect_len; break; }
  }
  dg_mz_free(m);
  return result;
}

}  /* extern "C" */
