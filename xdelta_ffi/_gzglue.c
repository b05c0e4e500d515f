/* GNU gzip's deflate, so that members gzip(1) compressed (`tar czf`, `gzip -N`) re-deflate exactly.
 *
 * GNU gzip does not use zlib: its deflate is zlib's ancestor and differs from it in the match
 * finder's hash (15 bits with a 32K-symbol block, a pairing no zlib memLevel gives), in trying
 * matches only while the window has full lookahead, in inserting strings up to the end of the
 * input, and in ending a block early when a cheap estimate says it compresses well.  This file
 * re-implements that matcher and block policy and hands every block to the pinned zlib's tree
 * coder (_tr_flush_block), whose Huffman construction gzip shares.  Output is compared against a
 * member's bytes before it is relied on, so an input this does not reproduce only stays
 * compressed.
 */
#include "deflate.h"

#define GZ_WSIZE 0x8000u
#define GZ_WMASK (GZ_WSIZE - 1)
#define GZ_HASH_BITS 15
#define GZ_HASH_SIZE (1u << GZ_HASH_BITS)
#define GZ_HASH_MASK (GZ_HASH_SIZE - 1)
#define GZ_H_SHIFT ((GZ_HASH_BITS + MIN_MATCH - 1) / MIN_MATCH)
#define GZ_LOOKAHEAD (MAX_MATCH + MIN_MATCH + 1)
#define GZ_MAX_DIST (GZ_WSIZE - GZ_LOOKAHEAD)
#define GZ_WINDOW (2 * GZ_WSIZE)
#define GZ_LIT_BUFSIZE 0x8000u
#define GZ_TOO_FAR 4096
#define GZ_NIL 0

typedef struct {
  unsigned short good, lazy, nice, chain;
} gz_config;

/* gzip's parameters per level: good length, lazy (or max insert) length, nice length, chain. */
static const gz_config gz_levels[10] = {
    {0, 0, 0, 0},       {4, 4, 8, 4},         {4, 5, 16, 8},       {4, 6, 32, 32},
    {4, 4, 16, 16},     {8, 16, 32, 32},      {8, 16, 128, 128},   {8, 32, 128, 256},
    {32, 128, 258, 1024}, {32, 258, 258, 4096}};

/* Extra bits of each distance code: RFC 1951, section 3.2.5. */
static const int gz_extra_dbits[D_CODES] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                            6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* A stream is fed its input in pieces of any size but reads it as gzip reads a file: every
 * window fill takes all the room there is (or the rest of the input), so the output never
 * depends on how the input was cut. */
typedef struct dg_gz {
  z_stream strm;
  deflate_state *s;
  int level;
  gz_config cfg;
  unsigned strstart, lookahead, match_start, prev_length, ins_h;
  long block_start;
  int eofile, final, started, need_fill, done;
  unsigned fill_room, fill_got; /* a window fill in progress: room it wants, bytes it has */
  int filling;
  unsigned match_length; /* the matchers' state between steps */
  int match_available;
  unsigned last_lit, last_dist;
  uint8_t *out; /* output not yet taken */
  size_t out_len, out_cap;
  const uint8_t *expect; /* when comparing: the bytes the output must be */
  size_t expect_len, compared;
  int expect_prefix; /* ... or start with (output past them is not compared) */
  int failed; /* 1: differs from expect, 2: out of memory */
  uint16_t head[GZ_HASH_SIZE];
  uint16_t prev[GZ_WSIZE];
  uint8_t window[GZ_WINDOW + MAX_MATCH + MIN_MATCH];
} dg_gz;

#define GZ_UPDATE_HASH(h, c) ((h) = (((h) << GZ_H_SHIFT) ^ (c)) & GZ_HASH_MASK)
#define GZ_INSERT(g, pos, head_out)                                                 \
  (GZ_UPDATE_HASH((g)->ins_h, (g)->window[(pos) + MIN_MATCH - 1]),                 \
   (g)->prev[(pos) & GZ_WMASK] = (uint16_t)((head_out) = (g)->head[(g)->ins_h]), \
   (g)->head[(g)->ins_h] = (uint16_t)(pos))

