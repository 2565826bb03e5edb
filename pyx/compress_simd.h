/* SIMD helpers of the compression kernels, chosen at run time by the CPU.
 *
 * Every helper has a portable scalar version and, on x86-64 with GCC or Clang, AVX2
 * and AVX-512 versions compiled with per-function target attributes (no -march flag:
 * the module loads and runs on any x86-64). ``mpt_simd_level()`` picks the widest
 * version the CPU supports (__builtin_cpu_supports); ``mpt_simd_force(level)`` caps it
 * (tests run every version and compare; all versions give identical results).
 */
#ifndef MPT_COMPRESS_SIMD_H
#define MPT_COMPRESS_SIMD_H
#include <stdint.h>
#include <string.h>

/* Every kernel module includes this header (compress_common.pxi, for the random stream)
 * and uses a few of its static functions: no warning for the others. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define MPT_X86 1
#include <immintrin.h>
#else
#define MPT_X86 0
#endif

enum { MPT_SCALAR = 0, MPT_AVX2 = 1, MPT_AVX512 = 2 };

static int mpt_simd_detected = -1;
static int mpt_simd_cap = MPT_AVX512;

/* The widest SIMD level this CPU runs (0 scalar, 1 AVX2, 2 AVX-512F/BW/DQ/VL). */
static int mpt_simd_detect(void) {
    if (mpt_simd_detected < 0) {
        int level = MPT_SCALAR;
#if MPT_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) level = MPT_AVX2;
        if (level == MPT_AVX2 && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vl")) level = MPT_AVX512;
#endif
        mpt_simd_detected = level;
    }
    return mpt_simd_detected;
}

/* The level the helpers use: the detected one, capped by mpt_simd_force. */
static int mpt_simd_level(void) {
    int level = mpt_simd_detect();
    return level < mpt_simd_cap ? level : mpt_simd_cap;
}

/* Cap the level (for tests); returns the level now in use. */
static int mpt_simd_force(int cap) {
    mpt_simd_cap = cap;
    return mpt_simd_level();
}

/* ---- Top-k candidates: indices i in [lo, hi) with (v[i] & 0x7FFFFFFF) >= t, ascending,
 * into idx, their masked keys into key; returns how many. idx and key need room for
 * hi - lo + 16 entries (the vector versions store whole vectors past the count). */

static int64_t mpt_collect32_scalar(const uint32_t *v, int64_t lo, int64_t hi, uint32_t t,
                                    uint32_t *idx, uint32_t *key) {
    int64_t n = 0;
    for (int64_t i = lo; i < hi; i++) {
        uint32_t k = v[i] & 0x7FFFFFFFu;
        idx[n] = (uint32_t)i;  /* branch-free: written always, kept only if k >= t */
        key[n] = k;
        n += k >= t;
    }
    return n;
}

#if MPT_X86
/* 8 keys a step: compare, movemask, then a permutation from a 256-entry table moves the
 * kept lanes to the front. */
static uint32_t mpt_compact_lut[256][8] __attribute__((aligned(32)));
static int mpt_compact_lut_ready = 0;

static void mpt_compact_lut_init(void) {
    if (mpt_compact_lut_ready) return;
    for (int m = 0; m < 256; m++) {
        int j = 0;
        for (int b = 0; b < 8; b++)
            if (m >> b & 1) mpt_compact_lut[m][j++] = (uint32_t)b;
        for (; j < 8; j++) mpt_compact_lut[m][j] = 0;
    }
    mpt_compact_lut_ready = 1;
}

__attribute__((target("avx2,popcnt")))
static int64_t mpt_collect32_avx2(const uint32_t *v, int64_t lo, int64_t hi, uint32_t t,
                                  uint32_t *idx, uint32_t *key) {
    /* keys are < 2^31, so the signed test k > t - 1 equals k >= t (t = 0: t - 1 = -1) */
    const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF);
    const __m256i tm1 = _mm256_set1_epi32((int32_t)(t - 1u));
    const __m256i step = _mm256_set1_epi32(8);
    __m256i iv = _mm256_add_epi32(_mm256_set1_epi32((int32_t)lo),
                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    int64_t n = 0, i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256i k = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(v + i)), absm);
        int m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(k, tm1)));
        __m256i perm = _mm256_load_si256((const __m256i *)mpt_compact_lut[m]);
        _mm256_storeu_si256((__m256i *)(idx + n), _mm256_permutevar8x32_epi32(iv, perm));
        _mm256_storeu_si256((__m256i *)(key + n), _mm256_permutevar8x32_epi32(k, perm));
        n += __builtin_popcount((unsigned)m);
        iv = _mm256_add_epi32(iv, step);
    }
    return n + mpt_collect32_scalar(v, i, hi, t, idx + n, key + n);
}

/* 16 keys a step: mask compare, then compress into a register and store the whole
 * vector (a compress straight to memory is slow on some CPUs). */
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,popcnt")))
static int64_t mpt_collect32_avx512(const uint32_t *v, int64_t lo, int64_t hi, uint32_t t,
                                    uint32_t *idx, uint32_t *key) {
    const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF);
    const __m512i tv = _mm512_set1_epi32((int32_t)t);
    const __m512i step = _mm512_set1_epi32(16);
    __m512i iv = _mm512_add_epi32(_mm512_set1_epi32((int32_t)lo),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                    12, 13, 14, 15));
    int64_t n = 0, i = lo;
    for (; i + 16 <= hi; i += 16) {
        __m512i k = _mm512_and_si512(_mm512_loadu_si512((const void *)(v + i)), absm);
        __mmask16 m = _mm512_cmpge_epu32_mask(k, tv);
        _mm512_storeu_si512((void *)(idx + n), _mm512_maskz_compress_epi32(m, iv));
        _mm512_storeu_si512((void *)(key + n), _mm512_maskz_compress_epi32(m, k));
        n += __builtin_popcount((unsigned)m);
        iv = _mm512_add_epi32(iv, step);
    }
    return n + mpt_collect32_scalar(v, i, hi, t, idx + n, key + n);
}
#endif

/* Candidates of the whole vector (d < 2^32), block by block; returns their count, or -1
 * as soon as more than cap were found. idx and key need room for cap + block + 16. */
static int64_t mpt_collect32(const uint32_t *v, int64_t d, uint32_t t, uint32_t *idx,
                             uint32_t *key, int64_t cap, int64_t block) {
    int level = mpt_simd_level();
    int64_t n = 0;
#if MPT_X86
    if (level == MPT_AVX2) mpt_compact_lut_init();
#endif
    for (int64_t lo = 0; lo < d; lo += block) {
        int64_t hi = lo + block < d ? lo + block : d;
#if MPT_X86
        if (level == MPT_AVX512) n += mpt_collect32_avx512(v, lo, hi, t, idx + n, key + n);
        else if (level == MPT_AVX2) n += mpt_collect32_avx2(v, lo, hi, t, idx + n, key + n);
        else
#endif
        n += mpt_collect32_scalar(v, lo, hi, t, idx + n, key + n);
        if (n > cap) return -1;
    }
    return n;
}

/* ---- Float32 quantiser blocks. Each kernel body is written once (always inlined) and
 * compiled three times: baseline x86-64, AVX2 and x86-64-v4 (AVX-512); mpt_simd_level()
 * picks one. Arithmetic is the scalar Cython kernels' operation for operation (the
 * module is built with -ffp-contract=off, so no fused multiply-add changes a rounding),
 * hence the same codes at every level. */
#if MPT_X86
#define MPT_AVX2_FN __attribute__((target("avx2,popcnt")))
#define MPT_AVX512_FN __attribute__((target("arch=x86-64-v4")))
#define MPT_MULTI(name, params, args) \
    MPT_AVX512_FN static void name##_avx512 params { name##_body args; } \
    MPT_AVX2_FN static void name##_avx2 params { name##_body args; } \
    static void name##_base params { name##_body args; } \
    static void name params { \
        int level = mpt_simd_level(); \
        if (level == MPT_AVX512) name##_avx512 args; \
        else if (level == MPT_AVX2) name##_avx2 args; \
        else name##_base args; \
    }
/* The same with two versions, baseline and AVX2, the AVX2 one also serving AVX-512 CPUs:
 * for blocks whose 512-bit build ran slower than the 256-bit one on the measured CPU. */
#define MPT_MULTI256(name, params, args) \
    MPT_AVX2_FN static void name##_avx2 params { name##_body args; } \
    static void name##_base params { name##_body args; } \
    static void name params { \
        if (mpt_simd_level() >= MPT_AVX2) name##_avx2 args; \
        else name##_base args; \
    }
#else
#define MPT_MULTI(name, params, args) static void name params { name##_body args; }
#define MPT_MULTI256 MPT_MULTI
#endif
#define MPT_BODY static inline __attribute__((always_inline)) void

/* u_i < p exactly for the float32 stream: r 2^-32 < p, compared in double (exact). */
#define MPT_BELOW32(r, p) \
    ((double)(int32_t)((r) ^ 0x80000000u) < (double)(p) * 4294967296.0 - 2147483648.0)

/* ---- The random stream of compress_common.pxi: word j = splitmix64(seed, j). The float32
 * stream makes r_i from two 16-bit pieces of two words: its high half from word i / 4 (a
 * "lead" word) and its low half from word 2^62 + i / 4 (a "tail" word), each the bits
 * [16 (i mod 4), 16 (i mod 4) + 16) of its word. A rounding test u_i < p_i is decided by the
 * high half except when it equals floor(p_i 2^16) (one value in 2^16), so the SIMD blocks
 * make the lead words alone (one word for 4 entries) and the tail words only for such
 * groups; 4 lead words in a 256-bit register are the high halves of r_4j .. r_4j+15 in
 * element order (16-bit lanes, little-endian). */
