/* Streaming glue around one xd3_stream.
 *
 * Compiled in the same translation unit as xdelta3.c (see _build.py), so it may use the library's
 * static helpers and matcher presets.  Python drives dg_run(); everything that can be answered in
 * C is: source blocks come from memory, from the file descriptor by pread(), or from a small CLOCK
 * block cache, and only a cache miss on a caller-supplied source returns to Python.  Every call is
 * made by cffi with the GIL released.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DG_HAVE_AVX2_KERNEL 1
#endif

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

typedef struct dg_codec {
  xd3_stream stream;
  xd3_config config;
  xd3_source source;
  int encoding;

  /* Source: exactly one of src_mem / src_fd / "caller supplies blocks" is in use. */
  const uint8_t *src_mem;
  int src_fd;
  uint64_t src_size;
  uint32_t blksize;
  int64_t wanted_blkno;

  /* Block cache (CLOCK replacement): slot_of[blkno] is the slot holding that block, or -1. */
  uint32_t nslots;
  uint8_t *slot_data;
  int64_t *slot_blkno;
  uint8_t *slot_used; /* touched again since the hand last passed */
  int32_t *slot_of;
  uint64_t nblocks;
  uint32_t hand;
  uint64_t hits, misses;

  /* Input not yet handed to xd3.  Trap: never more than winsize bytes per xd3_avail_input. */
  const uint8_t *in_ptr;
  size_t in_rem;
  int want_input;
  int input_closed;
  int flush_sent;
  int output_pending;
  int done;
  int failed;
  int failed_kind; /* DG_ERR_*: what went wrong, for callers to classify without parsing text */
  int require_checksums;
  uint64_t total_out;
  char errmsg[256];
} dg_codec;

static const uint8_t dg_empty[1] = {0};

/* Window checksums.  xdelta3's scalar adler32 (4.2 GB/s measured here) was most of the decoder's
 * time: in-process, a 256 MiB decode ran at 2.5 GB/s with it and 5.7 GB/s with the 30 GB/s AVX2
 * kernel below.  The codec therefore computes the sums itself: the encoder hands xd3 each window's sum as a "recode" checksum
 * and the decoder verifies with XD3_ADLER32_NOVER set, both through dg_adler32(), which uses the
 * AVX2 kernel below when the CPU has it and the library's own function otherwise. */
#define DG_A32_BASE 65521u

#ifdef DG_HAVE_AVX2_KERNEL
__attribute__((target("avx2"))) static uint64_t dg_sum_u32_lanes(__m256i v) {
  uint32_t lanes[8];
  uint64_t sum = 0;
  int i;
  _mm256_storeu_si256((__m256i *)lanes, v);
  for (i = 0; i < 8; i++) sum += lanes[i];
  return sum;
}

/* Per 32-byte block b[0..31] with running sums s1, s2:
 *   s1' = s1 + sum(b),  s2' = s2 + 32*s1 + sum((32 - i) * b[i]).
 * Blocks are summed in vector lanes (byte sums by SAD, weighted sums by multiply-add) and reduced
 * modulo 65521 every 1024 blocks, before any 32-bit lane can overflow. */
__attribute__((target("avx2"))) static uint32_t dg_adler32_avx2(uint32_t adler,
                                                                 const uint8_t *buf, size_t len) {
  const __m256i weights = _mm256_setr_epi8(32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19,
                                           18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,
                                           3, 2, 1);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i zero = _mm256_setzero_si256();
  uint64_t s1 = adler & 0xffffu, s2 = adler >> 16;
  while (len >= 32) {
    size_t blocks = len / 32 < 1024 ? len / 32 : 1024;
    __m256i byte_sums = zero, byte_sums_before = zero, weighted = zero;
    size_t i;
    for (i = 0; i < blocks; i++) {
      __m256i data = _mm256_loadu_si256((const __m256i *)(buf + 32 * i));
      byte_sums_before = _mm256_add_epi32(byte_sums_before, byte_sums);
      byte_sums = _mm256_add_epi32(byte_sums, _mm256_sad_epu8(data, zero));
      weighted = _mm256_add_epi32(
          weighted, _mm256_madd_epi16(_mm256_maddubs_epi16(data, weights), ones));
    }
    s2 += s1 * 32 * blocks + 32 * dg_sum_u32_lanes(byte_sums_before) + dg_sum_u32_lanes(weighted);
    s1 += dg_sum_u32_lanes(byte_sums);
    s1 %= DG_A32_BASE;
    s2 %= DG_A32_BASE;
    buf += 32 * blocks;
    len -= 32 * blocks;
  }
  while (len--) {
    s1 += *buf++;
    s2 += s1;
  }
  return (uint32_t)(((s2 % DG_A32_BASE) << 16) | (s1 % DG_A32_BASE));
}
#endif