/* gzip's fill_window: slide when the window is used up, then read.  Consumes from *in; returns
 * 0 while the read waits for input that has not come yet. */
static int gz_fill_window(dg_gz *g, const uint8_t **in, size_t *in_len) {
  unsigned n, m, take;
  if (!g->filling) {
    unsigned more = GZ_WINDOW - g->lookahead - g->strstart;
    if (g->strstart >= GZ_WSIZE + GZ_MAX_DIST) {
      memcpy(g->window, g->window + GZ_WSIZE, GZ_WSIZE);
      g->match_start -= GZ_WSIZE;
      g->strstart -= GZ_WSIZE;
      g->block_start -= (long)GZ_WSIZE;
      for (n = 0; n < GZ_HASH_SIZE; n++) {
        m = g->head[n];
        g->head[n] = (uint16_t)(m >= GZ_WSIZE ? m - GZ_WSIZE : GZ_NIL);
      }
      for (n = 0; n < GZ_WSIZE; n++) {
        m = g->prev[n];
        g->prev[n] = (uint16_t)(m >= GZ_WSIZE ? m - GZ_WSIZE : GZ_NIL);
      }
      more += GZ_WSIZE;
    }
    if (g->eofile) return 1;
    g->filling = 1;
    g->fill_room = more;
    g->fill_got = 0;
  }
  take = *in_len < g->fill_room - g->fill_got ? (unsigned)*in_len : g->fill_room - g->fill_got;
  memcpy(g->window + g->strstart + g->lookahead + g->fill_got, *in, take);
  *in += take;
  *in_len -= take;
  g->fill_got += take;
  if (g->fill_got < g->fill_room && !g->final) return 0;
  g->filling = 0;
  if (g->fill_got == 0) {
    g->eofile = 1;
    /* what gzip does so that no stale bytes enter the last strings' hashes */
    memset(g->window + g->strstart + g->lookahead, 0, MIN_MATCH - 1);
  } else {
    g->lookahead += g->fill_got;
  }
  return 1;
}

static unsigned gz_longest_match(dg_gz *g, unsigned cur_match) {
  unsigned chain_length = g->cfg.chain;
  uint8_t *scan = g->window + g->strstart;
  uint8_t *match;
  int len;
  int best_len = (int)g->prev_length;
  unsigned limit = g->strstart > GZ_MAX_DIST ? g->strstart - GZ_MAX_DIST : GZ_NIL;
  uint8_t *strend = g->window + g->strstart + MAX_MATCH;
  uint8_t scan_end1 = scan[best_len - 1];
  uint8_t scan_end = scan[best_len];
  if (g->prev_length >= g->cfg.good) chain_length >>= 2;
  do {
    match = g->window + cur_match;
    if (match[best_len] != scan_end || match[best_len - 1] != scan_end1 || *match != *scan ||
        *++match != scan[1])
      continue;
    scan += 2, match++;
    do {
    } while (*++scan == *++match && *++scan == *++match && *++scan == *++match &&
             *++scan == *++match && *++scan == *++match && *++scan == *++match &&
             *++scan == *++match && *++scan == *++match && scan < strend);
    len = MAX_MATCH - (int)(strend - scan);
    scan = strend - MAX_MATCH;
    if (len > best_len) {
      g->match_start = cur_match;
      best_len = len;
      if (len >= (int)g->cfg.nice) break;
      scan_end1 = scan[best_len - 1];
      scan_end = scan[best_len];
    }
  } while ((cur_match = g->prev[cur_match & GZ_WMASK]) > limit && --chain_length != 0);
  return (unsigned)best_len;
}