#define MPT_GOLDEN 0x9E3779B97F4A7C15ULL
#define MPT_TAIL_WORDS 0x4000000000000000LL  /* 2^62: tail word of entry i is 2^62 + i / 4 */
static inline __attribute__((always_inline)) uint64_t mpt_sm64(uint64_t seed, uint64_t j) {
    uint64_t z = seed + (j + 1) * MPT_GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* r_i of the float32 stream, one entry (tails and tests). */
static inline uint32_t mpt_r32(uint64_t seed, int64_t i) {
    const int shift = 16 * (int)(i & 3);
    const uint64_t j = (uint64_t)i >> 2;
    return (uint32_t)((mpt_sm64(seed, j) >> shift) & 0xFFFFu) << 16
        | (uint32_t)((mpt_sm64(seed, (uint64_t)MPT_TAIL_WORDS + j) >> shift) & 0xFFFFu);
}

/* w[j] = splitmix64(seed, first + j), j < nw. */
MPT_BODY mpt_fill64_body(uint64_t seed, int64_t first, int64_t nw, uint64_t *w) {
    for (int64_t j = 0; j < nw; j++) w[j] = mpt_sm64(seed, (uint64_t)(first + j));
}

#if MPT_X86
/* z c mod 2^64 in each 64-bit lane (AVX2 has no 64-bit multiply):
 * lo(z) lo(c) + (hi(z) lo(c) + lo(z) hi(c)) 2^32, three 32 x 32 -> 64-bit products. */
MPT_AVX2_FN static inline __attribute__((always_inline)) __m256i mpt_mulc64_avx2(__m256i z, uint64_t c) {
    const __m256i lo = _mm256_set1_epi64x((int64_t)(c & 0xFFFFFFFFu));
    const __m256i hi = _mm256_set1_epi64x((int64_t)(c >> 32));
    __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(z, 32), lo),
                                     _mm256_mul_epu32(z, hi));
    return _mm256_add_epi64(_mm256_mul_epu32(z, lo), _mm256_slli_epi64(cross, 32));
}

/* splitmix64's output of 4 counters z = seed + (j + 1) golden: 4 words, 8 entries' r_i. */
MPT_AVX2_FN static inline __attribute__((always_inline)) __m256i mpt_mix64_avx2(__m256i z) {
    z = mpt_mulc64_avx2(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xBF58476D1CE4E5B9ULL);
    z = mpt_mulc64_avx2(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94D049BB133111EBULL);
    return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

/* The counters of words j .. j+3. */
MPT_AVX2_FN static inline __attribute__((always_inline)) __m256i mpt_ctr64_avx2(uint64_t seed, uint64_t j) {
    uint64_t z = seed + (j + 1) * MPT_GOLDEN;
    return _mm256_setr_epi64x((int64_t)z, (int64_t)(z + MPT_GOLDEN), (int64_t)(z + 2 * MPT_GOLDEN),
                              (int64_t)(z + 3 * MPT_GOLDEN));
}

MPT_AVX2_FN static void mpt_fill64_avx2(uint64_t seed, int64_t first, int64_t nw, uint64_t *w) {
    const __m256i g4 = _mm256_set1_epi64x((int64_t)(4 * MPT_GOLDEN));
    __m256i z = mpt_ctr64_avx2(seed, (uint64_t)first);
    int64_t j = 0;
    for (; j + 8 <= nw; j += 8) {
        __m256i z1 = _mm256_add_epi64(z, g4);
        _mm256_storeu_si256((__m256i *)(w + j), mpt_mix64_avx2(z));
        _mm256_storeu_si256((__m256i *)(w + j + 4), mpt_mix64_avx2(z1));
        z = _mm256_add_epi64(z1, g4);
    }
    mpt_fill64_body(seed, first + j, nw - j, w + j);
}

/* AVX-512 has the 64-bit multiply (vpmullq): the compiler vectorises the plain loop. */
MPT_AVX512_FN static void mpt_fill64_avx512(uint64_t seed, int64_t first, int64_t nw, uint64_t *w) {
    mpt_fill64_body(seed, first, nw, w);
}
#endif

/* The words of the stream at the level in use (so that a capped level also makes its
 * random words with that level's instructions, as a CPU without the wider ones would). */
static void mpt_fill64(uint64_t seed, int64_t first, int64_t nw, uint64_t *w) {
#if MPT_X86
    int level = mpt_simd_level();
    if (level == MPT_AVX512) { mpt_fill64_avx512(seed, first, nw, w); return; }
    if (level == MPT_AVX2) { mpt_fill64_avx2(seed, first, nw, w); return; }
#endif
    mpt_fill64_body(seed, first, nw, w);
}

#if MPT_X86
/* AVX-512 has the 64-bit multiply (vpmullq). */
MPT_AVX512_FN static inline __attribute__((always_inline)) __m512i mpt_mix64_avx512(__m512i z) {
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)),
                           _mm512_set1_epi64((int64_t)0xBF58476D1CE4E5B9ULL));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)),
                           _mm512_set1_epi64((int64_t)0x94D049BB133111EBULL));
    return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

/* The counters of lead words j .. j+3 and tail words 2^62 + j .. 2^62 + j+3, the 8 words
 * of entries 4j .. 4j+15 (adding 4 golden moves them on by 16 entries), and of lead words
 * j .. j+7, entries 4j .. 4j+31 (adding 8 golden: 32 entries). */
MPT_AVX512_FN static inline __attribute__((always_inline)) __m512i mpt_ctr16_avx512(uint64_t seed, uint64_t j) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(mpt_ctr64_avx2(seed, j)),
                              mpt_ctr64_avx2(seed, (uint64_t)MPT_TAIL_WORDS + j), 1);
}
MPT_AVX512_FN static inline __attribute__((always_inline)) __m512i mpt_ctr8_avx512(uint64_t seed, uint64_t j) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(mpt_ctr64_avx2(seed, j)),
                              mpt_ctr64_avx2(seed, j + 4), 1);
}

/* r_4j .. r_4j+15 as 16 uint32 lanes from those 8 counters: lane e is lead piece e (16-bit
 * element e of the words) above tail piece e (element 16 + e), one vpermw. */
static const uint16_t mpt_r16_order[32] __attribute__((aligned(64))) = {
    16, 0, 17, 1, 18, 2, 19, 3, 20, 4, 21, 5, 22, 6, 23, 7,
    24, 8, 25, 9, 26, 10, 27, 11, 28, 12, 29, 13, 30, 14, 31, 15};
MPT_AVX512_FN static inline __attribute__((always_inline)) __m512i mpt_r16_avx512(__m512i z) {
    return _mm512_permutexvar_epi16(_mm512_load_si512((const void *)mpt_r16_order),
                                    mpt_mix64_avx512(z));
}
#endif

/* r[0..n) = r_e .. r_e+n-1 for e a multiple of 4 (baseline): the lead and tail words of at
 * most 256 entries at a time (loops the compiler vectorises), then the 4 entries of each
 * word pair (piece c of a word: bits [16 c, 16 c + 16)). */
static void mpt_random32_words(uint64_t seed, int64_t e, int64_t n, uint32_t *r) {
    uint64_t lead[64], tail[64];
    for (int64_t i = 0; i < n; i += 256) {
        int64_t m = n - i < 256 ? n - i : 256, nw = m >> 2, j = (e + i) >> 2;
        mpt_fill64_body(seed, j, nw, lead);
        mpt_fill64_body(seed, MPT_TAIL_WORDS + j, nw, tail);
        uint32_t *q = r + i;
        int64_t w = 0;
        for (; 4 * w + 4 <= m; w++) {
            q[4 * w] = ((uint32_t)lead[w] << 16) | ((uint32_t)tail[w] & 0xFFFFu);
            q[4 * w + 1] = ((uint32_t)lead[w] & 0xFFFF0000u) | ((uint32_t)(tail[w] >> 16) & 0xFFFFu);
            q[4 * w + 2] = ((uint32_t)(lead[w] >> 16) & 0xFFFF0000u) | ((uint32_t)(tail[w] >> 32) & 0xFFFFu);
            q[4 * w + 3] = ((uint32_t)(lead[w] >> 32) & 0xFFFF0000u) | (uint32_t)(tail[w] >> 48);
        }
        for (int64_t k = 4 * w; k < m; k++) q[k] = mpt_r32(seed, e + i + k);  /* a last part word */
    }
}

#if MPT_X86
/* The same, 16 entries a step (n a multiple of 16): AVX2 makes 4 lead and 4 tail words and
 * interleaves their 16-bit pieces (tail piece low, lead piece high: unpack, then the 128-bit
 * halves in entry order); AVX-512 makes all 8 in one register (mpt_r16_avx512). */
