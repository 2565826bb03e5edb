// Shared device/host helpers of mpitrain's CUDA kernels (included by every .cu file).
//
// The functions here are the per-element rules of the CPU kernels (pyx/compress_common.pxi,
// pyx/compress_round.pyx, pyx/objectives.pyx), written once for three compilers: NVRTC
// (CuPy RawModule at run time), nvcc (the compile test) and a host C++ compiler (the CPU
// test that checks these rules bit for bit against the Cython kernels). Kernels must be
// compiled without FMA contraction (--fmad=false) so that every float operation rounds
// exactly as on the CPU.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define MPT_HD __host__ __device__ __forceinline__
#else
#define MPT_HD inline
#include <string.h>
#include <math.h>
#endif

typedef unsigned long long mpt_u64;
typedef long long mpt_i64;
typedef unsigned int mpt_u32;
typedef int mpt_i32;
typedef unsigned char mpt_u8;

// ---- bit casts
MPT_HD mpt_u32 mpt_bits32(float v) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(v);
#else
    mpt_u32 b; memcpy(&b, &v, 4); return b;
#endif
}
MPT_HD mpt_u64 mpt_bits64(double v) {
#if defined(__CUDA_ARCH__)
    return (mpt_u64)__double_as_longlong(v);
#else
    mpt_u64 b; memcpy(&b, &v, 8); return b;
#endif
}
MPT_HD float mpt_float32(mpt_u32 b) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(b);
#else
    float v; memcpy(&v, &b, 4); return v;
#endif
}
MPT_HD double mpt_float64(mpt_u64 b) {
#if defined(__CUDA_ARCH__)
    return __longlong_as_double((long long)b);
#else
    double v; memcpy(&v, &b, 8); return v;
#endif
}

