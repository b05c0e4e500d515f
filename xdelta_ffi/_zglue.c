/* Raw deflate/inflate on the pinned zlib compiled into this extension (see _build.py).
 *
 * The archive format rebuilds compressed members by deflating their contents again, so the
 * deflater must be the same code on every machine: never the system's libz (zlib-ng on some
 * distributions), which Python's zlib module and other extensions may have loaded.  zlib is built
 * with Z_PREFIX and hidden visibility, so these calls can only bind to our copy.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "zlib.h"

typedef struct dg_z {
  z_stream strm;
  int deflating;
} dg_z;

const char *dg_z_version(void) { return zlibVersion(); }

dg_z *dg_z_new(int deflating, int level, int window_bits, int mem_level, int strategy) {
  dg_z *z = (dg_z *)calloc(1, sizeof(dg_z));
  int rc;
  if (z == NULL) return NULL;
  z->deflating = deflating;
  rc = deflating ? deflateInit2(&z->strm, level, Z_DEFLATED, window_bits, mem_level, strategy)
                 : inflateInit2(&z->strm, window_bits);
  if (rc != Z_OK) {
    free(z);
    return NULL;
  }
  return z;
}

void dg_z_free(dg_z *z) {
  if (z == NULL) return;
  if (z->deflating) deflateEnd(&z->strm);
  else inflateEnd(&z->strm);
  free(z);
}

/* One step: consumes from in, produces into out.  Returns zlib's code (Z_STREAM_END once the
 * stream is complete); *used and *made say how much moved. */
int dg_z_run(dg_z *z, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, int finish,
             size_t *used, size_t *made) {
  int rc;
  uInt in_chunk = in_len > 0x40000000u ? 0x40000000u : (uInt)in_len;
  uInt out_chunk = out_cap > 0x40000000u ? 0x40000000u : (uInt)out_cap;
  z->strm.next_in = (Bytef *)in;
  z->strm.avail_in = in_chunk;
  z->strm.next_out = out;
  z->strm.avail_out = out_chunk;
  if (z->deflating) rc = deflate(&z->strm, finish ? Z_FINISH : Z_NO_FLUSH);
  else rc = inflate(&z->strm, Z_NO_FLUSH);
  *used = in_chunk - z->strm.avail_in;
  *made = out_chunk - z->strm.avail_out;
  return rc;
}

/* Whether deflating in[0..in_len) with these parameters gives exactly expect[0..expect_len).
 * Compares as output appears and stops at the first difference, so a wrong guess costs about
 * one deflate block, not the whole member. */
int dg_deflate_matches(int level, int window_bits, int mem_level, int strategy, const uint8_t *in,
                       size_t in_len, const uint8_t *expect, size_t expect_len) {
  z_stream s;
  uint8_t buf[1 << 15];
  size_t seen = 0;
  int rc, result = 0;
  memset(&s, 0, sizeof s);
  if (deflateInit2(&s, level, Z_DEFLATED, window_bits, mem_level, strategy) != Z_OK) return -1;
  s.next_in = (Bytef *)in;
  for (;;) {
    /* Small input steps, so that the first block deflate emits (after ~16K symbols) is
     * compared before the rest of the member is compressed. */
    size_t made;
    uInt feed = in_len > (1u << 16) ? (1u << 16) : (uInt)in_len;
    s.avail_in = feed;
    s.next_out = buf;
    s.avail_out = sizeof buf;
    rc = deflate(&s, feed == in_len ? Z_FINISH : Z_NO_FLUSH);
    in_len -= feed - s.avail_in;
    made = sizeof buf - s.avail_out;
    if (rc == Z_STREAM_ERROR) { result = -1; break; }
    if (seen + made > expect_len || memcmp(buf, expect + seen, made) != 0) break;
    seen += made;
    if (rc == Z_STREAM_END) { result = seen == expect_len; break; }
  }
  deflateEnd(&s);
  return result;
}

/* out[i] = a[i] + b[i], or a[i] - b[i] when subtracting (mod 256, b zero-padded to na): the
 * archive format's byte deltas of headers and tables. */
void dg_bytes_combine(uint8_t *out, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                      int subtract) {
  size_t i;
  if (subtract)
    for (i = 0; i < nb; i++) out[i] = (uint8_t)(a[i] - b[i]);
  else
    for (i = 0; i < nb; i++) out[i] = (uint8_t)(a[i] + b[i]);
  if (na > nb) memcpy(out + nb, a + nb, na - nb);
}