MPT_AVX2_FN static void mpt_random32_words_avx2(uint64_t seed, int64_t e, int64_t n, uint32_t *r) {
    const __m256i g4 = _mm256_set1_epi64x((int64_t)(4 * MPT_GOLDEN));
    __m256i zl = mpt_ctr64_avx2(seed, (uint64_t)e >> 2);
    __m256i zt = mpt_ctr64_avx2(seed, (uint64_t)MPT_TAIL_WORDS + ((uint64_t)e >> 2));
    for (int64_t i = 0; i < n; i += 16) {
        __m256i lead = mpt_mix64_avx2(zl), tail = mpt_mix64_avx2(zt);
        __m256i lo = _mm256_unpacklo_epi16(tail, lead);  /* words 0 and 2 */
        __m256i hi = _mm256_unpackhi_epi16(tail, lead);  /* words 1 and 3 */
        _mm256_storeu_si256((__m256i *)(r + i), _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(r + i + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
        zl = _mm256_add_epi64(zl, g4);
        zt = _mm256_add_epi64(zt, g4);
    }
}

MPT_AVX512_FN static void mpt_random32_words_avx512(uint64_t seed, int64_t e, int64_t n, uint32_t *r) {
    const __m512i g4 = _mm512_set1_epi64((int64_t)(4 * MPT_GOLDEN));
    __m512i z = mpt_ctr16_avx512(seed, (uint64_t)e >> 2);
    for (int64_t i = 0; i < n; i += 16) {
        _mm512_storeu_si512((void *)(r + i), mpt_r16_avx512(z));
        z = _mm512_add_epi64(z, g4);
    }
}
#endif

/* r[0..n): the float32 stream's r_first .. r_first+n-1, any first (r needs no alignment),
 * with the instructions of the level in use. */
static void mpt_random32_at(uint64_t seed, int64_t first, int64_t n, uint32_t *r) {
    int64_t i = 0;
    for (; i < n && ((first + i) & 3); i++) r[i] = mpt_r32(seed, first + i);
#if MPT_X86
    int level = mpt_simd_level();
    int64_t n16 = (n - i) & ~(int64_t)15;
    if (level == MPT_AVX512 && n16 > 0) mpt_random32_words_avx512(seed, first + i, n16, r + i);
    else if (level == MPT_AVX2 && n16 > 0) mpt_random32_words_avx2(seed, first + i, n16, r + i);
    else n16 = 0;
    i += n16;
#endif
    if (i < n) mpt_random32_words(seed, first + i, n - i, r + i);
}

#if MPT_X86
/* The test MPT_BELOW32(r_i, p_i) in 8 lanes from the lead pieces alone, without doubles.
 * With T = p_i 2^16 (a power-of-two scaling: exact), Ti = floor(T) and A = r_i >> 16 (the
 * lead piece): A < Ti means r_i < 2^16 (A + 1) <= p_i 2^32, true; A > Ti means
 * r_i >= 2^16 A > p_i 2^32, false. The double test agrees with both: it is exactly
 * r_i < p_i 2^32 when p_i 2^32 >= 4 (then p_i 2^32 - 2^31 is exact in double), and false
 * when p_i 2^32 < 4 <= r_i (here A >= 1 > T). NaN converts to INT_MIN: false in both.
 * Callers give Ti (a truncating conversion of T, 0 <= T < 2^31 or NaN) and A; lanes with
 * A == Ti (for each p_i, one value of A in 2^16) are left undecided, in *amb, for
 * MPT_BELOW32 itself on the whole r_i. Lanes: all ones true, 0 false. */
MPT_AVX2_FN static inline __attribute__((always_inline))
__m256i mpt_below8_avx2(__m256i a, __m256i ti, __m256i *amb) {
    *amb = _mm256_cmpeq_epi32(ti, a);
    return _mm256_cmpgt_epi32(ti, a);
}

#endif

/* Ternary codes: nz = [u_i < |x_i| * inv], code = nz | (nz & sign) << 1. */
MPT_BODY mpt_ternary32_body(const float *x, const uint32_t *r, int64_t n, float inv,
                            uint16_t *codes) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, x + i, 4);
        float q = __builtin_fabsf(x[i]) * inv;
        uint32_t nz = MPT_BELOW32(r[i], q);
        codes[i] = (uint16_t)(nz | ((nz & (b >> 31)) << 1));
    }
}
MPT_MULTI(mpt_ternary32, (const float *x, const uint32_t *r, int64_t n, float inv, uint16_t *codes),
          (x, r, n, inv, codes))

/* The whole float32 ternary encoder in one pass, AVX2 and AVX-512 (returns 0 at the
 * baseline level, and the caller runs the block loop of random words, mpt_ternary32 and
 * packing): for 16 entries at a time the stream's words are made in registers, the codes
 * are the test of mpt_ternary32 (the same bits), and the 16 codes go straight to one
 * 32-bit word of the LSB-first stream: nonzero bits at the even positions,
 * nonzero-and-negative bits at the odd ones. out has exactly ceil(2 d / 8) bytes; the
 * unused high bits of the last byte are 0. */

/* The codes of n <= 16 entries from their r[0..n) as one word of the stream (2 bits each,
 * LSB first): the scalar test, for the undecided groups and the last entries. */
static uint32_t mpt_ternary_word(const float *x, const uint32_t *r, int64_t n, float inv) {
    uint32_t w = 0;
    for (int64_t k = 0; k < n; k++) {
        uint32_t b;
        memcpy(&b, x + k, 4);
        float q = __builtin_fabsf(x[k]) * inv;
        uint32_t nz = MPT_BELOW32(r[k], q);
        w |= (nz | ((nz & (b >> 31)) << 1)) << (2 * k);
    }
    return w;
}

/* Entries i .. d-1 (fewer than 16) into the last bytes of out. */
static void mpt_ternary_tail32(const float *x, int64_t i, int64_t d, uint64_t seed, float inv,
                               uint8_t *out) {
    if (i >= d) return;
    uint32_t r[16];
    mpt_random32_at(seed, i, d - i, r);
    uint32_t w = mpt_ternary_word(x + i, r, d - i, inv);
    memcpy(out + (i >> 2), &w, (size_t)((2 * (d - i) + 7) / 8));
}

#if MPT_X86
/* AVX-512: 32 entries at a time from 8 lead words (mpt_mix64_avx512: one register), 16 at a
 * time from 4 at the end, the test of mpt_below8_avx2 on 16 lanes as masks
 * (nz: lead < Ti, undecided: lead == Ti, with Ti = floor(|x| inv 2^16) as in
 * mpt_tcodes8_avx2), the codes by pdep; groups with an undecided lane make their whole r_i
 * and take the scalar test. lead: the lead pieces of entries i .. i+15 (i a multiple of 4)
 * zero-extended to 32 bits. */
MPT_AVX512_FN static inline __attribute__((always_inline))
uint32_t mpt_ternary16_avx512(__m512i lead, const float *x, __m512 inv16, float inv, uint64_t seed,
                              int64_t i) {
    __m512 xv = _mm512_loadu_ps(x);
    __m512i ti = _mm512_cvttps_epi32(_mm512_mul_ps(_mm512_abs_ps(xv), inv16));
    uint32_t nz = (uint32_t)_mm512_cmpgt_epi32_mask(ti, lead);
    uint32_t neg = (uint32_t)_mm512_movepi32_mask(_mm512_castps_si512(xv));
    uint32_t code = _pdep_u32(nz, 0x55555555u) | _pdep_u32(nz & neg, 0xAAAAAAAAu);
    if (__builtin_expect(_mm512_cmpeq_epi32_mask(ti, lead) != 0, 0)) {
        uint32_t r[16];
        mpt_random32_at(seed, i, 16, r);
        code = mpt_ternary_word(x, r, 16, inv);
    }
    return code;
}

MPT_AVX512_FN
static void mpt_ternary_enc32_avx512(const float *x, int64_t d, uint64_t seed, float inv,
                                     uint8_t *out) {
    const __m512i g8 = _mm512_set1_epi64((int64_t)(8 * MPT_GOLDEN));
    const __m512 invv = _mm512_set1_ps(inv * 65536.0f);  /* inv 2^16: the caller keeps it finite */
    __m512i z = mpt_ctr8_avx512(seed, 0);
    int64_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m512i w = mpt_mix64_avx512(z);
        uint64_t code = (uint64_t)mpt_ternary16_avx512(
            _mm512_cvtepu16_epi32(_mm512_castsi512_si256(w)), x + i, invv, inv, seed, i)
            | (uint64_t)mpt_ternary16_avx512(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(w, 1)),
                                             x + i + 16, invv, inv, seed, i + 16) << 32;
        memcpy(out + (i >> 2), &code, 8);
        z = _mm512_add_epi64(z, g8);
    }
    if (i + 16 <= d) {
        __m256i w = _mm512_castsi512_si256(mpt_mix64_avx512(z));  /* 4 of its 8 words used */
        uint32_t code = mpt_ternary16_avx512(_mm512_cvtepu16_epi32(w), x + i, invv, inv, seed, i);
        memcpy(out + (i >> 2), &code, 4);
        i += 16;
    }
    mpt_ternary_tail32(x, i, d, seed, inv, out);
}

/* AVX2: the same plan from the lead words alone (4 words make the lead pieces of 16 entries:
 * mpt_mix64_avx2, no 64-bit multiply), the test of mpt_below8_avx2 on 16-bit lanes, and no
 * pdep (slow, microcoded, on AMD CPUs before Zen 3). With Ti = floor(q_i 2^16) narrowed to
 * 16 bits with unsigned saturation (q_i = 1 gives 2^16 -> 2^16 - 1, which decides as 2^16
 * does except when the lead piece is 2^16 - 1: then undecided; NaN gives 0, false or
 * undecided as in mpt_below8_avx2), the lane holds the nonzero bit in the sign bit of its
 * low byte and nonzero-and-negative in that of its high byte, so the bytes' sign bits are
 * the 32-bit word (movemask). The narrowing interleaves 64-bit blocks (0, 2, 1, 3), so the
 * lead pieces are put in that order, and the lanes back in entry order before movemask.
 * Groups with a lane the lead piece cannot decide (about 1 in 4,000 groups of 16) make
 * their whole r_i and take the scalar test. */
MPT_AVX2_FN static inline __attribute__((always_inline))
__m256i mpt_tq16_avx2(const float *x, __m256 inv16) {
    /* floor(|x| inv 2^16) = floor(q 2^16) for q = |x| inv: the scaling commutes with the
     * rounding when q is normal, and both are < 1 when q is subnormal or 0 */
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    return _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_and_ps(_mm256_loadu_ps(x), abs), inv16));
}