static int dg_use_avx2 = 0;

/* ``vector`` = 0 forces the library's scalar loop (the tests compare both with zlib). */
uint32_t dg_adler32_kernel(const uint8_t *buf, size_t len, int vector) {
#ifdef DG_HAVE_AVX2_KERNEL
  if (vector && dg_use_avx2) return dg_adler32_avx2(1, buf, len);
#endif
  (void)vector;
  return adler32(1, buf, (usize_t)len);
}

static uint32_t dg_adler32(const uint8_t *buf, size_t len) { return dg_adler32_kernel(buf, len, 1); }

int dg_adler32_vectorized(void) { return dg_use_avx2; }

/* Allocations of 1 MiB and more (hash tables, the block cache, window buffers) are mapped on 2 MiB
 * boundaries and pre-faulted in one call: xd3_alloc0 zeroes every table, and on this class of
 * machine a 4 KiB page fault costs ~1.5 us.  Up to 16 MiB they are also marked for transparent
 * huge pages: decoding a 1.7 MiB wheel in a fresh process took 3.7-6 ms with 4 KiB pages and
 * 2.85-3.6 ms with huge pages.  Larger ones (the big hash tables) stay on 4 KiB pages: in this VM,
 * free 2 MiB blocks are handed back to the host, and re-touching them made a 64 MiB level-9
 * encode take 0.62-0.72 s whenever the previous run was a few seconds old (0.25 s right after
 * one), against a steady 0.38-0.40 s with 4 KiB pages (the CLI: 0.45 s).  A 4 MiB limit was
 * measured too and was worse (window buffers and decoder caches on 4 KiB pages). */
#define DG_BIG_ALLOC (1u << 20)
#define DG_HUGE_MAX ((size_t)16 << 20)
#define DG_HUGE_PAGE ((size_t)2 << 20)
#define DG_HDR 64

/* In front of every allocation: the mapping it lives in, or base NULL for malloc(). */
typedef struct {
  void *base;
  size_t len;
} dg_alloc_hdr;

/* Freed mappings are kept for the next codec of the process, up to DG_POOL_BYTES and marked
 * MADV_FREE so that the kernel may still take their pages when memory is short: a 64 MiB encode
 * at level 6 otherwise takes ~26,000 page faults for its tables every time, and two encoders
 * faulting at once in one process wait on each other in the kernel. */
#define DG_POOL_SLOTS 8
#define DG_POOL_BYTES ((size_t)256 << 20)
static size_t dg_pool_limit = DG_POOL_BYTES; /* guarded by dg_pool_lock */

static pthread_mutex_t dg_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static dg_alloc_hdr dg_pool[DG_POOL_SLOTS];
static size_t dg_pool_bytes = 0;

/* The smallest pooled mapping of at least len bytes and at most a quarter more, or NULL. */
static dg_alloc_hdr dg_pool_take(size_t len) {
  dg_alloc_hdr found = {NULL, 0};
  int i, at = -1;
  pthread_mutex_lock(&dg_pool_lock);
  for (i = 0; i < DG_POOL_SLOTS; i++) {
    size_t have = dg_pool[i].len;
    if (dg_pool[i].base != NULL && have >= len && have - len <= len / 4 &&
        (at < 0 || have < dg_pool[at].len)) {
      at = i;
    }
  }
  if (at >= 0) {
    found = dg_pool[at];
    dg_pool_bytes -= found.len;
    dg_pool[at].base = NULL;
    dg_pool[at].len = 0;
  }
  pthread_mutex_unlock(&dg_pool_lock);
  return found;
}

