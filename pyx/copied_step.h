/* g <- src and x <- beta (x - eta src) in one pass (mpitrain._native.vector.copy_and_update).
 *
 * The arithmetic is scaled_step's (pyx/update_math.pxi): x - a v, or b (x - a v), with a and b
 * eta and beta rounded to x's type, one rounding per operation (the kernels are built with
 * -ffp-contract=off, and SSE's mul/sub round as the scalar operations do), so every bit equals
 * copying src into g and then scaled_step(x, g, eta, beta, n). On x86-64 g is written with
 * non-temporal stores (SSE2, the baseline of every x86-64 CPU): the copy is not read again before
 * the next gradient overwrites it, so its lines skip the read that an ordinary store makes first
 * (docs/performance.md, "PyTorch bridge", measures it). Elsewhere a plain loop. One body, written
 * once for float (4 lanes) and once for double (2 lanes) by MPT_COPIED_STEP.
 */
#ifndef MPT_COPIED_STEP_H
#define MPT_COPIED_STEP_H

#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MPT_COPIED_STEP_SCALAR(T)                                  \
    {                                                              \
        T v = src[j];                                              \
        g[j] = v;                                                  \
        x[j] = scaled ? b * (x[j] - a * v) : x[j] - a * v;         \
    }

#if defined(__SSE2__)
/* up to g's first 16-byte boundary, then LANES at a time, g streamed */
#define MPT_COPIED_STEP_VECTOR(T, V, LANES, SET1, LOADU, SUB, MUL, STREAM, STOREU)   \
    for (; j < n && ((uintptr_t)(g + j) & 15); j++) MPT_COPIED_STEP_SCALAR(T)          \
    {                                                                                  \
        const V av = SET1(a), bv = SET1(b);                                            \
        for (; j + LANES <= n; j += LANES) {                                           \
            V v = LOADU(src + j);                                                      \
            V step = SUB(LOADU(x + j), MUL(av, v));                                    \
            STREAM(g + j, v);                                                          \
            STOREU(x + j, scaled ? MUL(bv, step) : step);                              \
        }                                                                              \
        _mm_sfence();                                                                  \
    }
#else
#define MPT_COPIED_STEP_VECTOR(T, V, LANES, SET1, LOADU, SUB, MUL, STREAM, STOREU)
#endif

#define MPT_COPIED_STEP(NAME, T, V, LANES, SET1, LOADU, SUB, MUL, STREAM, STOREU)                     \
    static inline void NAME(T* x, T* g, const T* src, double eta, double beta, ptrdiff_t n)          \
    {                                                                                                  \
        const T a = (T)eta, b = (T)beta;                                                               \
        const int scaled = beta != 1.0;                                                                \
        ptrdiff_t j = 0;                                                                               \
        MPT_COPIED_STEP_VECTOR(T, V, LANES, SET1, LOADU, SUB, MUL, STREAM, STOREU)                     \
        for (; j < n; j++) MPT_COPIED_STEP_SCALAR(T)                                                   \
    }

MPT_COPIED_STEP(mpt_copied_step_f32, float, __m128, 4, _mm_set1_ps, _mm_loadu_ps, _mm_sub_ps, _mm_mul_ps,
                _mm_stream_ps, _mm_storeu_ps)
MPT_COPIED_STEP(mpt_copied_step_f64, double, __m128d, 2, _mm_set1_pd, _mm_loadu_pd, _mm_sub_pd, _mm_mul_pd,
                _mm_stream_pd, _mm_storeu_pd)

#endif
