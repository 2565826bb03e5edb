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

#endif