static void dg_pool_give(dg_alloc_hdr mapping) {
  int i, kept = 0;
  pthread_mutex_lock(&dg_pool_lock);
  if (dg_pool_bytes + mapping.len <= dg_pool_limit) {
    for (i = 0; i < DG_POOL_SLOTS && !kept; i++) {
      if (dg_pool[i].base == NULL) {
        dg_pool[i] = mapping;
        dg_pool_bytes += mapping.len;
        kept = 1;
      }
    }
  }
  pthread_mutex_unlock(&dg_pool_lock);
  if (!kept) {
    munmap(mapping.base, mapping.len);
    return;
  }
#ifdef MADV_FREE
  (void)madvise(mapping.base, mapping.len, MADV_FREE);
#endif
}

/* fork() while another thread holds the pool lock would leave it locked forever in the child. */
static void dg_pool_lock_for_fork(void) { pthread_mutex_lock(&dg_pool_lock); }
static void dg_pool_unlock_after_fork(void) { pthread_mutex_unlock(&dg_pool_lock); }

/* Unmaps every pooled mapping; returns the bytes given back. */
size_t dg_release_pool(void) {
  size_t released;
  int i;
  pthread_mutex_lock(&dg_pool_lock);
  for (i = 0; i < DG_POOL_SLOTS; i++) {
    if (dg_pool[i].base != NULL) munmap(dg_pool[i].base, dg_pool[i].len);
    dg_pool[i].base = NULL;
    dg_pool[i].len = 0;
  }
  released = dg_pool_bytes;
  dg_pool_bytes = 0;
  pthread_mutex_unlock(&dg_pool_lock);
  return released;
}

/* Caps what the pool keeps from now on (what it holds beyond the cap is unmapped now). */
void dg_set_pool_limit(size_t limit) {
  int i;
  pthread_mutex_lock(&dg_pool_lock);
  dg_pool_limit = limit < DG_POOL_BYTES ? limit : DG_POOL_BYTES;
  for (i = 0; i < DG_POOL_SLOTS && dg_pool_bytes > dg_pool_limit; i++) {
    if (dg_pool[i].base != NULL) {
      munmap(dg_pool[i].base, dg_pool[i].len);
      dg_pool_bytes -= dg_pool[i].len;
      dg_pool[i].base = NULL;
      dg_pool[i].len = 0;
    }
  }
  pthread_mutex_unlock(&dg_pool_lock);
}

size_t dg_pooled_bytes(void) {
  size_t n;
  pthread_mutex_lock(&dg_pool_lock);
  n = dg_pool_bytes;
  pthread_mutex_unlock(&dg_pool_lock);
  return n;
}

/* A fresh mapping of exactly span bytes on a 2 MiB boundary, pre-faulted. */
static dg_alloc_hdr dg_map(size_t span) {
  dg_alloc_hdr mapping = {NULL, 0};
  size_t len = span + DG_HUGE_PAGE;
  char *base = (char *)mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return mapping;
  char *aligned = (char *)(((uintptr_t)base + DG_HUGE_PAGE - 1) & ~(uintptr_t)(DG_HUGE_PAGE - 1));
  if (aligned > base) munmap(base, (size_t)(aligned - base));
  if (aligned + span < base + len) munmap(aligned + span, (size_t)(base + len - (aligned + span)));
#ifdef MADV_HUGEPAGE
  if (span <= DG_HUGE_MAX) (void)madvise(aligned, span, MADV_HUGEPAGE);
#endif
#ifdef MADV_POPULATE_WRITE
  (void)madvise(aligned, span, MADV_POPULATE_WRITE); /* EINVAL before Linux 5.14: harmless */
#endif
  mapping.base = aligned;
  mapping.len = span;
  return mapping;
}