/* Entries i .. i+15 (i a multiple of 4); z: the counters of lead words i/4 .. i/4+3. */
MPT_AVX2_FN static inline __attribute__((always_inline))
uint32_t mpt_ternary16_avx2(__m256i z, const float *x, __m256 inv16, float inv, uint64_t seed,
                            int64_t i) {
    __m256i lead = _mm256_permute4x64_epi64(mpt_mix64_avx2(z), 0xD8);
    __m256i ti = _mm256_packus_epi32(mpt_tq16_avx2(x, inv16), mpt_tq16_avx2(x + 8, inv16));
    __m256i sign = _mm256_packs_epi32(_mm256_castps_si256(_mm256_loadu_ps(x)),
                                      _mm256_castps_si256(_mm256_loadu_ps(x + 8)));
    __m256i zero = _mm256_cmpeq_epi16(_mm256_max_epu16(lead, ti), lead);  /* lead >= Ti */
    __m256i odd = _mm256_cmpeq_epi16(lead, ti);
    __m256i lanes = _mm256_andnot_si256(zero, _mm256_or_si256(sign, _mm256_set1_epi16(0x80)));
    uint32_t code = (uint32_t)_mm256_movemask_epi8(_mm256_permute4x64_epi64(lanes, 0xD8));
    if (__builtin_expect(!_mm256_testz_si256(odd, odd), 0)) {
        uint32_t r[16];
        mpt_random32_at(seed, i, 16, r);
        code = mpt_ternary_word(x, r, 16, inv);
    }
    return code;
}

MPT_AVX2_FN
static void mpt_ternary_enc32_avx2(const float *x, int64_t d, uint64_t seed, float inv,
                                   uint8_t *out) {
    const __m256i g4 = _mm256_set1_epi64x((int64_t)(4 * MPT_GOLDEN));
    const __m256i g8 = _mm256_set1_epi64x((int64_t)(8 * MPT_GOLDEN));
    const __m256 invv = _mm256_set1_ps(inv * 65536.0f);  /* inv 2^16: the caller keeps it finite */
    __m256i z0 = mpt_ctr64_avx2(seed, 0), z1 = _mm256_add_epi64(z0, g4);
    int64_t i = 0;
    for (; i + 32 <= d; i += 32) {
        uint64_t w = (uint64_t)mpt_ternary16_avx2(z0, x + i, invv, inv, seed, i)
            | (uint64_t)mpt_ternary16_avx2(z1, x + i + 16, invv, inv, seed, i + 16) << 32;
        memcpy(out + (i >> 2), &w, 8);
        z0 = _mm256_add_epi64(z0, g8);
        z1 = _mm256_add_epi64(z1, g8);
    }
    for (; i + 16 <= d; i += 16) {
        uint32_t w = mpt_ternary16_avx2(z0, x + i, invv, inv, seed, i);
        memcpy(out + (i >> 2), &w, 4);
        z0 = _mm256_add_epi64(z0, g4);
    }
    mpt_ternary_tail32(x, i, d, seed, inv, out);
}
#endif

/* 1 when the one-pass encoder ran (AVX2 and AVX-512 levels, for inv <= 2^100, that is
 * ||x||_inf >= 2^-100), 0 when the caller must encode. */
static int mpt_ternary_enc32(const float *x, int64_t d, uint64_t seed, float inv, uint8_t *out) {
#if MPT_X86
    int level = mpt_simd_level();
    if (level >= MPT_AVX2 && inv <= 0x1p100f) {  /* inv 2^16 finite: ordinary inputs */
        if (level == MPT_AVX512) mpt_ternary_enc32_avx512(x, d, seed, inv, out);
        else mpt_ternary_enc32_avx2(x, d, seed, inv, out);
        return 1;
    }
#endif
    return 0;
}

/* Standard dithering codes: t = |x_i| * mul, level = floor(t) + [u_i < t - floor(t)],
 * capped at levels; code = level << 1 | (sign if level > 0). */
MPT_BODY mpt_sdither32_body(const float *x, const uint32_t *r, int64_t n, float mul,
                            int32_t levels, uint16_t *codes) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, x + i, 4);
        float t = __builtin_fabsf(x[i]) * mul;
        int32_t lv = (int32_t)t;  /* t >= 0 and t <= levels (+ rounding): floor */
        float f = t - (float)lv;
        lv += MPT_BELOW32(r[i], f);
        lv = lv > levels ? levels : lv;
        codes[i] = (uint16_t)(((uint32_t)lv << 1) | ((b >> 31) & (uint32_t)(lv != 0)));
    }
}
MPT_MULTI(mpt_sdither32, (const float *x, const uint32_t *r, int64_t n, float mul, int32_t levels,
                          uint16_t *codes),
          (x, r, n, mul, levels, codes))

/* Natural dithering codes of one bucket: q = |x_i| * inv; q >= lowest (= 2^(1-s)):
 * q = 2^a (1 + m / 2^23), level = a + s + [(r_i >> 9) < m]; q < lowest:
 * level = [u_i < q * scale_small] (scale_small = 2^(s-1)); capped at levels;
 * code = level << 1 | (sign if level > 0). NaN q gives level 0 (both tests fail). */
MPT_BODY mpt_ndither32_body(const float *x, const uint32_t *r, int64_t n, float inv,
                            int32_t levels, float lowest, float scale_small,
                            uint16_t *codes) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t b, qb;
        memcpy(&b, x + i, 4);
        float q = __builtin_fabsf(x[i]) * inv;
        memcpy(&qb, &q, 4);
        int32_t big = (int32_t)(qb >> 23) - 127 + levels + ((r[i] >> 9) < (qb & 0x7FFFFFu));
        int32_t small = MPT_BELOW32(r[i], q * scale_small);
        int32_t ge = -(int32_t)(q >= lowest);  /* a mask, not a branch: both sides computed */
        int32_t lv = (big & ge) | (small & ~ge);
        lv = lv > levels ? levels : lv;
        codes[i] = (uint16_t)(((uint32_t)lv << 1) | ((b >> 31) & (uint32_t)(lv != 0)));
    }
}
MPT_MULTI(mpt_ndither32, (const float *x, const uint32_t *r, int64_t n, float inv, int32_t levels,
                          float lowest, float scale_small, uint16_t *codes),
          (x, r, n, inv, levels, lowest, scale_small, codes))

/* ---- Dithering codes with the random words made in registers: entries first .. first+n-1
 * of the vector (first may be anything: a bucket can start anywhere), the codes of
 * mpt_sdither32 / mpt_ndither32 with r_i drawn from the stream by index. AVX2: 16 entries a
 * step from the lead words alone (mpt_mix64_avx2), the rounding test of mpt_below8_avx2
 * (groups with a lane it cannot decide make their whole r_i and take the scalar body);
 * AVX-512: 16 entries a step, their whole r_i from one register of lead and tail words;
 * baseline: the words into a buffer, then the block above. */
#if MPT_X86
/* Standard dithering, 16 lanes of 16 bits: the codes of mpt_sdither32_body for levels < 256,
 * from the lead pieces of mpt_mix64_avx2's 4 words w. With mul16 = mul 2^16,
 * u = floor(t 2^16) = floor(t) 2^16 + floor((t - floor(t)) 2^16) for 0 <= t < 2^15 (exact: a
 * power-of-two scaling when t is normal, u = 0 when t is subnormal or 0 either way), so
 * level = u >> 16 and Ti = u & (2^16 - 1) are the two numbers of the rounding test
 * (mpt_below8_avx2, here on 16-bit lanes: unsigned max and compare); code =
 * level << 1 | min(sign, level) (level >= 0). A lane with t NaN, inf or >= 2^15 converts to
 * INT_MIN: its narrowed u is negative and goes to *odd (the sign bit of the lane's high
 * byte), and the caller takes the scalar body, as for the undecided lanes. The narrowing
 * interleaves 64-bit blocks (0, 2, 1, 3): the lead pieces are put in that order, the codes
 * back in entry order. */
MPT_AVX2_FN static inline __attribute__((always_inline))
__m256i mpt_sdcodes16_avx2(__m256i w, const float *x, __m256 mul16, __m256i lvmax, __m256i *odd) {
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i low16 = _mm256_set1_epi32(0xFFFF);
    __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
    __m256i u0 = _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_and_ps(x0, abs), mul16));
    __m256i u1 = _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_and_ps(x1, abs), mul16));
    __m256i lead = _mm256_permute4x64_epi64(w, 0xD8);
    __m256i ti = _mm256_packus_epi32(_mm256_and_si256(u0, low16), _mm256_and_si256(u1, low16));
    __m256i lv = _mm256_packs_epi32(_mm256_srai_epi32(u0, 16), _mm256_srai_epi32(u1, 16));
    __m256i stay = _mm256_cmpeq_epi16(_mm256_max_epu16(lead, ti), lead);  /* lead >= Ti */
    *odd = _mm256_or_si256(*odd, _mm256_or_si256(_mm256_cmpeq_epi16(lead, ti),
                                                  _mm256_packs_epi32(u0, u1)));
    lv = _mm256_min_epi16(_mm256_sub_epi16(lv, _mm256_andnot_si256(stay, _mm256_set1_epi16(-1))), lvmax);
    __m256i sign = _mm256_srli_epi16(_mm256_packs_epi32(_mm256_castps_si256(x0),
                                                        _mm256_castps_si256(x1)), 15);
    return _mm256_permute4x64_epi64(_mm256_or_si256(_mm256_slli_epi16(lv, 1),
                                                    _mm256_min_epi16(sign, lv)), 0xD8);
}

