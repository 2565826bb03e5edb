/* g <- src and x <- beta (x - eta src) in one pass (mpitrain._native.vector.copy_and_update).
 *
 * The arithmetic is scaled_step's (pyx/update_math.pxi): x - a v, or b (x - a v), with a and b
 * eta and beta rounded to x's type, one rounding per operation (the kernels are built with
 * -ffp-contract=off, and SSE's mulps/subps round as the scalar operations do), so every bit
 * equals copying src into g and then scaled_step(x, g, eta, beta, n). On x86-64 g is written with
 * non-temporal stores (SSE2, the baseline of every x86-64 CPU): the copy is not read again before
 * the next gradient overwrites it, so its lines skip the read that an ordinary store makes first;
 * a pass over 1e6 float32 took 0.41-0.44 ms against 0.56-0.62 ms with ordinary stores (a C loop
 * on the project's machine, 2026-12-01). Elsewhere a plain loop.
 */
#ifndef MPT_COPIED_STEP_H
#define MPT_COPIED_STEP_H

#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline void mpt_copied_step_f32(float* x, float* g, const float* src, double eta, double beta, ptrdiff_t n)
{
    const float a = (float)eta, b = (float)beta;
    const int scaled = beta != 1.0;
    ptrdiff_t j = 0;
#if defined(__SSE2__)
    for (; j < n && ((uintptr_t)(g + j) & 15); j++) {  /* up to g's first 16-byte boundary */
        float v = src[j];
        g[j] = v;
        x[j] = scaled ? b * (x[j] - a * v) : x[j] - a * v;
    }
    {
        const __m128 av = _mm_set1_ps(a), bv = _mm_set1_ps(b);
        for (; j + 4 <= n; j += 4) {
            __m128 v = _mm_loadu_ps(src + j);
            __m128 step = _mm_sub_ps(_mm_loadu_ps(x + j), _mm_mul_ps(av, v));
            _mm_stream_ps(g + j, v);
            _mm_storeu_ps(x + j, scaled ? _mm_mul_ps(bv, step) : step);
        }
        _mm_sfence();
    }
#endif
    for (; j < n; j++) {
        float v = src[j];
        g[j] = v;
        x[j] = scaled ? b * (x[j] - a * v) : x[j] - a * v;
    }
}

static inline void mpt_copied_step_f64(double* x, double* g, const double* src, double eta, double beta, ptrdiff_t n)
{
    const double a = eta, b = beta;
    const int scaled = beta != 1.0;
    ptrdiff_t j = 0;
#if defined(__SSE2__)
    for (; j < n && ((uintptr_t)(g + j) & 15); j++) {
        double v = src[j];
        g[j] = v;
        x[j] = scaled ? b * (x[j] - a * v) : x[j] - a * v;
    }
    {
        const __m128d av = _mm_set1_pd(a), bv = _mm_set1_pd(b);
        for (; j + 2 <= n; j += 2) {
            __m128d v = _mm_loadu_pd(src + j);
            __m128d step = _mm_sub_pd(_mm_loadu_pd(x + j), _mm_mul_pd(av, v));
            _mm_stream_pd(g + j, v);
            _mm_storeu_pd(x + j, scaled ? _mm_mul_pd(bv, step) : step);
        }
        _mm_sfence();
    }
#endif
    for (; j < n; j++) {
        double v = src[j];
        g[j] = v;
        x[j] = scaled ? b * (x[j] - a * v) : x[j] - a * v;
    }
}

#endif