static void *dg_alloc(void *opaque, size_t items, usize_t size) {
  size_t n = items * (size_t)size;
  dg_alloc_hdr mapping;
  (void)opaque;
  if (size != 0 && n / size != items) return NULL;
  if (n < DG_BIG_ALLOC) {
    char *p = (char *)malloc(n + DG_HDR);
    if (p == NULL) return NULL;
    ((dg_alloc_hdr *)p)->base = NULL;
    ((dg_alloc_hdr *)p)->len = 0;
    return p + DG_HDR;
  }
  size_t span = (n + DG_HDR + DG_HUGE_PAGE - 1) & ~(DG_HUGE_PAGE - 1);
  mapping = dg_pool_take(span);
  if (mapping.base == NULL) mapping = dg_map(span);
  if (mapping.base == NULL) return NULL;
  *(dg_alloc_hdr *)mapping.base = mapping;
  return (char *)mapping.base + DG_HDR;
}

static void dg_dealloc(void *opaque, void *ptr) {
  (void)opaque;
  if (ptr == NULL) return;
  dg_alloc_hdr *hdr = (dg_alloc_hdr *)((char *)ptr - DG_HDR);
  if (hdr->base == NULL) {
    free(hdr);
  } else {
    dg_pool_give(*hdr);
  }
}

static void dg_set_error(dg_codec *c, int code, const char *what, int kind) {
  const char *msg = c->stream.msg;
  c->failed_kind = kind;
  if (code > 0) {
    msg = strerror(code);
  }
  snprintf(c->errmsg, sizeof(c->errmsg), "%s: %s (%s)", what, msg ? msg : "no detail",
           xd3_strerror(code));
  c->failed = code ? code : XD3_INTERNAL;
}

const char *dg_error(dg_codec *c) { return c->errmsg; }

int dg_error_code(dg_codec *c) { return c->failed; }

int dg_error_kind(dg_codec *c) { return c->failed_kind; }

/* Takes a slot for blkno by CLOCK: the hand passes over slots touched since its last visit and
 * stops at the first one that was not.  A new block enters unmarked, so a block read once (the
 * encoder hashes every source block once, and its false match candidates land anywhere in the
 * source) goes before blocks the matcher keeps coming back to.  O(1) on average, where the
 * exact LRU this replaces scanned every slot on every miss. */
static void dg_select_slot_for(dg_codec *c, int64_t blkno, uint32_t *slot_out) {
  uint32_t victim;
  for (;;) {
    victim = c->hand;
    c->hand = c->hand + 1 == c->nslots ? 0 : c->hand + 1;
    if (c->slot_blkno[victim] < 0 || !c->slot_used[victim]) break;
    c->slot_used[victim] = 0;
  }
  if (c->slot_blkno[victim] >= 0) {
    c->slot_of[c->slot_blkno[victim]] = -1;
  }
  c->slot_blkno[victim] = blkno;
  c->slot_of[blkno] = (int32_t)victim;
  c->slot_used[victim] = 0;
  *slot_out = victim;
}

static void dg_expose(dg_codec *c, xd3_source *src, int64_t blkno, const uint8_t *data,
                      usize_t len) {
  src->curblkno = (xoff_t)blkno;
  src->curblk = data;
  src->onblk = len;
}

static usize_t dg_block_len(dg_codec *c, int64_t blkno) {
  uint64_t off = (uint64_t)blkno * c->blksize;
  if (off >= c->src_size) {
    return 0;
  }
  uint64_t rem = c->src_size - off;
  return (usize_t)(rem < c->blksize ? rem : c->blksize);
}