/* Natural dithering, 8 lanes: the codes of mpt_ndither32_body for levels <= 105 (so that
 * scale_small 2^16 is a float). Lanes at or above lowest round up iff (r_i >> 9) < m (the
 * mantissa of q): decided by A = r_i >> 16 against m >> 7 (A < m >> 7: true, A > m >> 7:
 * false, as in mpt_below8_avx2), undecided when equal; lanes below lowest take the rounding
 * test of q scale_small. Levels are in 0..levels (NaN q gives 0 as in the body), so the
 * sign is min(sign, level). */
MPT_AVX2_FN static inline __attribute__((always_inline))
__m256i mpt_ndcodes8_avx2(__m256i lead, const float *x, __m256 invv, __m256i lvmax, __m256i bias,
                          __m256 lowv, __m256 small16, __m256i *odd) {
    __m256 xv = _mm256_loadu_ps(x);
    __m256 q = _mm256_mul_ps(_mm256_and_ps(xv, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF))),
                             invv);
    __m256i qb = _mm256_castps_si256(q);
    /* exponent - 127 + levels + [(r >> 9) < mantissa] */
    __m256i amb_big;
    __m256i big = _mm256_sub_epi32(_mm256_add_epi32(_mm256_srli_epi32(qb, 23), bias),
                                   mpt_below8_avx2(lead, _mm256_srli_epi32(
                                       _mm256_and_si256(qb, _mm256_set1_epi32(0x7FFFFF)), 7), &amb_big));
    /* q scale_small 2^16 in one product: exact (powers of two, q < lowest in the lanes
     * that use it, so < 2^16) */
    __m256i amb_small;
    __m256i up = mpt_below8_avx2(lead, _mm256_cvttps_epi32(_mm256_mul_ps(q, small16)), &amb_small);
    __m256i ge = _mm256_castps_si256(_mm256_cmp_ps(q, lowv, _CMP_GE_OQ));
    *odd = _mm256_or_si256(*odd, _mm256_blendv_epi8(amb_small, amb_big, ge));
    __m256i lv = _mm256_min_epi32(_mm256_blendv_epi8(_mm256_srli_epi32(up, 31), big, ge), lvmax);
    return _mm256_or_si256(_mm256_slli_epi32(lv, 1),
                           _mm256_min_epi32(_mm256_srli_epi32(_mm256_castps_si256(xv), 31), lv));
}

/* 16 codes of mpt_ndcodes8_avx2 from the lead pieces of 4 words w, in entry order. */
MPT_AVX2_FN static inline __attribute__((always_inline))
__m256i mpt_ndcodes16_avx2(__m256i w, const float *x, __m256 invv, __m256i lvmax, __m256i bias,
                           __m256 lowv, __m256 small16, __m256i *odd) {
    __m256i c0 = mpt_ndcodes8_avx2(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(w)), x, invv,
                                   lvmax, bias, lowv, small16, odd);
    __m256i c1 = mpt_ndcodes8_avx2(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(w, 1)), x + 8,
                                   invv, lvmax, bias, lowv, small16, odd);
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(c0, c1), 0xD8);
}

/* The step loop shared by both: CODES16(w, x) gives 16 codes from the lead words w,
 * BODY(x, r, n, codes) is the scalar block for the first entries up to a multiple of 4
 * (where a lead word starts), groups the vector test cannot decide (a lane of odd with the
 * sign bit of its high byte set), and the tail. */
#define MPT_DITHER_LOOP_AVX2(CODES16, BODY) do { \
        int64_t i = (-first) & 3; \
        uint32_t rr[16]; \
        if (i > n) i = n; \
        if (i > 0) { \
            mpt_random32_at(seed, first, i, rr); \
            BODY(x, rr, i, codes); \
        } \
        __m256i z = mpt_ctr64_avx2(seed, (uint64_t)(first + i) >> 2); \
        const __m256i g4 = _mm256_set1_epi64x((int64_t)(4 * MPT_GOLDEN)); \
        for (; i + 16 <= n; i += 16) { \
            __m256i odd = _mm256_setzero_si256(); \
            _mm256_storeu_si256((__m256i *)(codes + i), CODES16(mpt_mix64_avx2(z), x + i)); \
            if (__builtin_expect((_mm256_movemask_epi8(odd) & (int)0xAAAAAAAAu) != 0, 0)) { \
                mpt_random32_at(seed, first + i, 16, rr); \
                BODY(x + i, rr, 16, codes + i); \
            } \
            z = _mm256_add_epi64(z, g4); \
        } \
        if (i < n) { \
            mpt_random32_at(seed, first + i, n - i, rr); \
            BODY(x + i, rr, n - i, codes + i); \
        } \
    } while (0)

MPT_AVX2_FN static void mpt_sdither32r_avx2(const float *x, uint64_t seed, int64_t first, int64_t n,
                                            float mul, int32_t levels, uint16_t *codes) {
    const __m256 mul16 = _mm256_set1_ps(mul * 65536.0f);
    const __m256i lvmax = _mm256_set1_epi16((int16_t)levels);
#define MPT_SD16(w, xp) mpt_sdcodes16_avx2(w, xp, mul16, lvmax, &odd)
#define MPT_SDB(xp, rp, m, cp) mpt_sdither32_body(xp, rp, m, mul, levels, cp)
    MPT_DITHER_LOOP_AVX2(MPT_SD16, MPT_SDB);
#undef MPT_SD16
#undef MPT_SDB
}

MPT_AVX2_FN static void mpt_ndither32r_avx2(const float *x, uint64_t seed, int64_t first, int64_t n,
                                            float inv, int32_t levels, float lowest,
                                            float scale_small, uint16_t *codes) {
    const __m256 invv = _mm256_set1_ps(inv), lowv = _mm256_set1_ps(lowest);
    const __m256 small16 = _mm256_set1_ps(scale_small * 65536.0f);
    const __m256i lvmax = _mm256_set1_epi32(levels), bias = _mm256_set1_epi32(levels - 127);
#define MPT_ND16(w, xp) mpt_ndcodes16_avx2(w, xp, invv, lvmax, bias, lowv, small16, &odd)
#define MPT_NDB(xp, rp, m, cp) mpt_ndither32_body(xp, rp, m, inv, levels, lowest, scale_small, cp)
    MPT_DITHER_LOOP_AVX2(MPT_ND16, MPT_NDB);
#undef MPT_ND16
#undef MPT_NDB
}

/* AVX-512: the same on 16 lanes of 32 bits (the lead pieces of 4 words zero-extended, the
 * masks of AVX-512 for the tests), the words from vpmullq (mpt_mix64_avx512). */
MPT_AVX512_FN static inline __attribute__((always_inline))
__m512i mpt_sdcodes16_avx512(__m512i lead, const float *x, __m512 mul16, __m512i lvmax, __mmask16 *odd) {
    __m512 xv = _mm512_loadu_ps(x);
    __m512i u = _mm512_cvttps_epi32(_mm512_mul_ps(_mm512_abs_ps(xv), mul16));
    __m512i ti = _mm512_and_si512(u, _mm512_set1_epi32(0xFFFF));
    __mmask16 up = _mm512_cmpgt_epi32_mask(ti, lead);
    *odd |= (__mmask16)(_mm512_cmpeq_epi32_mask(ti, lead) | _mm512_movepi32_mask(u));
    __m512i lv = _mm512_srli_epi32(u, 16);
    lv = _mm512_min_epi32(_mm512_mask_add_epi32(lv, up, lv, _mm512_set1_epi32(1)), lvmax);
    return _mm512_or_si512(_mm512_slli_epi32(lv, 1),
                           _mm512_min_epi32(_mm512_srli_epi32(_mm512_castps_si512(xv), 31), lv));
}

MPT_AVX512_FN static inline __attribute__((always_inline))
__m512i mpt_ndcodes16_avx512(__m512i lead, const float *x, __m512 invv, __m512i lvmax, __m512i bias,
                             __m512 lowv, __m512 small16, __mmask16 *odd) {
    __m512 xv = _mm512_loadu_ps(x);
    __m512 q = _mm512_mul_ps(_mm512_abs_ps(xv), invv);
    __m512i qb = _mm512_castps_si512(q);
    __m512i mh = _mm512_srli_epi32(_mm512_and_si512(qb, _mm512_set1_epi32(0x7FFFFF)), 7);
    __m512i big = _mm512_add_epi32(_mm512_srli_epi32(qb, 23), bias);
    big = _mm512_mask_add_epi32(big, _mm512_cmpgt_epi32_mask(mh, lead), big, _mm512_set1_epi32(1));
    __m512i ti = _mm512_cvttps_epi32(_mm512_mul_ps(q, small16));
    __mmask16 ge = _mm512_cmp_ps_mask(q, lowv, _CMP_GE_OQ);
    *odd |= (__mmask16)((_mm512_cmpeq_epi32_mask(mh, lead) & ge)
                        | (_mm512_cmpeq_epi32_mask(ti, lead) & ~ge));
    __m512i small = _mm512_maskz_set1_epi32(_mm512_cmpgt_epi32_mask(ti, lead), 1);
    __m512i lv = _mm512_min_epi32(_mm512_mask_blend_epi32(ge, small, big), lvmax);
    return _mm512_or_si512(_mm512_slli_epi32(lv, 1),
                           _mm512_min_epi32(_mm512_srli_epi32(_mm512_castps_si512(xv), 31), lv));
}

/* The step loop: 32 entries per register of 8 lead words, then 16 from 4; each group of 16
 * with an undecided lane takes the scalar body on its whole r_i. */
