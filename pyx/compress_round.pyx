"""Quantiser kernels: natural compression / biased rounding, dithering, sign, ternary.

Each encoder is one pass over x that rounds and bit-packs at once (no temporaries);
each decoder is one pass over the packed codes. Random rounding uses the counter-based
stream of ``compress_common.pxi``: element i goes up iff u_i < p_i with
u_i = (splitmix64(seed, i) >> 11) 2^-53, where i is the index in the whole vector.
Code layouts (b-bit codes, LSB-first bit stream of ``compress_common.pxi``):

- natural: b = 1 + E (E = 8 exponent bits for float32, 11 for float64);
  code = sign << E | biased exponent of the rounded power of two (0 encodes 0).
- dither (standard or natural): b = 1 + L with L = bit_length(s);
  code = level << 1 | sign, level in 0..s (sign is 0 when level is 0).
- sign: b = 1, bit = 1 for x_i < 0 (and -0.0).
- ternary: b = 2, code = nonzero | negative << 1.
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport fabs, sqrt, pow, floor, ldexp, INFINITY
include "compress_common.pxi"

ctypedef fused floating:
    float
    double


cdef inline uint64_t bits_of(floating v) noexcept nogil:
    cdef uint32_t b32
    cdef uint64_t b64
    if floating is float:
        b32 = (<uint32_t *>&v)[0]
        return b32
    else:
        b64 = (<uint64_t *>&v)[0]
        return b64


cdef inline floating from_bits(uint64_t b, floating like) noexcept nogil:
    cdef uint32_t b32
    cdef float f
    cdef double g
    if floating is float:
        b32 = <uint32_t>b
        f = (<float *>&b32)[0]
        return f
    else:
        g = (<double *>&b)[0]
        return g


def natural_encode(const floating[::1] x, seed, bint deterministic, uint8_t[::1] out):
    """Natural compression (Horvath et al.; PAPERS.md s.2, U(1/8)) of x into out, or with
    deterministic=True biased rounding to the nearer power of two, midpoint 1.5 * 2^a
    (B3(9/8)). |x_i| = 2^a (1 + m / 2^M) goes up to 2^(a+1) iff u_i < m / 2^M (random)
    or iff m >= 2^(M-1) (deterministic). Subnormals follow the same rule between 0 and
    the smallest normal; inf stays inf, NaN becomes inf."""
    cdef Py_ssize_t d = x.shape[0], i
    cdef uint64_t s = <uint64_t>(int(seed) & ((1 << 64) - 1))
    cdef int E = 8 if floating is float else 11
    cdef int M = 23 if floating is float else 52
    cdef int rshift = 41 if floating is float else 12
    cdef uint64_t emax = (1ULL << E) - 1ULL, mmask = (1ULL << M) - 1ULL, half = 1ULL << (M - 1)
    cdef uint64_t b, e, m, up
    cdef mpt_writer w
    if out.shape[0] != (d * (1 + E) + 7) // 8:
        raise ValueError("out has the wrong size")
    if d == 0:
        return
    with nogil:
        mpt_writer_init(&w, &out[0])
        for i in range(d):
            b = bits_of(x[i])
            e = (b >> M) & emax
            m = b & mmask
            if deterministic:
                up = m >= half
            else:
                up = (mpt_splitmix64(s, <uint64_t>i) >> rshift) < m
            e = e + up
            if e > emax:
                e = emax
            mpt_put(&w, ((b >> (M + E)) << E) | e, 1 + E)
        mpt_flush(&w)


def natural_decode(const uint8_t[::1] buf, floating[::1] out):
    """Inverse of ``natural_encode``: out_i = sign * 2^(e - bias) (0 for e = 0)."""
    cdef Py_ssize_t d = out.shape[0], i
    cdef int E = 8 if floating is float else 11
    cdef int M = 23 if floating is float else 52
    cdef uint64_t c
    cdef mpt_reader r
    if d == 0:
        return
    with nogil:
        mpt_reader_init(&r, &buf[0], buf.shape[0])
        for i in range(d):
            c = mpt_get(&r, 1 + E)
            out[i] = from_bits(((c >> E) << (M + E)) | ((c & ((1ULL << E) - 1ULL)) << M), out[0])


cdef double bucket_norm(const floating *x, Py_ssize_t n, double p) noexcept nogil:
    cdef Py_ssize_t i
    cdef double acc = 0.0, a
    if p == 2.0:
        for i in range(n):
            acc += <double>x[i] * <double>x[i]
        return sqrt(acc)
    if p == 1.0:
        for i in range(n):
            acc += fabs(<double>x[i])
        return acc
    if p == INFINITY:
        for i in range(n):
            a = fabs(<double>x[i])
            if a > acc:
                acc = a
        return acc
    for i in range(n):
        acc += pow(fabs(<double>x[i]), p)
    return pow(acc, 1.0 / p)


def dither_encode(const floating[::1] x, seed, int levels, Py_ssize_t bucket, bint natural,
                  double p, floating[::1] norms, uint8_t[::1] out):
    """Standard (QSGD) or natural dithering of x, bucket by bucket (PAPERS.md s.2).

    norms[j] = ||x_bucket_j||_p rounded to the dtype; all arithmetic below in the dtype.
    standard: t = |x_i| * (s / norm), level = floor(t) + [u_i < t - floor(t)], capped at s;
    natural: r = |x_i| * (1 / norm); r >= 2^(1-s): r = 2^a (1 + m / 2^M),
    level = a + s + [u_i < m / 2^M]; r < 2^(1-s): level = [u_i < r * 2^(s-1)];
    levels above s are capped to s.
    """
    cdef Py_ssize_t d = x.shape[0], i, j, start, stop
    cdef uint64_t s = <uint64_t>(int(seed) & ((1 << 64) - 1))
    cdef int L = levels.bit_length()
    cdef int M = 23 if floating is float else 52
    cdef int rshift = 41 if floating is float else 12
    cdef uint64_t mmask = (1ULL << M) - 1ULL, b, m, level, sign
    cdef int64_t bias = 127 if floating is float else 1023, a
    cdef floating nrm, r, t, inv, mul, lowest = <floating>ldexp(1.0, 1 - levels)
    cdef floating scale_small = <floating>ldexp(1.0, levels - 1), fs = <floating>levels
    cdef mpt_writer w
    if d == 0:
        return
    with nogil:
        mpt_writer_init(&w, &out[0])
        start = 0
        j = 0
        while start < d:
            stop = start + bucket
            if stop > d:
                stop = d
            nrm = <floating>bucket_norm(&x[start], stop - start, p)
            norms[j] = nrm
            inv = (<floating>1) / nrm if nrm != 0 else 0
            mul = fs / nrm if nrm != 0 else 0
            for i in range(start, stop):
                sign = bits_of(x[i]) >> (M + (8 if floating is float else 11))
                if nrm == 0:
                    level = 0
                else:
                    if not natural:
                        t = fabs(x[i]) * mul
                        level = <uint64_t>t  # t >= 0: truncation is floor
                        level += mpt_uniform(s, <uint64_t>i) < <double>(t - <floating>level)
                    else:
                        r = fabs(x[i]) * inv
                    if natural and r >= lowest:
                        b = bits_of(r)
                        a = <int64_t>(b >> M) - bias
                        m = b & mmask
                        if a >= 0:
                            level = levels
                        else:
                            level = <uint64_t>(a + levels)
                            level += (mpt_splitmix64(s, <uint64_t>i) >> rshift) < m
                    elif natural:
                        level = mpt_uniform(s, <uint64_t>i) < <double>(r * scale_small)
                    if level > <uint64_t>levels:
                        level = levels
                if level == 0:
                    sign = 0
                mpt_put(&w, (level << 1) | sign, 1 + L)
            start = stop
            j += 1
        mpt_flush(&w)


def dither_decode(const uint8_t[::1] buf, int levels, Py_ssize_t bucket, bint natural,
                  const floating[::1] norms, floating[::1] out):
    """Inverse of ``dither_encode``: standard: sign * (norm * level) / s;
    natural: sign * norm * 2^(level - s) (0 for level 0). One table of the 2^(1+L)
    code values per bucket, then a branch-free lookup per entry."""
    cdef Py_ssize_t d = out.shape[0], i, start, stop, j = 0
    cdef int L = levels.bit_length(), c, ncodes = 1 << (1 + L)
    cdef uint64_t level
    cdef floating nrm, v, fs = <floating>levels
    cdef floating table[512]
    cdef mpt_reader r
    if d == 0:
        return
    with nogil:
        mpt_reader_init(&r, &buf[0], buf.shape[0])
        start = 0
        while start < d:
            stop = start + bucket
            if stop > d:
                stop = d
            nrm = norms[j]
            for c in range(ncodes):
                level = c >> 1
                if level == 0 or level > <uint64_t>levels:
                    v = 0
                elif natural:
                    v = nrm * <floating>ldexp(1.0, <int>level - levels)
                else:
                    v = (nrm * <floating>level) / fs
                table[c] = -v if (c & 1) else v
            for i in range(start, stop):
                out[i] = table[mpt_get(&r, 1 + L)]
            start = stop
            j += 1


def sign_encode(const floating[::1] x, uint8_t[::1] out):
    """Scaled sign (PAPERS.md s.2, B3(d)): pack sign bits of x into out; returns
    ||x||_1 / d rounded to the dtype (accumulated in double)."""
    cdef Py_ssize_t d = x.shape[0], i, j, nfull = d // 32
    cdef double acc = 0.0
    cdef uint32_t word
    cdef int M = 31 if floating is float else 63
    cdef mpt_writer w
    if d == 0:
        return 0.0
    with nogil:
        mpt_writer_init(&w, &out[0])
        for j in range(nfull):
            word = 0
            for i in range(32):
                acc += fabs(<double>x[32 * j + i])
                word |= <uint32_t>(bits_of(x[32 * j + i]) >> M) << i
            mpt_put(&w, word, 32)
        for i in range(32 * nfull, d):
            acc += fabs(<double>x[i])
            mpt_put(&w, bits_of(x[i]) >> M, 1)
        mpt_flush(&w)
    return <floating>(acc / d)


def sign_decode(const uint8_t[::1] buf, double scale_, floating[::1] out):
    """out_i = -scale if bit i is set else scale (scale rounded to the dtype)."""
    cdef Py_ssize_t d = out.shape[0], i
    cdef floating scale = <floating>scale_
    cdef uint64_t sb = bits_of(scale)
    cdef int M = 31 if floating is float else 63
    with nogil:
        for i in range(d):
            out[i] = from_bits(sb ^ (<uint64_t>((buf[i >> 3] >> (i & 7)) & 1) << M), scale)


def ternary_encode(const floating[::1] x, seed, uint8_t[::1] out):
    """TernGrad (Wen et al. 2017; PAPERS.md s.2): returns m = ||x||_inf and packs
    2-bit codes: nonzero iff u_i < |x_i| * (1 / m) (dtype), bit 1 = sign."""
    cdef Py_ssize_t d = x.shape[0], i
    cdef uint64_t s = <uint64_t>(int(seed) & ((1 << 64) - 1))
    cdef int M = 31 if floating is float else 63
    cdef floating mx = 0, a, inv
    cdef uint64_t nz
    cdef mpt_writer w
    if d == 0:
        return 0.0
    with nogil:
        for i in range(d):
            a = fabs(x[i])
            if a > mx:
                mx = a
        inv = (<floating>1) / mx if mx > 0 else 0
        mpt_writer_init(&w, &out[0])
        for i in range(d):
            nz = mpt_uniform(s, <uint64_t>i) < <double>(fabs(x[i]) * inv)
            mpt_put(&w, nz | ((nz & (bits_of(x[i]) >> M)) << 1), 2)
        mpt_flush(&w)
    return mx


def ternary_decode(const uint8_t[::1] buf, double scale_, floating[::1] out):
    """out_i = 0, scale or -scale from the 2-bit codes (scale rounded to the dtype)."""
    cdef Py_ssize_t d = out.shape[0], i
    cdef floating scale = <floating>scale_
    cdef floating table[4]
    table[0] = 0
    table[1] = scale
    table[2] = 0
    table[3] = -scale
    with nogil:
        for i in range(d):
            out[i] = table[(buf[i >> 2] >> (2 * (i & 3))) & 3]