static int dg_getblk(xd3_stream *stream, xd3_source *src, xoff_t blkno_x) {
  dg_codec *c = (dg_codec *)stream->opaque;
  int64_t blkno = (int64_t)blkno_x;
  usize_t len = dg_block_len(c, blkno);

  if (c->src_mem != NULL || len == 0) {
    const uint8_t *base = c->src_mem != NULL ? c->src_mem : dg_empty;
    dg_expose(c, src, blkno, len ? base + (uint64_t)blkno * c->blksize : dg_empty, len);
    return 0;
  }
  if ((uint64_t)blkno < c->nblocks && c->slot_of[blkno] >= 0) {
    uint32_t slot = (uint32_t)c->slot_of[blkno];
    c->slot_used[slot] = 1;
    c->hits++;
    dg_expose(c, src, blkno, c->slot_data + (uint64_t)slot * c->blksize, len);
    return 0;
  }
  c->misses++;
  if (c->src_fd < 0) {
    c->wanted_blkno = blkno;
    stream->msg = "getblk source input";
    return XD3_GETSRCBLK;
  }
  uint32_t slot;
  dg_select_slot_for(c, blkno, &slot);
  uint8_t *dst = c->slot_data + (uint64_t)slot * c->blksize;
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(c->src_fd, dst + got, len - got, (off_t)((uint64_t)blkno * c->blksize + got));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      c->slot_of[blkno] = -1;
      c->slot_blkno[slot] = -1;
      stream->msg = n < 0 ? "source read failed" : "source file shrank while reading";
      return n < 0 ? errno : XD3_INVALID_INPUT;
    }
    got += (size_t)n;
  }
  dg_expose(c, src, blkno, dst, len);
  return 0;
}

static pthread_once_t dg_init_once = PTHREAD_ONCE_INIT;

static void dg_init_process(void) {
  (void)xd3_rfc3284_code_table();
  /* Registered exactly once: a second set of handlers would lock the pool twice in fork(). */
  (void)pthread_atfork(dg_pool_lock_for_fork, dg_pool_unlock_after_fork, dg_pool_unlock_after_fork);
#ifdef DG_HAVE_AVX2_KERNEL
  __builtin_cpu_init();
  dg_use_avx2 = __builtin_cpu_supports("avx2") != 0;
#endif
}

/* Builds the RFC 3284 code table before any thread can race on its lazy initialisation; safe to
   call any number of times. */
void dg_global_init(void) { (void)pthread_once(&dg_init_once, dg_init_process); }

static const xd3_smatcher *dg_preset(int level) {
  if (level <= 1) return &__smatcher_fastest;
  if (level == 2) return &__smatcher_faster;
  if (level <= 5) return &__smatcher_fast;
  if (level == 6) return &__smatcher_default;
  return &__smatcher_slow;
}

static xd3_smatch_cfg dg_smatch_cfg(int level) {
  if (level <= 1) return XD3_SMATCH_FASTEST;
  if (level == 2) return XD3_SMATCH_FASTER;
  if (level <= 5) return XD3_SMATCH_FAST;
  if (level == 6) return XD3_SMATCH_DEFAULT;
  return XD3_SMATCH_SLOW;
}

void dg_free(dg_codec *c) {
  if (c == NULL) return;
  xd3_free_stream(&c->stream);
  dg_dealloc(NULL, c->slot_data);
  free(c->slot_blkno);
  free(c->slot_used);
  free(c->slot_of);
  free(c);
}

/* level 0 means "no compression of added bytes" (the CLI's -0); large_step > the preset's
 * shrinks the source hash table to cap memory for very large references. */