/* Records a literal (dist 0) or a match; true when gzip would end the block here. */
static int gz_tally(dg_gz *g, unsigned dist, unsigned lc) {
  deflate_state *s = g->s;
  s->sym_buf[s->sym_next++] = (uch)dist;
  s->sym_buf[s->sym_next++] = (uch)(dist >> 8);
  s->sym_buf[s->sym_next++] = (uch)lc;
  g->last_lit++;
  if (dist == 0) {
    s->dyn_ltree[lc].Freq++;
  } else {
    g->last_dist++;
    dist--;
    s->dyn_ltree[_length_code[lc] + LITERALS + 1].Freq++;
    s->dyn_dtree[d_code(dist)].Freq++;
  }
  if (g->level > 2 && (g->last_lit & 0xfff) == 0) {
    /* gzip's guess that ending the block now pays: an upper bound of its compressed size */
    ulg out_length = (ulg)g->last_lit * 8L;
    ulg in_length = (ulg)((long)g->strstart - g->block_start);
    int dcode;
    for (dcode = 0; dcode < D_CODES; dcode++)
      out_length += (ulg)s->dyn_dtree[dcode].Freq * (5L + gz_extra_dbits[dcode]);
    out_length >>= 3;
    if (g->last_dist < g->last_lit / 2 && out_length < in_length / 2) return 1;
  }
  return g->last_lit == GZ_LIT_BUFSIZE - 1;
}

static void gz_emit(dg_gz *g) {
  deflate_state *s = g->s;
  size_t n = s->pending;
  if (g->failed == 0 && g->expect != NULL) {
    size_t due = g->compared < g->expect_len ? g->expect_len - g->compared : 0;
    size_t checked = n < due ? n : due;
    if ((n > due && !g->expect_prefix) ||
        memcmp(s->pending_buf, g->expect + g->compared, checked) != 0)
      g->failed = 1;
    g->compared += n;
  } else if (g->failed == 0) {
    if (g->out_len + n > g->out_cap) {
      size_t cap = (g->out_len + n) * 2 + 4096;
      uint8_t *grown = (uint8_t *)realloc(g->out, cap);
      if (grown == NULL) {
        g->failed = 2;
      } else {
        g->out = grown;
        g->out_cap = cap;
      }
    }
    if (g->failed == 0) {
      memcpy(g->out + g->out_len, s->pending_buf, n);
      g->out_len += n;
    }
  }
  s->pending = 0;
  s->pending_out = s->pending_buf;
}

static void gz_flush_block(dg_gz *g, int last) {
  charf *buf = g->block_start >= 0L ? (charf *)&g->window[(unsigned)g->block_start] : Z_NULL;
  _tr_flush_block(g->s, buf, (ulg)((long)g->strstart - g->block_start), last);
  g->last_lit = g->last_dist = 0;
  gz_emit(g);
  g->block_start = g->strstart;
}

/* One step of gzip's deflate_fast (levels 1-3). */
static void gz_fast_step(dg_gz *g) {
  unsigned hash_head = GZ_NIL;
  int flush;
  GZ_INSERT(g, g->strstart, hash_head);
  if (hash_head != GZ_NIL && g->strstart - hash_head <= GZ_MAX_DIST &&
      g->strstart <= GZ_WINDOW - GZ_LOOKAHEAD) {
    g->match_length = gz_longest_match(g, hash_head);
    if (g->match_length > g->lookahead) g->match_length = g->lookahead;
  }
  if (g->match_length >= MIN_MATCH) {
    flush = gz_tally(g, g->strstart - g->match_start, g->match_length - MIN_MATCH);
    g->lookahead -= g->match_length;
    if (g->match_length <= g->cfg.lazy) {
      g->match_length--;
      do {
        g->strstart++;
        GZ_INSERT(g, g->strstart, hash_head);
      } while (--g->match_length != 0);
      g->strstart++;
    } else {
      g->strstart += g->match_length;
      g->match_length = 0;
      g->ins_h = g->window[g->strstart];
      GZ_UPDATE_HASH(g->ins_h, g->window[g->strstart + 1]);
    }
  } else {
    flush = gz_tally(g, 0, g->window[g->strstart]);
    g->lookahead--;
    g->strstart++;
  }
  if (flush) gz_flush_block(g, 0);
}