#define MPT_DITHER_GROUP_AVX512(CODES16, BODY, LEAD, k) do { \
            __mmask16 odd = 0; \
            __m512i c = CODES16(LEAD, x + (k)); \
            _mm256_storeu_si256((__m256i *)(codes + (k)), _mm512_cvtepi32_epi16(c)); \
            if (__builtin_expect(odd != 0, 0)) { \
                mpt_random32_at(seed, first + (k), 16, rr); \
                BODY(x + (k), rr, 16, codes + (k)); \
            } \
    } while (0)
#define MPT_DITHER_LOOP_AVX512(CODES16, BODY) do { \
        int64_t i = (-first) & 3; \
        uint32_t rr[16]; \
        if (i > n) i = n; \
        if (i > 0) { \
            mpt_random32_at(seed, first, i, rr); \
            BODY(x, rr, i, codes); \
        } \
        __m512i z = mpt_ctr8_avx512(seed, (uint64_t)(first + i) >> 2); \
        const __m512i g8 = _mm512_set1_epi64((int64_t)(8 * MPT_GOLDEN)); \
        for (; i + 32 <= n; i += 32) { \
            __m512i w = mpt_mix64_avx512(z); \
            MPT_DITHER_GROUP_AVX512(CODES16, BODY, _mm512_cvtepu16_epi32(_mm512_castsi512_si256(w)), i); \
            MPT_DITHER_GROUP_AVX512(CODES16, BODY, \
                                    _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(w, 1)), i + 16); \
            z = _mm512_add_epi64(z, g8); \
        } \
        if (i + 16 <= n) { \
            __m256i w = _mm512_castsi512_si256(mpt_mix64_avx512(z)); /* 4 of 8 words used */ \
            MPT_DITHER_GROUP_AVX512(CODES16, BODY, _mm512_cvtepu16_epi32(w), i); \
            i += 16; \
        } \
        if (i < n) { \
            mpt_random32_at(seed, first + i, n - i, rr); \
            BODY(x + i, rr, n - i, codes + i); \
        } \
    } while (0)

MPT_AVX512_FN static void mpt_sdither32r_avx512(const float *x, uint64_t seed, int64_t first, int64_t n,
                                                float mul, int32_t levels, uint16_t *codes) {
    const __m512 mul16 = _mm512_set1_ps(mul * 65536.0f);
    const __m512i lvmax = _mm512_set1_epi32(levels);
#define MPT_SD16(lead, xp) mpt_sdcodes16_avx512(lead, xp, mul16, lvmax, &odd)
#define MPT_SDB(xp, rp, m, cp) mpt_sdither32_body(xp, rp, m, mul, levels, cp)
    MPT_DITHER_LOOP_AVX512(MPT_SD16, MPT_SDB);
#undef MPT_SD16
#undef MPT_SDB
}

MPT_AVX512_FN static void mpt_ndither32r_avx512(const float *x, uint64_t seed, int64_t first, int64_t n,
                                                float inv, int32_t levels, float lowest,
                                                float scale_small, uint16_t *codes) {
    const __m512 invv = _mm512_set1_ps(inv), lowv = _mm512_set1_ps(lowest);
    const __m512 small16 = _mm512_set1_ps(scale_small * 65536.0f);
    const __m512i lvmax = _mm512_set1_epi32(levels), bias = _mm512_set1_epi32(levels - 127);
#define MPT_ND16(lead, xp) mpt_ndcodes16_avx512(lead, xp, invv, lvmax, bias, lowv, small16, &odd)
#define MPT_NDB(xp, rp, m, cp) mpt_ndither32_body(xp, rp, m, inv, levels, lowest, scale_small, cp)
    MPT_DITHER_LOOP_AVX512(MPT_ND16, MPT_NDB);
#undef MPT_ND16
#undef MPT_NDB
}
#endif

/* Baseline: the words of at most 256 entries into a buffer, then the block. */
#define MPT_DITHER_BUFFERED(CALL) do { \
        uint32_t rr[256]; \
        for (int64_t i = 0; i < n; i += 256) { \
            int64_t m = n - i < 256 ? n - i : 256; \
            mpt_random32_at(seed, first + i, m, rr); \
            CALL; \
        } \
    } while (0)

static void mpt_sdither32r(const float *x, uint64_t seed, int64_t first, int64_t n, float mul,
                           int32_t levels, uint16_t *codes) {
#if MPT_X86
    int level = mpt_simd_level();
    if (level >= MPT_AVX2 && levels < 256 && mul <= 0x1p100f) {  /* mul 2^23 finite */
        if (level == MPT_AVX512) mpt_sdither32r_avx512(x, seed, first, n, mul, levels, codes);
        else mpt_sdither32r_avx2(x, seed, first, n, mul, levels, codes);
        return;
    }
#endif
    MPT_DITHER_BUFFERED(mpt_sdither32(x + i, rr, m, mul, levels, codes + i));
}

static void mpt_ndither32r(const float *x, uint64_t seed, int64_t first, int64_t n, float inv,
                           int32_t levels, float lowest, float scale_small, uint16_t *codes) {
#if MPT_X86
    int level = mpt_simd_level();
    if (level >= MPT_AVX2 && levels <= 105) {  /* scale_small 2^23 finite */
        if (level == MPT_AVX512)
            mpt_ndither32r_avx512(x, seed, first, n, inv, levels, lowest, scale_small, codes);
        else mpt_ndither32r_avx2(x, seed, first, n, inv, levels, lowest, scale_small, codes);
        return;
    }
#endif
    MPT_DITHER_BUFFERED(mpt_ndither32(x + i, rr, m, inv, levels, lowest, scale_small, codes + i));
}

/* Four running sums in double of x_i^2 (p = 2) or |x_i| (p = 1) over n4 entries (a multiple
 * of 4), entry i into a[i mod 4]: the loop of compress_round.pyx ``bucket_norm``, whose
 * plain sum is pinned. The four sums are the four lanes of one 256-bit register (AVX2 and
 * AVX-512 levels; a wider register would change the order of additions), so each lane adds
 * the same terms in the same order (x_i^2 is exact in double): the same bits. */
MPT_BODY mpt_sums32_body(const float *x, int64_t n4, int p1, double *a) {
    double a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    if (p1) {
        for (int64_t i = 0; i < n4; i += 4) {
            a0 += __builtin_fabs((double)x[i]);
            a1 += __builtin_fabs((double)x[i + 1]);
            a2 += __builtin_fabs((double)x[i + 2]);
            a3 += __builtin_fabs((double)x[i + 3]);
        }
    } else {
        for (int64_t i = 0; i < n4; i += 4) {
            a0 += (double)x[i] * (double)x[i];
            a1 += (double)x[i + 1] * (double)x[i + 1];
            a2 += (double)x[i + 2] * (double)x[i + 2];
            a3 += (double)x[i + 3] * (double)x[i + 3];
        }
    }
    a[0] = a0; a[1] = a1; a[2] = a2; a[3] = a3;
}

#if MPT_X86
MPT_AVX2_FN static void mpt_sums32_avx2(const float *x, int64_t n4, int p1, double *a) {
    __m256d acc = _mm256_loadu_pd(a);
    if (p1) {
        const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
        for (int64_t i = 0; i < n4; i += 4)
            acc = _mm256_add_pd(acc, _mm256_and_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), absm));
    } else {
        for (int64_t i = 0; i < n4; i += 4) {
            __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
            acc = _mm256_add_pd(acc, _mm256_mul_pd(v, v));
        }
    }
    _mm256_storeu_pd(a, acc);
}
#endif

static void mpt_sums32(const float *x, int64_t n4, int p1, double *a) {
#if MPT_X86
    if (mpt_simd_level() >= MPT_AVX2) {
        mpt_sums32_avx2(x, n4, p1, a);
        return;
    }
#endif
    mpt_sums32_body(x, n4, p1, a);
}

/* Natural compression codes (9 bits): exponent + [rounds up], 256 -> 255, sign << 8;
 * up = (r_i >> 9) < mantissa (random) or mantissa >= 2^22 (deterministic, r unused).
 * In the same loop, two plain reductions for natural compression's input range
 * (compress_round.pyx ``natural_encode``; Beznosikov et al., "On biased compression for
 * distributed learning", C_nat in U(1/8)): *mx = max(*mx, |x_i| bits) (inf and NaN
 * included: the caller rescans for the largest finite one only when *mx is inf or NaN) and
 * *mn = min(*mn, |x_i| bits - 1) unsigned (< 0x7FFFFF iff some x_i is a nonzero subnormal;
 * 0 wraps to the maximum). vpmaxud / vpminud: +0.01 ns per entry random, +0.06 ns
 * deterministic, measured in L1; masking inf out inside the loop cost 0.11-0.15 ns (and a
 * ?: on the condition made GCC emit a scalar cmov chain, 2x the encoder's time). */
#define MPT_FRANGE_STEP(b) do { \
        uint32_t k_ = (b) & 0x7FFFFFFFu, km_ = k_ - 1u; \
        m = m > k_ ? m : k_; \
        s = s < km_ ? s : km_; \
    } while (0)
MPT_BODY mpt_natural32_body(const uint32_t *xb, const uint32_t *r, int64_t n, int det,
                            uint16_t *codes, uint32_t *mx, uint32_t *mn) {
    uint32_t m = *mx, s = *mn;
    if (det) {
        for (int64_t i = 0; i < n; i++) {
            uint32_t b = xb[i];
            uint32_t e = ((b >> 23) & 0xFF) + ((b & 0x7FFFFF) >= 0x400000);
            e -= e >> 8;
            codes[i] = (uint16_t)(((b >> 31) << 8) | e);
            MPT_FRANGE_STEP(b);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            uint32_t b = xb[i];
            uint32_t e = ((b >> 23) & 0xFF) + ((r[i] >> 9) < (b & 0x7FFFFF));
            e -= e >> 8;
            codes[i] = (uint16_t)(((b >> 31) << 8) | e);
            MPT_FRANGE_STEP(b);
        }
    }
    *mx = m;
    *mn = s;
}
/* AVX2 at both vector levels: with 512-bit vectors this block ran at 11.7-12.0 GB/s
 * (biased rounding, whole encoder) against 14.5-15.6 with 256-bit ones on an AMD EPYC. */