dg_codec *dg_new(int encoding, int level, uint32_t flags, uint32_t winsize, uint64_t src_size,
                 uint32_t blksize, uint32_t nslots, uint64_t src_winsize, uint32_t large_step,
                 int src_fd, const uint8_t *src_mem, char *err, size_t errlen) {
  dg_codec *c = (dg_codec *)calloc(1, sizeof(dg_codec));
  int ret;
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->encoding = encoding;
  c->src_fd = src_fd;
  c->src_mem = src_mem;
  c->src_size = src_size;
  c->blksize = blksize;
  c->wanted_blkno = -1;
  c->want_input = 1;
  c->nblocks = (src_size + blksize - 1) / blksize;
  if (src_mem == NULL && c->nblocks > 0) {
    uint32_t i;
    if (nslots > c->nblocks) nslots = (uint32_t)c->nblocks;
    if (nslots == 0) nslots = 1;
    c->nslots = nslots;
    c->slot_data = (uint8_t *)dg_alloc(NULL, nslots, blksize);
    c->slot_blkno = (int64_t *)malloc(sizeof(int64_t) * nslots);
    c->slot_used = (uint8_t *)calloc(nslots, 1);
    c->slot_of = (int32_t *)malloc(sizeof(int32_t) * c->nblocks);
    if (!c->slot_data || !c->slot_blkno || !c->slot_used || !c->slot_of) {
      snprintf(err, errlen, "out of memory for the source block cache");
      dg_free(c);
      return NULL;
    }
    for (i = 0; i < nslots; i++) c->slot_blkno[i] = -1;
    memset(c->slot_of, 0xff, sizeof(int32_t) * c->nblocks);
  }

  if (encoding && (flags & XD3_ADLER32)) {
    flags = (flags & ~XD3_ADLER32) | XD3_ADLER32_RECODE; /* sums come from dg_adler32() */
  }
  if (!encoding) {
    flags |= XD3_ADLER32_NOVER; /* verified in dg_run() by dg_adler32() */
  }
  xd3_init_config(&c->config, flags);
  c->config.winsize = winsize;
  /* The CLI's instruction buffer and small-match chain are sized for 8 MiB windows; scaled down
   * with the window, a 100 KiB file no longer pays ~1 MiB of zeroed buffers per call. */
  c->config.iopt_size = winsize / 256 < XD3_DEFAULT_IOPT_SIZE ? winsize / 256 : XD3_DEFAULT_IOPT_SIZE;
  if (c->config.iopt_size < 256) c->config.iopt_size = 256;
  c->config.sprevsz = winsize < XD3_DEFAULT_SPREVSZ ? winsize : XD3_DEFAULT_SPREVSZ;
  c->config.getblk = dg_getblk;
  c->config.alloc = dg_alloc;
  c->config.freef = dg_dealloc;
  c->config.opaque = c;
  if (encoding) {
    const xd3_smatcher *preset = dg_preset(level);
    c->config.smatch_cfg = dg_smatch_cfg(level);
    if (level == 0) {
      c->config.flags |= XD3_NOCOMPRESS;
    }
    if (large_step > preset->large_step) {
      c->config.smatch_cfg = XD3_SMATCH_SOFT;
      c->config.smatcher_soft = *preset;
      c->config.smatcher_soft.large_step = large_step;
    }
  }
  if ((ret = xd3_config_stream(&c->stream, &c->config)) != 0) {
    snprintf(err, errlen, "xd3_config_stream: %s (%s)", c->stream.msg ? c->stream.msg : "",
             xd3_strerror(ret));
    dg_free(c);
    return NULL;
  }
  if (src_size == 0) {
    return c; /* no source: plain VCDIFF compression of the target */
  }
  c->source.blksize = blksize;
  c->source.name = "source";
  c->source.max_winsize = (xoff_t)src_winsize;
  if ((ret = xd3_set_source_and_size(&c->stream, &c->source, (xoff_t)src_size)) != 0) {
    snprintf(err, errlen, "xd3_set_source: %s (%s)", c->stream.msg ? c->stream.msg : "",
             xd3_strerror(ret));
    dg_free(c);
    return NULL;
  }
  return c;
}

void dg_set_input(dg_codec *c, const uint8_t *data, size_t len) {
  c->in_ptr = data;
  c->in_rem = len;
}

void dg_close_input(dg_codec *c) { c->input_closed = 1; }

void dg_require_checksums(dg_codec *c, int on) { c->require_checksums = on; }

int64_t dg_wanted_block(dg_codec *c) { return c->wanted_blkno; }

/* Copies a caller-read block into the cache and hands it to xd3 as the current block. */
int dg_supply_block(dg_codec *c, int64_t blkno, const uint8_t *data, size_t len) {
  uint32_t slot;
  if (blkno != c->wanted_blkno || len != dg_block_len(c, blkno)) {
    snprintf(c->errmsg, sizeof(c->errmsg),
             "source block %lld: expected %u bytes, the source returned %zu",
             (long long)blkno, (unsigned)dg_block_len(c, blkno), len);
    c->failed = XD3_INVALID_INPUT;
    c->failed_kind = DG_ERR_SOURCE_READ;
    return DG_ERROR;
  }
  dg_select_slot_for(c, blkno, &slot);
  memcpy(c->slot_data + (uint64_t)slot * c->blksize, data, len);
  dg_expose(c, &c->source, blkno, c->slot_data + (uint64_t)slot * c->blksize, (usize_t)len);
  c->wanted_blkno = -1;
  return 0;
}