/* One step of gzip's lazy deflate (levels 4-9). */
static void gz_lazy_step(dg_gz *g) {
  unsigned hash_head = GZ_NIL;
  unsigned prev_match;
  GZ_INSERT(g, g->strstart, hash_head);
  g->prev_length = g->match_length;
  prev_match = g->match_start;
  g->match_length = MIN_MATCH - 1;
  if (hash_head != GZ_NIL && g->prev_length < g->cfg.lazy &&
      g->strstart - hash_head <= GZ_MAX_DIST && g->strstart <= GZ_WINDOW - GZ_LOOKAHEAD) {
    g->match_length = gz_longest_match(g, hash_head);
    if (g->match_length > g->lookahead) g->match_length = g->lookahead;
    if (g->match_length == MIN_MATCH && g->strstart - g->match_start > GZ_TOO_FAR)
      g->match_length--;
  }
  if (g->prev_length >= MIN_MATCH && g->match_length <= g->prev_length) {
    int flush = gz_tally(g, g->strstart - 1 - prev_match, g->prev_length - MIN_MATCH);
    g->lookahead -= g->prev_length - 1;
    g->prev_length -= 2;
    do {
      g->strstart++;
      GZ_INSERT(g, g->strstart, hash_head);
    } while (--g->prev_length != 0);
    g->match_available = 0;
    g->match_length = MIN_MATCH - 1;
    g->strstart++;
    if (flush) gz_flush_block(g, 0);
  } else if (g->match_available) {
    if (gz_tally(g, 0, g->window[g->strstart - 1])) gz_flush_block(g, 0);
    g->strstart++;
    g->lookahead--;
  } else {
    g->match_available = 1;
    g->strstart++;
    g->lookahead--;
  }
}