MPT_MULTI256(mpt_natural32, (const uint32_t *xb, const uint32_t *r, int64_t n, int det,
                             uint16_t *codes, uint32_t *mx, uint32_t *mn),
             (xb, r, n, det, codes, mx, mn))

/* Random natural compression with the stream's words made in registers: entries
 * first .. first+n-1, the codes and range statistics of mpt_natural32 (random). AVX2 level:
 * 16 entries a step from the lead words alone (mpt_mix64_avx2), up = (r_i >> 9) < m decided
 * by A = r_i >> 16 against m >> 7 (A < m >> 7: true, A > m >> 7: false, as in
 * mpt_below8_avx2), groups with an equal lane (about 1 in 4,000) make their whole r_i and
 * take the scalar body (its range steps repeat the vector ones: max and min are
 * idempotent). AVX-512 and baseline: the whole r_i into a buffer (at AVX-512 with vpmullq,
 * which measured 4% faster there than the same loop on lead words), then mpt_natural32. */
#if MPT_X86
MPT_AVX2_FN static inline __attribute__((always_inline))
__m256i mpt_natcodes8_avx2(__m256i lead, const uint32_t *xb, __m256i *mx, __m256i *mn, __m256i *odd) {
    __m256i b = _mm256_loadu_si256((const __m256i *)xb);
    __m256i mh = _mm256_srli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x7FFFFF)), 7);
    *odd = _mm256_or_si256(*odd, _mm256_cmpeq_epi32(mh, lead));
    __m256i e = _mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(b, 23), _mm256_set1_epi32(0xFF)),
                                 _mm256_cmpgt_epi32(mh, lead));
    e = _mm256_sub_epi32(e, _mm256_srli_epi32(e, 8));  /* 256 (overflow) -> 255 (inf) */
    __m256i k = _mm256_and_si256(b, _mm256_set1_epi32(0x7FFFFFFF));
    *mx = _mm256_max_epu32(*mx, k);
    *mn = _mm256_min_epu32(*mn, _mm256_sub_epi32(k, _mm256_set1_epi32(1)));
    return _mm256_or_si256(_mm256_slli_epi32(_mm256_srli_epi32(b, 31), 8), e);
}

MPT_AVX2_FN static void mpt_natural32r_avx2(const uint32_t *xb, uint64_t seed, int64_t first,
                                            int64_t n, uint16_t *codes, uint32_t *mx, uint32_t *mn) {
    int64_t i = (-first) & 3;
    uint32_t rr[16];
    if (i > n) i = n;
    if (i > 0) {
        mpt_random32_at(seed, first, i, rr);
        mpt_natural32_body(xb, rr, i, 0, codes, mx, mn);
    }
    __m256i z = mpt_ctr64_avx2(seed, (uint64_t)(first + i) >> 2);
    const __m256i g4 = _mm256_set1_epi64x((int64_t)(4 * MPT_GOLDEN));
    __m256i vmx = _mm256_set1_epi32((int32_t)*mx), vmn = _mm256_set1_epi32((int32_t)*mn);
    for (; i + 16 <= n; i += 16) {
        __m256i w = mpt_mix64_avx2(z);
        __m256i odd = _mm256_setzero_si256();
        __m256i c0 = mpt_natcodes8_avx2(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(w)),
                                        xb + i, &vmx, &vmn, &odd);
        __m256i c1 = mpt_natcodes8_avx2(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(w, 1)),
                                        xb + i + 8, &vmx, &vmn, &odd);
        _mm256_storeu_si256((__m256i *)(codes + i),
                            _mm256_permute4x64_epi64(_mm256_packus_epi32(c0, c1), 0xD8));
        if (__builtin_expect(!_mm256_testz_si256(odd, odd), 0)) {
            mpt_random32_at(seed, first + i, 16, rr);
            mpt_natural32_body(xb + i, rr, 16, 0, codes + i, mx, mn);
        }
        z = _mm256_add_epi64(z, g4);
    }
    uint32_t lanes[16];
    _mm256_storeu_si256((__m256i *)lanes, vmx);
    _mm256_storeu_si256((__m256i *)(lanes + 8), vmn);
    for (int k = 0; k < 8; k++) {
        *mx = *mx > lanes[k] ? *mx : lanes[k];
        *mn = *mn < lanes[8 + k] ? *mn : lanes[8 + k];
    }
    if (i < n) {
        mpt_random32_at(seed, first + i, n - i, rr);
        mpt_natural32_body(xb + i, rr, n - i, 0, codes + i, mx, mn);
    }
}
#endif

static void mpt_natural32r(const uint32_t *xb, uint64_t seed, int64_t first, int64_t n,
                           uint16_t *codes, uint32_t *mx, uint32_t *mn) {
#if MPT_X86
    int level = mpt_simd_level();
    if (level == MPT_AVX2) { mpt_natural32r_avx2(xb, seed, first, n, codes, mx, mn); return; }
#endif
    uint32_t rr[256];
    for (int64_t i = 0; i < n; i += 256) {
        int64_t m = n - i < 256 ? n - i : 256;
        mpt_random32_at(seed, first + i, m, rr);
        mpt_natural32(xb + i, rr, m, 0, codes + i, mx, mn);
    }
}

/* The same for float64 (12-bit codes: sign << 11 | exponent + [rounds up], 2048 -> 2047):
 * up = (r_i >> 12) < mantissa (random) or mantissa >= 2^51 (deterministic). Both sides of
 * each comparison are < 2^52, so they are compared as signed int64 (AVX2 has no unsigned
 * 64-bit compare): the same results, vectorised. Statistics as in mpt_natural32, on signed
 * keys: *mx = max(|x_i| bits) (< 2^63), *mn = min((|x_i| bits - 1) ^ 2^63) (the unsigned
 * order as a signed one: < 0x000FFFFFFFFFFFFF ^ 2^63 iff some x_i is a nonzero subnormal). */
#define MPT_FRANGE64_STEP(b) do { \
        int64_t k_ = (int64_t)((b) & 0x7FFFFFFFFFFFFFFFULL); \
        int64_t km_ = (int64_t)(((uint64_t)k_ - 1u) ^ 0x8000000000000000ULL); \
        m = m > k_ ? m : k_; \
        s = s < km_ ? s : km_; \
    } while (0)
MPT_BODY mpt_natural64_body(const uint64_t *xb, const uint64_t *r, int64_t n, int det,
                            uint16_t *codes, int64_t *mx, int64_t *mn) {
    const uint64_t mmask = (1ULL << 52) - 1ULL;
    int64_t m = *mx, s = *mn;
    if (det) {
        for (int64_t i = 0; i < n; i++) {
            uint64_t b = xb[i];
            uint64_t e = ((b >> 52) & 0x7FF) + (uint64_t)((int64_t)(b & mmask) >= (1LL << 51));
            e -= e >> 11;
            codes[i] = (uint16_t)(((b >> 63) << 11) | e);
            MPT_FRANGE64_STEP(b);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            uint64_t b = xb[i];
            uint64_t e = ((b >> 52) & 0x7FF) + (uint64_t)((int64_t)(r[i] >> 12) < (int64_t)(b & mmask));
            e -= e >> 11;
            codes[i] = (uint16_t)(((b >> 63) << 11) | e);
            MPT_FRANGE64_STEP(b);
        }
    }
    *mx = m;
    *mn = s;
}
MPT_MULTI(mpt_natural64, (const uint64_t *xb, const uint64_t *r, int64_t n, int det,
                          uint16_t *codes, int64_t *mx, int64_t *mn),
          (xb, r, n, det, codes, mx, mn))

/* Largest |x_i| bit pattern over non-NaN entries (as an int32; 0 if none). */
MPT_BODY mpt_absmax32_body(const int32_t *x, int64_t n, int32_t *out) {
    int32_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t k = x[i] & 0x7FFFFFFF;
        k = k > 0x7F800000 ? 0 : k;
        m = k > m ? k : m;
    }
    *out = m;
}
MPT_MULTI(mpt_absmax32, (const int32_t *x, int64_t n, int32_t *out), (x, n, out))

/* Pack n codes (n a multiple of 8) of b bits at buf, LSB first, exactly n b / 8 bytes;
 * b in {2, 4, 9} (returns 1), other widths are left to the caller (returns 0). */
MPT_BODY mpt_pack_fast_body(const uint16_t *c, int64_t n, int b, uint8_t *buf, int *done) {
    *done = 1;
    if (b == 2) {
        for (int64_t j = 0; j < n / 4; j++)
            buf[j] = (uint8_t)(c[4 * j] | c[4 * j + 1] << 2 | c[4 * j + 2] << 4 | c[4 * j + 3] << 6);
    } else if (b == 4) {
        for (int64_t j = 0; j < n / 2; j++) buf[j] = (uint8_t)(c[2 * j] | c[2 * j + 1] << 4);
    } else if (b == 9) {
        for (int64_t g = 0; g < n / 8; g++) {
            const uint16_t *q = c + 8 * g;
            uint64_t v = (uint64_t)q[0] | (uint64_t)q[1] << 9 | (uint64_t)q[2] << 18
                | (uint64_t)q[3] << 27 | (uint64_t)q[4] << 36 | (uint64_t)q[5] << 45
                | (uint64_t)q[6] << 54 | (uint64_t)q[7] << 63;
            memcpy(buf + 9 * g, &v, 8);
            buf[9 * g + 8] = (uint8_t)(q[7] >> 1);
        }
    } else {
        *done = 0;
    }
}
MPT_MULTI(mpt_pack_fast, (const uint16_t *c, int64_t n, int b, uint8_t *buf, int *done),
          (c, n, b, buf, done))

