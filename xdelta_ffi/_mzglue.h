/* miniz's deflate as _mzglue.cpp exposes it to the C side of the extension. */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cdef: from here to the end marker, what _build.py hands cffi as well */
typedef struct dg_mz dg_mz;
dg_mz *dg_mz_new(int level);
void dg_mz_free(dg_mz *m);
int dg_mz_run(dg_mz *m, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
              int finish, size_t *used, size_t *made);
int dg_miniz_matches(int level, const uint8_t *in, size_t in_len, const uint8_t *expect,
                     size_t expect_len);
/* cdef: end */

#ifdef __cplusplus
}
#endif