// ---- the counter-based stream (compress_common.pxi): element i from (seed, i) alone
MPT_HD mpt_u64 mpt_splitmix64(mpt_u64 seed, mpt_u64 i) {
    mpt_u64 z = seed + (i + 1ULL) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
// float32 kernels: 32 bits per element, r_i = h_i 2^16 + l_i, the 16-bit pieces i mod 4 of
// word i/4 (h_i) and of word 2^62 + i/4 (l_i)
MPT_HD mpt_u32 mpt_random32(mpt_u64 seed, mpt_i64 i) {
    const int shift = 16 * (int)(i & 3);
    const mpt_u64 j = (mpt_u64)i >> 2;
    return (mpt_u32)((mpt_splitmix64(seed, j) >> shift) & 0xFFFFULL) << 16
        | (mpt_u32)((mpt_splitmix64(seed, 0x4000000000000000ULL + j) >> shift) & 0xFFFFULL);
}
// float64 kernels: one word per element
MPT_HD mpt_u64 mpt_random64(mpt_u64 seed, mpt_i64 i) {
    return mpt_splitmix64(seed, (mpt_u64)i);
}

// ---- float traits: one template for float32 and float64
template <typename T> struct mpt_traits;
template <> struct mpt_traits<float> {
    typedef mpt_u32 bits_t;
    enum { E = 8, M = 23, SB = 31, BIAS = 127 };
    static MPT_HD mpt_u64 bits(float v) { return mpt_bits32(v); }
    static MPT_HD float from(mpt_u64 b) { return mpt_float32((mpt_u32)b); }
    static MPT_HD float min_normal() { return mpt_float32(0x00800000U); }  // FLT_MIN
    static MPT_HD float max_finite() { return mpt_float32(0x7F7FFFFFU); }  // FLT_MAX
};
template <> struct mpt_traits<double> {
    typedef mpt_u64 bits_t;
    enum { E = 11, M = 52, SB = 63, BIAS = 1023 };
    static MPT_HD mpt_u64 bits(double v) { return mpt_bits64(v); }
    static MPT_HD double from(mpt_u64 b) { return mpt_float64(b); }
    static MPT_HD double min_normal() { return mpt_float64(0x0010000000000000ULL); }  // DBL_MIN
    static MPT_HD double max_finite() { return mpt_float64(0x7FEFFFFFFFFFFFFFULL); }  // DBL_MAX
};

// Whether the codes divide, |x_i| / nrm, instead of multiplying, |x_i| * f with f = num / nrm
// (compress_round.pyx ``divides``): nrm finite and > 0 but f not a normal number (a tiny or
// subnormal nrm overflows f, a huge one makes it subnormal and imprecise). Elsewhere the
// multiplication, the pinned wire format of ordinary inputs (Beznosikov et al., "On biased
// compression for distributed learning": the probabilities must be |x_i| / nrm for E C(x) = x).
template <typename T> MPT_HD bool mpt_divides(T nrm, T f) {
    const T lo = mpt_traits<T>::min_normal(), hi = mpt_traits<T>::max_finite();
    return nrm > (T)0 && nrm <= hi && !(f >= lo && f <= hi);
}

// |x| by clearing the sign bit (fabs)
template <typename T> MPT_HD T mpt_abs(T x) {
    return mpt_traits<T>::from(mpt_traits<T>::bits(x) & ~(1ULL << mpt_traits<T>::SB));
}

// u_i < p exactly (compress_round.pyx ``below``): float32 r 2^-32 < p, float64 (r >> 11) 2^-53 < p
MPT_HD bool mpt_below(mpt_u32 r, mpt_u64 r64, float p) {
    return (double)(mpt_i32)(r ^ 0x80000000U) < (double)p * 4294967296.0 - 2147483648.0;
}
MPT_HD bool mpt_below(mpt_u32 r, mpt_u64 r64, double p) {
    return (double)(r64 >> 11) * 1.1102230246251565e-16 < p;
}

// ---- codes of one element (compress_round.pyx)

// natural compression / biased rounding: sign << E | exponent of the rounded power of two
MPT_HD mpt_u32 mpt_natural_code(float x, mpt_u64 seed, mpt_i64 i, int deterministic) {
    mpt_u32 b = mpt_bits32(x);
    mpt_u32 m = b & 0x7FFFFFU;
    mpt_u32 up = deterministic ? (m >= 0x400000U) : ((mpt_random32(seed, i) >> 9) < m);
    mpt_u32 e = ((b >> 23) & 0xFFU) + up;
    e -= e >> 8;  // 256 (overflow) -> 255 (inf)
    return ((b >> 31) << 8) | e;
}
MPT_HD mpt_u32 mpt_natural_code(double x, mpt_u64 seed, mpt_i64 i, int deterministic) {
    mpt_u64 b = mpt_bits64(x);
    mpt_u64 m = b & ((1ULL << 52) - 1ULL);
    mpt_u64 up = deterministic ? (m >= (1ULL << 51)) : ((mpt_random64(seed, i) >> 12) < m);
    mpt_u64 e = ((b >> 52) & 0x7FFULL) + up;
    e -= e >> 11;
    return (mpt_u32)(((b >> 63) << 11) | e);
}
template <typename T> MPT_HD T mpt_natural_value(mpt_u64 c) {
    const int E = mpt_traits<T>::E, M = mpt_traits<T>::M;
    return mpt_traits<T>::from(((c >> E) << (M + E)) | ((c & ((1ULL << E) - 1ULL)) << M));
}

// stream word of element i for the dtype's width (one of r32 / r64 is used)
MPT_HD void mpt_stream(float, mpt_u64 seed, mpt_i64 i, mpt_u32 *r, mpt_u64 *r64) {
    *r = mpt_random32(seed, i); *r64 = 0;
}
MPT_HD void mpt_stream(double, mpt_u64 seed, mpt_i64 i, mpt_u32 *r, mpt_u64 *r64) {
    *r = 0; *r64 = mpt_random64(seed, i);
}

// dithering (standard or natural) of element i with its bucket's norm nrm (in the dtype);
// t = |x_i| * (s / nrm), q = |x_i| * (1 / nrm), or (|x_i| / nrm) * s and |x_i| / nrm when
// that factor is not a normal number (mpt_divides; the same branch for the whole bucket)
template <typename T>
MPT_HD mpt_u32 mpt_dither_code(T x, mpt_u64 seed, mpt_i64 i, int levels, int natural, T nrm) {
    const int M = mpt_traits<T>::M, SB = mpt_traits<T>::SB;
    const mpt_i64 bias = mpt_traits<T>::BIAS;
    const mpt_u64 mmask = (1ULL << M) - 1ULL;
    mpt_u32 r; mpt_u64 r64;
    mpt_stream(x, seed, i, &r, &r64);
    mpt_u64 sign = mpt_traits<T>::bits(x) >> SB;
    T ax = mpt_abs(x);
    mpt_i64 lv;
    if (!natural) {
        T mul = nrm != (T)0 ? ((T)levels) / nrm : (T)0;
        T t = mpt_divides(nrm, mul) ? (ax / nrm) * (T)levels : ax * mul;
        lv = (mpt_i64)t;
        T f = t - (T)lv;
        lv += mpt_below(r, r64, f);
    } else {
        T inv = nrm != (T)0 ? ((T)1) / nrm : (T)0;
        T lowest = mpt_traits<T>::from((mpt_u64)(bias + 1 - levels) << M);  // 2^(1-s)
        T scale_small = mpt_traits<T>::from((mpt_u64)(bias + levels - 1) << M);  // 2^(s-1)
        T q = mpt_divides(nrm, inv) ? ax / nrm : ax * inv;
        mpt_u64 b = mpt_traits<T>::bits(q);
        mpt_i64 a = (mpt_i64)(b >> M) - bias;
        mpt_u64 rr = (sizeof(T) == 4) ? (mpt_u64)(r >> 9) : (r64 >> 12);
        mpt_i64 big = a + levels + (mpt_i64)(rr < (b & mmask));
        mpt_i64 small = mpt_below(r, r64, q * scale_small);
        lv = q >= lowest ? big : small;
    }
    lv = lv > levels ? levels : lv;
    return (mpt_u32)((lv << 1) | (mpt_i64)(sign & (mpt_u64)(lv != 0)));
}

// value of a dithering code c (level << 1 | sign) with the bucket norm nrm; standard:
// (nrm * level) / s, or nrm * (level / s) where nrm * level overflows (nrm near the maximum)
template <typename T>
MPT_HD T mpt_dither_value(mpt_u64 c, int levels, int natural, T nrm) {
    mpt_u64 level = c >> 1;
    T v;
    if (level == 0 || level > (mpt_u64)levels) {
        v = (T)0;
    } else if (natural) {  // nrm * 2^(level - s), the power of two built from its bits
        v = nrm * mpt_traits<T>::from((mpt_u64)(mpt_traits<T>::BIAS + (int)level - levels)
                                      << mpt_traits<T>::M);
    } else {
        v = (nrm * (T)level) / (T)levels;
        if (v > mpt_traits<T>::max_finite() && nrm <= mpt_traits<T>::max_finite())
            v = nrm * ((T)level / (T)levels);
    }
    return (c & 1) ? -v : v;
}

// ternary: nonzero iff u_i < |x_i| inv, bit 1 = sign of a nonzero (the rule where inv = 1 / m
// is a normal number; tests/gpu_host_rules.cpp calls this form)
template <typename T>
MPT_HD mpt_u32 mpt_ternary_code(T x, mpt_u64 seed, mpt_i64 i, T inv) {
    mpt_u32 r; mpt_u64 r64;
    mpt_stream(x, seed, i, &r, &r64);
    T ax = mpt_abs(x);
    mpt_u64 nz = mpt_below(r, r64, ax * inv);
    return (mpt_u32)(nz | ((nz & (mpt_traits<T>::bits(x) >> mpt_traits<T>::SB)) << 1));
}
// the whole rule (compress_round.pyx ternary_encode), m = ||x||_inf, inv = m > 0 ? 1 / m : 0:
// u_i < |x_i| / m where 1 / m is not a normal number (mpt_divides), else the form above
template <typename T>
MPT_HD mpt_u32 mpt_ternary_code(T x, mpt_u64 seed, mpt_i64 i, T inv, T m) {
    if (!mpt_divides(m, inv)) return mpt_ternary_code(x, seed, i, inv);
    mpt_u32 r; mpt_u64 r64;
    mpt_stream(x, seed, i, &r, &r64);
    mpt_u64 nz = mpt_below(r, r64, mpt_abs(x) / m);
    return (mpt_u32)(nz | ((nz & (mpt_traits<T>::bits(x) >> mpt_traits<T>::SB)) << 1));
}

// ---- bit streams: code j of b bits occupies bits [j b, (j + 1) b), LSB first

// The b bytes of codes 8g .. 8g+7 (b <= 32): code(j) gives code j (j < n, others are 0);
// writes those of the bytes that are < nbytes.
template <typename Code>
MPT_HD void mpt_pack_group(mpt_i64 g, mpt_i64 n, int b, mpt_u8 *out, mpt_i64 nbytes, Code code) {
    mpt_u64 acc[4] = {0ULL, 0ULL, 0ULL, 0ULL};
    const mpt_u64 mask = b >= 64 ? ~0ULL : ((1ULL << b) - 1ULL);
    for (int t = 0; t < 8; t++) {
        mpt_i64 j = 8 * g + t;
        if (j >= n) break;
        mpt_u64 c = (mpt_u64)code(j) & mask;
        int o = t * b, w = o >> 6, s = o & 63;
        acc[w] |= c << s;
        if (s + b > 64) acc[w + 1] |= c >> (64 - s);
    }
    for (int k = 0; k < b; k++) {
        mpt_i64 at = g * b + k;
        if (at < nbytes) out[at] = (mpt_u8)(acc[k >> 3] >> (8 * (k & 7)));
    }
}

// code j of b bits (b <= 32) from a buffer of nbytes bytes
MPT_HD mpt_u64 mpt_unpack_code(const mpt_u8 *buf, mpt_i64 nbytes, mpt_i64 j, int b) {
    mpt_i64 o = j * (mpt_i64)b, first = o >> 3;
    mpt_u64 v = 0;
    for (int k = 0; k < 5; k++) {
        mpt_i64 at = first + k;
        if (8 * k >= (int)(o & 7) + b || at >= nbytes) break;
        v |= (mpt_u64)buf[at] << (8 * k);
    }
    return (v >> (o & 7)) & ((1ULL << b) - 1ULL);
}

// ---- objectives (objectives.pyx): data term and its slope at margin z, label y (double)
#define MPT_LOGISTIC 0
#define MPT_LEAST_SQUARES 1
MPT_HD double mpt_sigmoid(double t) {
    if (t >= 0.0) return 1.0 / (1.0 + exp(-t));
    double e = exp(t);
    return e / (1.0 + e);
}
MPT_HD double mpt_row_loss(int kind, double z, double y) {
    if (kind == MPT_LOGISTIC) {
        double m = y * z;
        return m >= 0.0 ? log1p(exp(-m)) : -m + log1p(exp(m));
    }
    return 0.5 * (z - y) * (z - y);
}
MPT_HD double mpt_row_slope(int kind, double z, double y) {
    if (kind == MPT_LOGISTIC) return -y * mpt_sigmoid(-y * z);
    return z - y;
}