/* ---- Float32 decoders of packed codes (LSB-first bit stream, code i at bits [b i, b i + b)).
 * Each writes the bit patterns of out[0..n); the vector versions differ from the scalar
 * one only in speed. */

/* Ternary, b = 2: code 1 gives s, code 3 gives -s (sign bit flipped), codes 0 and 2 give
 * +0.0; sb is the bit pattern of s: out_i = (sb ^ (c >> 1) << 31) & -(c & 1). */
static void mpt_tdecode32_scalar(const uint8_t *buf, int64_t lo, int64_t n, uint32_t sb,
                                 uint32_t *out) {
    for (int64_t i = lo; i < n; i++) {
        uint32_t c = (uint32_t)(buf[i >> 2] >> (2 * (i & 3))) & 3u;
        out[i] = (sb ^ (c >> 1) << 31) & (0u - (c & 1u));
    }
}

/* Natural compression, b = 9 (sign << 8 | biased exponent): the float is c << 23. */
static void mpt_ndecode32_scalar(const uint8_t *buf, int64_t lo, int64_t n, uint32_t *out) {
    for (int64_t i = lo; i < n; i++) {
        int64_t bit = 9 * i;  /* a code spans two bytes, both inside the buffer */
        uint32_t w = (uint32_t)buf[bit >> 3] | (uint32_t)buf[(bit >> 3) + 1] << 8;
        out[i] = ((w >> (bit & 7)) & 0x1FFu) << 23;
    }
}

/* Dithering with 4-bit codes (s = 4..7): out_i = tab[c_i], tab the 16 bit patterns of
 * one bucket's values. Scalar: one table of both values per byte value. */
static void mpt_d4decode32_tail(const uint8_t *buf, int64_t lo, int64_t n, const uint32_t *tab,
                                uint32_t *out) {
    for (int64_t i = lo; i < n; i++) out[i] = tab[(buf[i >> 1] >> (4 * (i & 1))) & 15];
}

static void mpt_d4decode32_scalar(const uint8_t *buf, int64_t n, const uint32_t *tab,
                                  uint32_t *out) {
    uint32_t pair[512];
    for (int c = 0; c < 256; c++) {
        pair[2 * c] = tab[c & 15];
        pair[2 * c + 1] = tab[c >> 4];
    }
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) memcpy(out + i, pair + 2 * buf[i >> 1], 8);
    mpt_d4decode32_tail(buf, i, n, tab, out);
}

#if MPT_X86
/* 8 codes a step: 16 bits broadcast, lane j shifted right by 2 j; the permutation reads
 * the low 3 index bits and the table repeats every 4 lanes, so no mask is needed. */
__attribute__((target("avx2")))
static void mpt_tdecode32_avx2(const uint8_t *buf, int64_t n, uint32_t sb, uint32_t *out) {
    const __m256i sh = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const int32_t p = (int32_t)sb, m = (int32_t)(sb ^ 0x80000000u);
    const __m256 tab = _mm256_castsi256_ps(_mm256_setr_epi32(0, p, 0, m, 0, p, 0, m));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16_t w;
        memcpy(&w, buf + (i >> 2), 2);
        __m256i c = _mm256_srlv_epi32(_mm256_set1_epi32(w), sh);
        _mm256_storeu_ps((float *)(out + i), _mm256_permutevar8x32_ps(tab, c));
    }
    mpt_tdecode32_scalar(buf, i, n, sb, out);
}

/* 16 codes a step from one 32-bit word (the permutation reads the low 4 index bits). */
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
static void mpt_tdecode32_avx512(const uint8_t *buf, int64_t n, uint32_t sb, uint32_t *out) {
    const __m512i sh = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                         28, 30);
    const int32_t p = (int32_t)sb, m = (int32_t)(sb ^ 0x80000000u);
    const __m512 tab = _mm512_castsi512_ps(_mm512_setr_epi32(0, p, 0, m, 0, p, 0, m, 0, p, 0,
                                                             m, 0, p, 0, m));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        uint32_t w;
        memcpy(&w, buf + (i >> 2), 4);
        __m512i c = _mm512_srlv_epi32(_mm512_set1_epi32((int32_t)w), sh);
        _mm512_storeu_ps((void *)(out + i), _mm512_permutexvar_ps(c, tab));
    }
    mpt_tdecode32_scalar(buf, i, n, sb, out);
}

/* 8 codes (4 bytes) a step: nibble j of the broadcast word to lane j; two 8-entry
 * permutations, and bit 3 of the code (moved to the sign bit) picks between them. */
__attribute__((target("avx2")))
static void mpt_d4decode32_avx2(const uint8_t *buf, int64_t n, const uint32_t *tab,
                                uint32_t *out) {
    const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256 lo = _mm256_loadu_ps((const float *)tab);
    const __m256 hi = _mm256_loadu_ps((const float *)(tab + 8));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint32_t w;
        memcpy(&w, buf + (i >> 1), 4);
        __m256i c = _mm256_srlv_epi32(_mm256_set1_epi32((int32_t)w), sh);
        __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, c),
                                    _mm256_permutevar8x32_ps(hi, c),
                                    _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
        _mm256_storeu_ps((float *)(out + i), v);
    }
    mpt_d4decode32_tail(buf, i, n, tab, out);
}

/* 16 codes (8 bytes) a step: one 16-entry permutation (it reads the low 4 index bits). */
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
static void mpt_d4decode32_avx512(const uint8_t *buf, int64_t n, const uint32_t *tab,
                                  uint32_t *out) {
    const __m512i sh = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24,
                                         28);
    const __m512i half = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512 t = _mm512_loadu_ps((const void *)tab);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(buf + (i >> 1))));
        __m512i c = _mm512_srlv_epi32(_mm512_permutexvar_epi32(half, w), sh);
        _mm512_storeu_ps((void *)(out + i), _mm512_permutexvar_ps(c, t));
    }
    mpt_d4decode32_tail(buf, i, n, tab, out);
}

/* 8 codes (9 bytes) a step: lane j gets bytes j, j + 1 as 16 bits, shifted right by j. */
__attribute__((target("avx2")))
static void mpt_ndecode32_avx2(const uint8_t *buf, int64_t n, uint32_t *out) {
    const __m128i pairs = _mm_setr_epi8(0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8);
    const __m256i sh = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_set1_epi32(0x1FF);
    int64_t nbytes = (9 * n + 7) / 8, i = 0;
    for (; i + 8 <= n && 9 * (i >> 3) + 16 <= nbytes; i += 8) {  /* 16-byte loads stay inside */
        __m128i v = _mm_loadu_si128((const __m128i *)(buf + 9 * (i >> 3)));
        __m256i w = _mm256_cvtepu16_epi32(_mm_shuffle_epi8(v, pairs));
        __m256i c = _mm256_and_si256(_mm256_srlv_epi32(w, sh), mask);
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_slli_epi32(c, 23));
    }
    mpt_ndecode32_scalar(buf, i, n, out);
}

/* 16 codes (18 bytes) a step: the AVX2 step on two groups at once. */
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
static void mpt_ndecode32_avx512(const uint8_t *buf, int64_t n, uint32_t *out) {
    const __m128i pairs = _mm_setr_epi8(0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8);
    const __m512i sh = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i mask = _mm512_set1_epi32(0x1FF);
    int64_t nbytes = (9 * n + 7) / 8, i = 0;
    for (; i + 16 <= n && 9 * (i >> 3) + 25 <= nbytes; i += 16) {
        const uint8_t *g = buf + 9 * (i >> 3);
        __m128i lo = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)g), pairs);
        __m128i hi = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(g + 9)), pairs);
        __m512i w = _mm512_cvtepu16_epi32(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
        __m512i c = _mm512_and_si512(_mm512_srlv_epi32(w, sh), mask);
        _mm512_storeu_si512((void *)(out + i), _mm512_slli_epi32(c, 23));
    }
    mpt_ndecode32_scalar(buf, i, n, out);
}
#endif

/* The decoders at the level in use. */
static void mpt_tdecode32(const uint8_t *buf, int64_t n, uint32_t sb, uint32_t *out) {
#if MPT_X86
    int level = mpt_simd_level();
    if (level == MPT_AVX512) { mpt_tdecode32_avx512(buf, n, sb, out); return; }
    if (level == MPT_AVX2) { mpt_tdecode32_avx2(buf, n, sb, out); return; }
#endif
    mpt_tdecode32_scalar(buf, 0, n, sb, out);
}

static void mpt_ndecode32(const uint8_t *buf, int64_t n, uint32_t *out) {
#if MPT_X86
    int level = mpt_simd_level();
    if (level == MPT_AVX512) { mpt_ndecode32_avx512(buf, n, out); return; }
    if (level == MPT_AVX2) { mpt_ndecode32_avx2(buf, n, out); return; }
#endif
    mpt_ndecode32_scalar(buf, 0, n, out);
}

static void mpt_d4decode32(const uint8_t *buf, int64_t n, const uint32_t *tab, uint32_t *out) {
#if MPT_X86
    int level = mpt_simd_level();
    if (level == MPT_AVX512) { mpt_d4decode32_avx512(buf, n, tab, out); return; }
    if (level == MPT_AVX2) { mpt_d4decode32_avx2(buf, n, tab, out); return; }
#endif
    mpt_d4decode32_scalar(buf, n, tab, out);
}

#pragma GCC diagnostic pop
#endif