dg_gz *dg_gz_new(int level) {
  dg_gz *g;
  if (level < 1 || level > 9) return NULL;
  g = (dg_gz *)calloc(1, sizeof(dg_gz));
  if (g == NULL) return NULL;
  /* memLevel 9: a 32K-symbol buffer, the size of gzip's */
  if (deflateInit2(&g->strm, level, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
    free(g);
    return NULL;
  }
  g->s = (deflate_state *)g->strm.state;
  g->level = level;
  g->cfg = gz_levels[level];
  g->need_fill = 1;
  g->match_length = level <= 3 ? 0 : MIN_MATCH - 1;
  g->prev_length = MIN_MATCH - 1;
  return g;
}

void dg_gz_free(dg_gz *g) {
  if (g == NULL) return;
  deflateEnd(&g->strm);
  free(g->out);
  free(g);
}

/* Feeds input (all of it is consumed); final marks its end.  Returns 0, or -1 once the output
 * differs from the expected bytes (see dg_gzip_matches) or memory ran out. */
int dg_gz_feed(dg_gz *g, const uint8_t *in, size_t in_len, int final) {
  if (final) g->final = 1;
  while (!g->done && g->failed == 0) {
    if (g->need_fill) {
      if (!gz_fill_window(g, &in, &in_len)) return 0;
      g->need_fill = g->lookahead < GZ_LOOKAHEAD && !g->eofile;
      if (!g->need_fill && !g->started) {
        unsigned j;
        g->started = 1;
        for (j = 0; j < MIN_MATCH - 1; j++) GZ_UPDATE_HASH(g->ins_h, g->window[j]);
      }
      continue;
    }
    if (g->lookahead == 0) {
      if (g->level > 3 && g->match_available) gz_tally(g, 0, g->window[g->strstart - 1]);
      if (g->failed == 0) gz_flush_block(g, 1);
      g->done = 1;
      break;
    }
    if (g->level <= 3) gz_fast_step(g);
    else gz_lazy_step(g);
    g->need_fill = g->lookahead < GZ_LOOKAHEAD && !g->eofile;
  }
  return g->failed == 0 ? 0 : -1;
}

/* The output made so far and not yet taken; taking it empties it. */
size_t dg_gz_take(dg_gz *g, uint8_t *out, size_t cap) {
  size_t n = g->out_len < cap ? g->out_len : cap;
  memcpy(out, g->out, n);
  memmove(g->out, g->out + n, g->out_len - n);
  g->out_len -= n;
  return n;
}

size_t dg_gz_pending(const dg_gz *g) { return g->out_len; }

/* Whether `gzip -level` raw-deflates in[0..in_len) to exactly expect[0..expect_len); stops at
 * the first block that differs.  -1: bad level or no memory. */
int dg_gzip_matches(int level, const uint8_t *in, size_t in_len, const uint8_t *expect,
                    size_t expect_len) {
  dg_gz *g = dg_gz_new(level);
  int result;
  if (g == NULL) return -1;
  g->expect = expect;
  g->expect_len = expect_len;
  dg_gz_feed(g, in, in_len, 1);
  result = g->failed == 2 ? -1 : (g->failed == 0 && g->done && g->compared == expect_len);
  dg_gz_free(g);
  return result;
}

/* GNU gzip's deflate (levels 4-9) resumed at a byte-aligned block boundary of its stream, as
 * dg_deflate_resume does for zlib's.  gzip's window sits at a position its history fixes: it
 * slides by 32 KiB whenever the match position passes 64 KiB - 262 of it, so at contents offset
 * `at` it holds contents from 32 KiB * slides, slides = #{k >= 0 : 32 KiB * (k + 2) - 262 < at}
 * (the caller passes in[] from there: `begin` = at - that); every string before `at` in it is
 * hashed, in order, as gzip's lazy matcher hashes them all.  Output and result as for
 * dg_deflate_resume (finish: the chunk ends the stream). */
int dg_gzip_resume(int level, const uint8_t *in, size_t begin, size_t in_len, int finish,
                   uint8_t *out, size_t out_len, const uint8_t *expect) {
  dg_gz *g;
  size_t filled, pos;
  unsigned head_out;
  int result = 0;
  if (level < 4 || level > 9 || begin > in_len || begin > GZ_WINDOW - GZ_LOOKAHEAD) return -1;
  g = dg_gz_new(level);
  if (g == NULL) return -1;
  filled = in_len < GZ_WINDOW ? in_len : GZ_WINDOW;
  memcpy(g->window, in, filled);
  g->strstart = (unsigned)begin;
  g->lookahead = (unsigned)(filled - begin);
  g->block_start = (long)begin;
  g->started = 1;
  g->ins_h = 0;
  GZ_UPDATE_HASH(g->ins_h, g->window[0]);
  GZ_UPDATE_HASH(g->ins_h, g->window[1]);
  for (pos = 0; pos < begin; pos++) GZ_INSERT(g, pos, head_out);
  (void)head_out;
  g->need_fill = g->lookahead < GZ_LOOKAHEAD;
  g->expect = expect;
  g->expect_len = expect == NULL ? 0 : out_len;
  g->expect_prefix = !finish;
  if (dg_gz_feed(g, in + filled, in_len - filled, finish) == 0 && !finish) {
    _tr_flush_bits(g->s); /* what the last block left in the bit buffer (it ended on a byte) */
    gz_emit(g);
  }
  if (g->failed == 2) {
    result = -1;
  } else if (expect != NULL) {
    result = g->failed == 0 && g->compared >= out_len && (!finish || (g->done && g->compared == out_len));
    if (result) memcpy(out, expect, out_len);
  } else if (g->out_len >= out_len && (!finish || (g->done && g->out_len == out_len))) {
    memcpy(out, g->out, out_len);
    result = 1;
  }
  dg_gz_free(g);
  return result;
}