/* Where the blocks of a raw deflate stream end on a byte boundary (the final block excluded):
 * up to cap pairs of (contents offset, compressed offset).  These are the points a deflate of
 * the contents may be resumed from (dg_deflate_resume).  Returns how many were found, -1 when
 * the stream does not inflate. */
long dg_deflate_block_ends(const uint8_t *in, size_t in_len, size_t *contents_at,
                           size_t *compressed_at, size_t cap) {
  z_stream s;
  uint8_t buf[1 << 16];
  long found = 0;
  int rc;
  memset(&s, 0, sizeof s);
  if (inflateInit2(&s, -15) != Z_OK) return -1;
  s.next_in = (Bytef *)in;
  s.avail_in = in_len > 0x40000000u ? 0x40000000u : (uInt)in_len;
  for (;;) {
    int bits;
    s.next_out = buf;
    s.avail_out = sizeof buf;
    rc = inflate(&s, Z_BLOCK);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK) { found = -1; break; } /* Z_BUF_ERROR: truncated */
    bits = s.data_type & 63;
    if ((s.data_type & 128) && !(s.data_type & 64) && bits % 8 == 0 && (size_t)found < cap) {
      contents_at[found] = s.total_out;
      compressed_at[found] = s.total_in - bits / 8;
      found++;
    }
  }
  inflateEnd(&s);
  return found;
}

/* Deflate resumed at a byte-aligned block boundary of a raw zlib stream: in[0..dict_len) is the
 * contents before the boundary (the last 32 KiB of it are preset as the window), the chunk's
 * contents follow up to in_len (with some lookahead past the chunk unless it ends the stream,
 * `finish`).  Writes the chunk's out_len bytes of output to out; with expect, compares them as
 * they appear and stops at the first difference.  Returns 1 when out_len bytes were made (and
 * matched; with finish, the stream also ended there), 0 when not, -1 on zlib's refusal.  For
 * zlib's lazy-matching levels (4-9) a deflate resumed so mostly continues the original exactly;
 * the archive format verifies every chunk when it writes. */
int dg_deflate_resume(int level, int mem_level, const uint8_t *in, size_t dict_len, size_t in_len,
                      int finish, uint8_t *out, size_t out_len, const uint8_t *expect) {
  z_stream s;
  size_t made = 0, window = dict_len > 32768 ? 32768 : dict_len;
  int rc, result = 0;
  memset(&s, 0, sizeof s);
  if (dict_len > in_len) return -1;
  if (deflateInit2(&s, level, Z_DEFLATED, -15, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
  if (window && deflateSetDictionary(&s, in + dict_len - window, (uInt)window) != Z_OK) {
    deflateEnd(&s);
    return -1;
  }
  in += dict_len;
  in_len -= dict_len;
  s.next_in = (Bytef *)in;
  for (;;) {
    size_t step;
    uint8_t *at = out + made;
    uInt feed = in_len > (1u << 16) ? (1u << 16) : (uInt)in_len;
    int last = feed == in_len;
    s.avail_in = feed;
    s.next_out = at;
    step = out_len - made > (1u << 16) ? (1u << 16) : out_len - made;
    s.avail_out = (uInt)step;
    rc = deflate(&s, last && finish ? Z_FINISH : Z_NO_FLUSH);
    in_len -= feed - s.avail_in;
    step -= s.avail_out;
    if (rc == Z_STREAM_ERROR) { result = -1; break; }
    if (expect != NULL && memcmp(at, expect + made, step) != 0) break;
    made += step;
    if (made == out_len) {
      if (finish) { /* nothing may follow */
        uint8_t extra;
        s.next_out = &extra;
        s.avail_out = 1;
        if (rc != Z_STREAM_END) rc = deflate(&s, Z_FINISH);
        result = rc == Z_STREAM_END && s.avail_out == 1 && in_len == 0 && s.avail_in == 0;
      } else {
        result = 1;
      }
      break;
    }
    if (rc == Z_STREAM_END || (last && s.avail_in == 0 && s.avail_out != 0 && !finish)) break;
  }
  deflateEnd(&s);
  return result;
}

/* The byte sum of each of count 512-byte blocks (tar header checksums). */
void dg_block_sums(const uint8_t *data, size_t count, uint32_t *sums) {
  size_t i, j;
  for (i = 0; i < count; i++) {
    uint32_t total = 0;
    for (j = 0; j < 512; j++) total += data[i * 512 + j];
    sums[i] = total;
  }
}