const uint8_t *dg_output(dg_codec *c, size_t *len) {
  *len = c->stream.avail_out;
  return c->stream.next_out;
}

uint64_t dg_cache_hits(dg_codec *c) { return c->hits; }
uint64_t dg_cache_misses(dg_codec *c) { return c->misses; }

static int dg_finish(dg_codec *c) {
  int ret;
  /* xd3_close_stream accepts a decoder still waiting for its 4-byte magic, so an empty or
     1-3 byte input would otherwise close as a valid, empty delta. */
  if (!c->encoding && c->stream.dec_state == DEC_VCHEAD) {
    c->stream.msg = "input ends before the VCDIFF header is complete";
    dg_set_error(c, XD3_INVALID_INPUT, "truncated delta", DG_ERR_TRUNCATED);
    return DG_ERROR;
  }
  ret = xd3_close_stream(&c->stream);
  if (ret != 0) {
    dg_set_error(c, ret, c->encoding ? "encoder" : "truncated delta",
                 c->encoding ? DG_ERR_INTERNAL : DG_ERR_TRUNCATED);
    return DG_ERROR;
  }
  c->done = 1;
  return DG_DONE;
}

/* Runs the state machine until it needs input, has output, misses a source block, or ends. */
int dg_run(dg_codec *c) {
  xd3_stream *s = &c->stream;
  if (c->failed) return DG_ERROR;
  if (c->done) return DG_DONE;
  if (c->output_pending) {
    xd3_consume_output(s);
    c->output_pending = 0;
  }
  for (;;) {
    int ret;
    if (c->want_input) {
      if (c->in_rem > 0) {
        size_t n = c->in_rem < s->winsize ? c->in_rem : s->winsize;
        xd3_avail_input(s, c->in_ptr, (usize_t)n);
        c->in_ptr += n;
        c->in_rem -= n;
      } else if (!c->input_closed) {
        return DG_NEED_INPUT;
      } else if (c->encoding && !c->flush_sent) {
        xd3_set_flags(s, s->flags | XD3_FLUSH);
        xd3_avail_input(s, dg_empty, 0);
        c->flush_sent = 1;
      } else {
        return dg_finish(c);
      }
      c->want_input = 0;
    }
    ret = c->encoding ? xd3_encode_input(s) : xd3_decode_input(s);
    switch (ret) {
      case XD3_INPUT:
        c->want_input = 1;
        continue;
      case XD3_OUTPUT:
        if (!c->encoding && (s->dec_win_ind & VCD_ADLER32) &&
            dg_adler32(s->next_out, s->avail_out) != s->dec_adler32) {
          s->msg = "target window checksum mismatch";
          dg_set_error(c, XD3_INVALID_INPUT, "decoder", DG_ERR_MISMATCH);
          return DG_ERROR;
        }
        if (!c->encoding && c->require_checksums && !(s->dec_win_ind & VCD_ADLER32)) {
          s->msg = "window has no adler32 checksum (required)";
          dg_set_error(c, XD3_INVALID_INPUT, "decoder", DG_ERR_CORRUPT);
          return DG_ERROR;
        }
        c->output_pending = 1;
        c->total_out += s->avail_out;
        return DG_OUTPUT;
      case XD3_GETSRCBLK:
        return DG_NEED_BLOCK;
      case XD3_WINSTART:
        /* The whole window's input is in next_in/avail_in now (xd3 buffered short inputs). */
        if (c->encoding && (s->flags & XD3_ADLER32_RECODE)) {
          s->recode_adler32 = dg_adler32(s->next_in, s->avail_in);
        }
        continue;
      case XD3_GOTHEADER:
      case XD3_WINFINISH:
        continue;
      default:
        /* A positive code is an errno from reading the source; otherwise the input is bad
           (decoding) or the library failed (encoding). */
        dg_set_error(c, ret, c->encoding ? "encoder" : "decoder",
                     ret > 0 ? DG_ERR_SOURCE_READ
                             : (c->encoding ? DG_ERR_INTERNAL : DG_ERR_CORRUPT));
        return DG_ERROR;
    }
  }
}
