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

Range (Beznosikov et al., "On biased compression for distributed learning": the classes
U(omega) and B3(delta) are statements about exact reals, which floats only keep in range).
The ordinary-range arithmetic above is the wire format and its bits are pinned
(tests/test_compress_golden.py); outside that range a kernel switches to an order that
cannot overflow or lose the precision of a probability, detected once per vector or bucket
(one comparison), never per element:

- norms (``bucket_norm``): the plain double sum, unless it overflowed or fell below
  n * DBL_MIN (squares that underflowed, float64 entries beyond ~1e154 or below ~1e-154);
  then the sum again with every entry scaled by a power of two 2^-e first, 2^e ~ max|x_i|
  (exact), and the result scaled back: the "big/small accumulator" idea of LAPACK's dnrm2.
- probabilities |x_i| / norm of dithering and ternary: |x_i| * (s / norm) as before when
  s / norm (or 1 / norm) is a normal number of the dtype, else |x_i| / norm (then * s):
  a subnormal norm made 1 / norm overflow (float32 vectors of subnormals were 0.7-6.3
  ||x|| off), a huge one made it subnormal (probabilities off by up to 2^-21 relative).
- standard dithering's decoded value (norm * level) / s, unless that overflows (norms
  near the dtype's maximum decoded to inf); then norm * (level / s).
- scaled sign's ||x||_1 / d: the plain double sum, unless it overflowed (float64 near
  its maximum); then the sum of |x_i| 2^-64 and the mean scaled back.
- natural compression has no header that could carry a scale, so ``natural_encode``
  returns the largest finite |x_i| and whether a nonzero subnormal was seen; the
  compressor refuses the inputs whose rounding would overflow or break U(1/8)
  (mpitrain/compress/natural_compression.py).
"""
import numpy as np
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New
from libc.float cimport FLT_MIN, FLT_MAX, DBL_MIN, DBL_MAX
from libc.math cimport fabs, sqrt, pow, floor, ldexp, frexp, INFINITY
from libc.string cimport memcpy
include "compress_common.pxi"
include "ndarray_args.pxi"

cdef extern from "compress_simd.h":
    int mpt_simd_level() nogil
    int mpt_simd_force(int cap) nogil
    void mpt_ternary32(const float *x, const uint32_t *r, int64_t n, float inv,
                       uint16_t *codes) nogil
    void mpt_sdither32(const float *x, const uint32_t *r, int64_t n, float mul,
                       int32_t levels, uint16_t *codes) nogil
    void mpt_ndither32(const float *x, const uint32_t *r, int64_t n, float inv,
                       int32_t levels, float lowest, float scale_small, uint16_t *codes) nogil
    void mpt_sdither32r(const float *x, uint64_t seed, int64_t first, int64_t n, float mul,
                        int32_t levels, uint16_t *codes) nogil
    void mpt_ndither32r(const float *x, uint64_t seed, int64_t first, int64_t n, float inv,
                        int32_t levels, float lowest, float scale_small, uint16_t *codes) nogil
    void mpt_sums32(const float *x, int64_t n4, int p1, double *a) nogil
    void mpt_natural32(const uint32_t *xb, const uint32_t *r, int64_t n, int det,
                       uint16_t *codes, uint32_t *mx, uint32_t *mn) nogil
    void mpt_natural32r(const uint32_t *xb, uint64_t seed, int64_t first, int64_t n,
                        uint16_t *codes, uint32_t *mx, uint32_t *mn) nogil
    void mpt_natural64(const uint64_t *xb, const uint64_t *r, int64_t n, int det,
                       uint16_t *codes, int64_t *mx, int64_t *mn) nogil
    void mpt_absmax32(const int32_t *x, int64_t n, int32_t *out) nogil
    int mpt_ternary_enc32(const float *x, int64_t d, uint64_t seed, float inv,
                          uint8_t *out) nogil
    void mpt_tdecode32(const uint8_t *buf, int64_t n, uint32_t sb, uint32_t *out) nogil
    void mpt_d4decode32(const uint8_t *buf, int64_t n, const uint32_t *tab, uint32_t *out) nogil
    void mpt_ndecode32(const uint8_t *buf, int64_t n, uint32_t *out) nogil
    void mpt_pack_fast(const uint16_t *c, int64_t n, int b, uint8_t *buf, int *done) nogil


def simd_level(cap=None):
    """The SIMD level of the float32 quantiser blocks (0 scalar, 1 AVX2, 2 AVX-512),
    after capping it at ``cap`` when given (tests run every level: same bytes)."""
    if cap is not None:
        return mpt_simd_force(int(cap))
    return mpt_simd_level()

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


cdef inline bint divides(floating nrm, floating f) noexcept nogil:
    """Whether codes divide, |x_i| / nrm, instead of multiplying, |x_i| * f with
    f = num / nrm (num = s or 1) rounded to the dtype: nrm finite and > 0 but f not a
    normal number (f overflowed: nrm tiny or subnormal; f subnormal and imprecise: nrm
    huge). Otherwise (f normal; nrm 0, inf or NaN) the multiplication, which is the
    pinned wire format of ordinary inputs. One test per bucket, not per entry."""
    if floating is float:
        return 0 < nrm <= FLT_MAX and not (FLT_MIN <= f <= FLT_MAX)
    else:
        return 0 < nrm <= DBL_MAX and not (DBL_MIN <= f <= DBL_MAX)


cdef enum:
    BLK = 2048  # elements per block: random words, codes and inputs of a block stay in L1


cdef inline void random_block(uint64_t s, Py_ssize_t start, Py_ssize_t n, uint32_t *r32,
                              uint64_t *r64, bint single) noexcept nogil:
    """The stream words of elements start .. start+n-1 (float32 or float64 stream)."""
    if single:
        mpt_random32_at(s, start, n, r32)
    else:
        mpt_random64(s, start, n, r64)


cdef inline int64_t put_codes(const uint16_t *codes, Py_ssize_t n, int b, uint8_t *buf,
                              int64_t pos, int64_t cap) noexcept nogil:
    """Pack a block of n codes at byte pos (aligned); a last partial group of < 8 codes
    goes through the bit writer. Returns the next byte position."""
    cdef Py_ssize_t n8 = n & ~(<Py_ssize_t>7), i
    cdef mpt_writer w
    cdef int done = 0
    mpt_pack_fast(codes, n8, b, buf + pos, &done)
    if done:
        pos += n8 * b // 8
    else:
        pos = mpt_pack_codes(codes, n8, b, buf, pos, cap)
    if n8 < n:
        mpt_writer_init(&w, buf)
        w.pos = pos
        for i in range(n8, n):
            mpt_put(&w, codes[i], b)
        mpt_flush(&w)
        pos = w.pos
    return pos


def natural_encode(x, seed, bint deterministic, out):
    """Natural compression (Horvath et al.; docs/papers.md s.2, U(1/8)) of x into out, or with
    deterministic=True biased rounding to the nearer power of two, midpoint 1.5 * 2^a
    (B3(9/8)). |x_i| = 2^a (1 + m / 2^M) goes up to 2^(a+1) iff u_i < m / 2^M (random:
    the integer test (r_i >> 9) < m for float32, (r_i >> 12) < m for float64, stream of
    ``compress_common.pxi``) or iff m >= 2^(M-1) (deterministic). Subnormals follow the
    same rule between 0 and the smallest normal; inf stays inf, NaN becomes inf.
    Blocks of BLK entries: random words, then branch-free codes, then packing.

    Returns (largest finite |x_i| as a float, whether some x_i is a nonzero subnormal):
    the 9-bit (12-bit) code has neither a power
    of two above the largest finite one nor subnormal powers of two, so the compressor
    checks its input range from these two numbers (natural_compression.py). They are
    computed in the code loop itself (two vectorised reductions), not in a second pass;
    the largest finite |x_i| is rescanned only for inputs holding inf or NaN."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(x, &d, False)
    cdef uint8_t *o = byte_data(out, &n, True)
    cdef double largest = 0.0
    cdef bint subnormal = False
    if kind < 0 or o == NULL or n != (d * (1 + (8 if kind == cnp.NPY_FLOAT else 11)) + 7) // 8:
        return _natural_encode_buffers(x, seed, deterministic, out)  # the general path: its checks and errors
    if d == 0:
        return 0.0, False
    if kind == cnp.NPY_FLOAT:
        natural_pack(<const float*>vector_data(x), d, <uint64_t>(int(seed) & ((1 << 64) - 1)), deterministic,
                     o, n, &largest, &subnormal)
    else:
        natural_pack(<const double*>vector_data(x), d, <uint64_t>(int(seed) & ((1 << 64) - 1)), deterministic,
                     o, n, &largest, &subnormal)
    return largest, bool(subnormal)


def _natural_encode_buffers(const floating[::1] x, seed, bint deterministic, uint8_t[::1] out):
    """``natural_encode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = x.shape[0]
    cdef uint64_t s = <uint64_t>(int(seed) & ((1 << 64) - 1))
    cdef int E = 8 if floating is float else 11
    cdef double largest = 0.0
    cdef bint subnormal = False
    if out.shape[0] != (d * (1 + E) + 7) // 8:
        raise ValueError("out has the wrong size")
    if d == 0:
        return 0.0, False
    with nogil:
        natural_pack(&x[0], d, s, deterministic, &out[0], out.shape[0], &largest, &subnormal)
    return largest, bool(subnormal)


cdef void natural_pack(const floating* x, Py_ssize_t d, uint64_t s, bint deterministic, uint8_t* out,
                       int64_t cap, double* largest, bint* subnormal) noexcept nogil:
    """The codes of x[0:d] into out (cap bytes), and the range statistics of ``natural_encode``."""
    cdef Py_ssize_t i, start, n
    cdef uint32_t mx32 = 0, mn32 = 0xFFFFFFFFU, k32
    cdef int64_t mx64 = 0, mn64 = 0x7FFFFFFFFFFFFFFFLL, k64
    cdef floating like = 0
    cdef int E = 8 if floating is float else 11
    cdef int64_t pos = 0
    cdef uint64_t r64[BLK]
    cdef uint16_t codes[BLK]
    cdef const uint32_t *xb32
    cdef const uint64_t *xb64
    start = 0
    while start < d:
        n = min(<Py_ssize_t>BLK, d - start)
        if floating is float:
            xb32 = <const uint32_t *>&x[start]
            # e = exponent + up, 256 (overflow) -> 255 (inf), and the range
            # statistics in the same loop; compress_simd.h (random: the stream's words
            # made inside, in registers at the AVX2 and AVX-512 levels)
            if deterministic:
                mpt_natural32(xb32, NULL, n, 1, codes, &mx32, &mn32)
            else:
                mpt_natural32r(xb32, s, start, n, codes, &mx32, &mn32)
        else:
            xb64 = <const uint64_t *>&x[start]
            if not deterministic:
                mpt_random64(s, start, n, r64)
            # e = exponent + up, 2048 -> 2047, and the range statistics; compress_simd.h
            mpt_natural64(xb64, r64, n, deterministic, codes, &mx64, &mn64)
        pos = put_codes(codes, n, 1 + E, out, pos, cap)
        start += n
    # inf or NaN seen: rescan for the largest finite |x_i| (rare)
    if floating is float:
        if mx32 >= 0x7F800000U:
            xb32 = <const uint32_t *>&x[0]
            mx32 = 0
            for i in range(d):
                k32 = xb32[i] & 0x7FFFFFFFU
                if k32 < 0x7F800000U and k32 > mx32:
                    mx32 = k32
        largest[0] = from_bits(mx32, like)
        subnormal[0] = mn32 < 0x7FFFFFU
    else:
        if mx64 >= 0x7FF0000000000000LL:
            xb64 = <const uint64_t *>&x[0]
            mx64 = 0
            for i in range(d):
                k64 = <int64_t>(xb64[i] & 0x7FFFFFFFFFFFFFFFULL)
                if k64 < 0x7FF0000000000000LL and k64 > mx64:
                    mx64 = k64
        largest[0] = from_bits(<uint64_t>mx64, like)
        subnormal[0] = mn64 < <int64_t>(0x000FFFFFFFFFFFFFULL ^ 0x8000000000000000ULL)


def natural_decode(buf, out):
    """Inverse of ``natural_encode``: out_i = sign * 2^(e - bias) (0 for e = 0)."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(out, &d, True)
    cdef const uint8_t *b = byte_data(buf, &n, False)
    if kind < 0 or b == NULL or n < (d * (1 + (8 if kind == cnp.NPY_FLOAT else 11)) + 7) // 8:
        _natural_decode_buffers(buf, out)  # the general path: its checks and errors
    elif kind == cnp.NPY_FLOAT:
        natural_unpack(b, n, <float*>vector_data(out), d)
    else:
        natural_unpack(b, n, <double*>vector_data(out), d)


def _natural_decode_buffers(const uint8_t[::1] buf, floating[::1] out):
    """``natural_decode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = out.shape[0]
    cdef int E = 8 if floating is float else 11
    if d == 0:
        return
    if buf.shape[0] < (d * (1 + E) + 7) // 8:
        raise ValueError("buf is too short")
    with nogil:
        natural_unpack(&buf[0], buf.shape[0], &out[0], d)


cdef void natural_unpack(const uint8_t* buf, Py_ssize_t nbuf, floating* out, Py_ssize_t d) noexcept nogil:
    """out[0:d] from the codes in buf (see ``natural_decode``; buf holds them all)."""
    cdef Py_ssize_t i
    cdef int E = 8 if floating is float else 11
    cdef int M = 23 if floating is float else 52
    cdef uint64_t c
    cdef mpt_reader r
    if d == 0:
        return
    if floating is float:  # out_i bits = code << 23, in a SIMD block (compress_simd.h)
        mpt_ndecode32(buf, d, <uint32_t *>out)
        return
    mpt_reader_init(&r, buf, nbuf)
    for i in range(d):
        c = mpt_get(&r, 1 + E)
        out[i] = from_bits(((c >> E) << (M + E)) | ((c & ((1ULL << E) - 1ULL)) << M), out[0])


cdef double scaled_norm(const floating *x, Py_ssize_t n, double p) noexcept nogil:
    """||x[0:n]||_p (p = 1, 2 or finite) with every |x_i| scaled by 2^-e first, where
    max|x_i| = f 2^e, f in [0.5, 1): the scaled entries are <= 1, so no power overflows
    and the largest ones do not underflow (those that do are below 2^-1022 max|x_i|,
    far under the sum's rounding); then the result is scaled back by 2^e (ldexp: one
    rounding, inf when the norm itself exceeds the dtype's range). 2^-e is applied as
    two factors, each a normal double, as e may be as small as -1073. The accumulator
    idea of LAPACK's dnrm2; only ``bucket_norm``'s fallback, so entries are not NaN
    here (a NaN makes the plain sum NaN, which is returned as it is)."""
    cdef Py_ssize_t i
    cdef double amax = 0.0, a, v, s1, s2, acc = 0.0
    cdef int e, k
    for i in range(n):
        a = fabs(<double>x[i])
        if a > amax:
            amax = a
    if amax == 0.0 or amax > DBL_MAX:
        return amax  # zero bucket, or an infinite entry: the norm is 0 or inf
    frexp(amax, &e)
    k = -e
    s1 = ldexp(1.0, k // 2)
    s2 = ldexp(1.0, k - k // 2)
    if p == 2.0:
        for i in range(n):
            v = (fabs(<double>x[i]) * s1) * s2
            acc += v * v
        return ldexp(sqrt(acc), e)
    if p == 1.0:
        for i in range(n):
            acc += (fabs(<double>x[i]) * s1) * s2
        return ldexp(acc, e)
    for i in range(n):
        acc += pow((fabs(<double>x[i]) * s1) * s2, p)
    return ldexp(pow(acc, 1.0 / p), e)


cdef double bucket_norm(const floating *x, Py_ssize_t n, double p) noexcept nogil:
    """||x[0:n]||_p accumulated in double (four partial sums for p = 1, 2).

    The plain sum is the wire format of ordinary inputs (its bits are pinned). It is
    recomputed by ``scaled_norm`` only when it is wrong: it overflowed (float64 entries
    above ~1e154 for p = 2; any sum past DBL_MAX), or, for p != 1, it is below
    n * DBL_MIN, where powers that underflowed could hold more than one rounding's worth
    of it (each loses < 2^-1075; float64 entries below ~1e-154 for p = 2, zero buckets).
    Float32 entries never need it for p = 1, 2 (their squares stay normal doubles), except
    a zero bucket, whose fallback returns 0 as well."""
    cdef Py_ssize_t i, n4 = n & ~(<Py_ssize_t>3), done = 0
    cdef double acc = 0.0, a, a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef double sums[4]
    if floating is float and (p == 2.0 or p == 1.0):
        # the four sums of the loops below as the lanes of one SIMD register (compress_simd.h
        # mpt_sums32): the same additions in the same order; the loops add the last n % 4
        sums[0] = sums[1] = sums[2] = sums[3] = 0.0
        mpt_sums32(x, n4, p == 1.0, sums)
        a0, a1, a2, a3 = sums[0], sums[1], sums[2], sums[3]
        done = n4
    if p == 2.0:
        for i in range(done, n4, 4):
            a0 += <double>x[i] * <double>x[i]
            a1 += <double>x[i + 1] * <double>x[i + 1]
            a2 += <double>x[i + 2] * <double>x[i + 2]
            a3 += <double>x[i + 3] * <double>x[i + 3]
        for i in range(n4, n):
            a0 += <double>x[i] * <double>x[i]
        acc = (a0 + a1) + (a2 + a3)
        if acc > DBL_MAX or acc < n * DBL_MIN:
            return scaled_norm(x, n, p)
        return sqrt(acc)
    if p == 1.0:
        for i in range(done, n4, 4):
            a0 += fabs(<double>x[i])
            a1 += fabs(<double>x[i + 1])
            a2 += fabs(<double>x[i + 2])
            a3 += fabs(<double>x[i + 3])
        for i in range(n4, n):
            a0 += fabs(<double>x[i])
        acc = (a0 + a1) + (a2 + a3)
        if acc > DBL_MAX:  # sums of small entries are exact: only overflow is wrong
            return scaled_norm(x, n, p)
        return acc
    if p == INFINITY:
        for i in range(n):
            a = fabs(<double>x[i])
            if a > acc:
                acc = a
        return acc
    for i in range(n):
        acc += pow(fabs(<double>x[i]), p)
    if acc > DBL_MAX or acc < n * DBL_MIN:
        return scaled_norm(x, n, p)
    return pow(acc, 1.0 / p)


cdef inline bint below(uint32_t r, uint64_t r64, floating p) noexcept nogil:
    """u_i < p exactly: float32 r 2^-32 < p, float64 (r64 >> 11) 2^-53 < p."""
    if floating is float:
        return <double>(<int32_t>(r ^ 0x80000000U)) < <double>p * 4294967296.0 - 2147483648.0
    else:
        return <double>(r64 >> 11) * 1.1102230246251565e-16 < p


cdef inline uint16_t dither_code(floating xi, uint32_t r, uint64_t rr, int levels, bint natural,
                                 floating nrm, floating mul, floating inv, floating lowest,
                                 floating scale_small, bint div) noexcept nogil:
    """The code of one entry (rules in dither_encode); ``div``: |x_i| / nrm instead of the
    multiplication by mul (s / nrm) or inv (1 / nrm). Inlined into two loops with ``div``
    a constant, so the ordinary loop has no division and no branch on it."""
    cdef int M = 23 if floating is float else 52
    cdef int SB = 31 if floating is float else 63
    cdef int64_t bias = 127 if floating is float else 1023, a, lv, big, small
    cdef uint64_t mmask = (1ULL << M) - 1ULL, b
    cdef uint64_t sign = bits_of(xi) >> SB
    cdef floating t, f, q
    cdef floating ax = <floating>fabs(xi)  # exact
    if not natural:
        t = (ax / nrm) * (<floating>levels) if div else ax * mul
        lv = <int64_t>t  # t >= 0: truncation is floor
        f = t - <floating>lv
        lv += below(r, rr, f)
    else:
        q = ax / nrm if div else ax * inv
        b = bits_of(q)
        a = <int64_t>(b >> M) - bias
        if floating is float:
            big = a + levels + ((r >> 9) < (b & mmask))
        else:
            big = a + levels + ((rr >> 12) < (b & mmask))
        small = below(r, rr, q * scale_small)
        lv = big if q >= lowest else small
    lv = levels if lv > levels else lv
    return <uint16_t>((lv << 1) | (sign & (lv != 0)))


cdef void dither_codes(const floating *x, Py_ssize_t n, uint64_t seed, Py_ssize_t first,
                       const uint64_t *r64, int levels, bint natural, floating nrm,
                       uint16_t *codes) noexcept nogil:
    """Codes of n <= BLK entries x[0..n) of one bucket, entries first .. first+n-1 of the
    vector, with header norm nrm (rules in dither_encode). Ordinary norms: the SIMD blocks
    for float32, which make the random words of the stream themselves (in registers at the
    AVX2 and AVX-512 levels), the first loop for float64 (words r64). When s / nrm
    (standard) or 1 / nrm (natural) is not a normal number (``divides``), the second loop,
    |x_i| / nrm in place of the multiplication, for both dtypes."""
    cdef Py_ssize_t i
    cdef uint32_t r32[BLK]
    cdef floating lowest = <floating>ldexp(1.0, 1 - levels)
    cdef floating inv = (<floating>1) / nrm if nrm != 0 else 0
    cdef floating mul = (<floating>levels) / nrm if nrm != 0 else 0
    cdef floating scale_small = <floating>ldexp(1.0, levels - 1)
    cdef bint div = divides(nrm, inv if natural else mul)
    if not div:
        if floating is float:  # the same rules in SIMD blocks (compress_simd.h)
            if not natural:
                mpt_sdither32r(x, seed, first, n, mul, levels, codes)
            else:
                mpt_ndither32r(x, seed, first, n, inv, levels, lowest, scale_small, codes)
        else:
            for i in range(n):
                codes[i] = dither_code(x[i], 0, r64[i], levels, natural, nrm, mul, inv,
                                       lowest, scale_small, False)
        return
    if floating is float:
        mpt_random32_at(seed, first, n, r32)
    for i in range(n):
        if floating is float:
            codes[i] = dither_code(x[i], r32[i], 0, levels, natural, nrm, mul, inv, lowest,
                                   scale_small, True)
        else:
            codes[i] = dither_code(x[i], 0, r64[i], levels, natural, nrm, mul, inv, lowest,
                                   scale_small, True)


def check_dither_sizes(Py_ssize_t d, int levels, int max_levels, Py_ssize_t bucket, Py_ssize_t nnorms,
                       Py_ssize_t nbytes, str name):
    """ValueError unless the dithering kernels' arguments fit: s in [1, max_levels] (codes of
    1 + bit_length(s) <= 16 bits to encode; tables of 2^(1 + bit_length(s)) <= 512 codes to
    decode), bucket >= 1, a norm per bucket and the ceil(d (1 + bit_length(s)) / 8) bytes of
    the codes (the kernels write and read these buffers without bounds checks)."""
    if not 1 <= levels <= max_levels or bucket < 1:
        raise ValueError(f"levels must be in [1, {max_levels}] and bucket >= 1, got {levels} and {bucket}")
    if nnorms < (d + bucket - 1) // bucket:
        raise ValueError(f"norms has {nnorms} entries, {(d + bucket - 1) // bucket} buckets need one each")
    if nbytes < (d * (1 + levels.bit_length()) + 7) // 8:
        raise ValueError(f"{name} is too short: {nbytes} bytes for {(d * (1 + levels.bit_length()) + 7) // 8}")


def dither_encode(x, seed, int levels, Py_ssize_t bucket, bint natural, double p, norms, out):
    """Standard (QSGD) or natural dithering of x, bucket by bucket (docs/papers.md s.2).

    norms[j] = ||x_bucket_j||_p rounded to the dtype (``bucket_norm``: scaled when the
    plain double sum over- or underflows; inf when the norm exceeds the dtype, which the
    compressor refuses, dithering.py); all arithmetic below in the dtype.
    standard: t = |x_i| * (s / norm), level = floor(t) + [u_i < t - floor(t)], capped at s;
    natural: r = |x_i| * (1 / norm); r >= 2^(1-s): r = 2^a (1 + m / 2^M),
    level = a + s + [u_i < m / 2^M]; r < 2^(1-s): level = [u_i < r * 2^(s-1)];
    levels above s are capped to s. When s / norm (standard) or 1 / norm (natural) is not
    a normal number of the dtype (norm subnormal or tiny, or huge: ``divides``),
    t = (|x_i| / norm) * s and r = |x_i| / norm instead, so that the probabilities are
    unbiased for every representable norm (Beznosikov et al., "On biased compression for
    distributed learning": E C(x) = x needs E level = s |x_i| / norm exactly).
    u_i: stream of ``compress_common.pxi`` (exact comparisons). One pass for the norms,
    then blocks of BLK entries: branch-free codes, then packing; float32 blocks make their
    random words in registers at the AVX2 and AVX-512 levels (compress_simd.h), float64
    blocks draw them into a buffer first.
    """
    cdef Py_ssize_t d = 0, nnorms = 0, n = 0
    cdef int kind = vector_type(x, &d, False)
    cdef uint8_t *o = byte_data(out, &n, True)
    if kind < 0 or o == NULL or vector_type(norms, &nnorms, True) != kind or not 1 <= levels <= 32767 \
            or bucket < 1 or nnorms < (d + bucket - 1) // bucket or n < (d * (1 + bit_length(levels)) + 7) // 8:
        _dither_encode_buffers(x, seed, levels, bucket, natural, p, norms, out)  # the general path: its checks and errors
    elif d == 0:
        return
    elif kind == cnp.NPY_FLOAT:
        dither_pack(<const float*>vector_data(x), d, <uint64_t>(int(seed) & ((1 << 64) - 1)), levels, bucket,
                    natural, p, <float*>vector_data(norms), o, n)
    else:
        dither_pack(<const double*>vector_data(x), d, <uint64_t>(int(seed) & ((1 << 64) - 1)), levels, bucket,
                    natural, p, <double*>vector_data(norms), o, n)


def _dither_encode_buffers(const floating[::1] x, seed, int levels, Py_ssize_t bucket, bint natural,
                          double p, floating[::1] norms, uint8_t[::1] out):
    """``dither_encode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = x.shape[0]
    cdef uint64_t s = <uint64_t>(int(seed) & ((1 << 64) - 1))
    check_dither_sizes(d, levels, 32767, bucket, norms.shape[0], out.shape[0], "out")
    if d == 0:
        return
    with nogil:
        dither_pack(&x[0], d, s, levels, bucket, natural, p, &norms[0], &out[0], out.shape[0])


cdef inline int bit_length(int levels) noexcept nogil:
    """Python's int.bit_length of levels >= 0."""
    cdef int L = 0
    while (levels >> L) != 0:
        L += 1
    return L


cdef void dither_pack(const floating* x, Py_ssize_t d, uint64_t s, int levels, Py_ssize_t bucket, bint natural,
                      double p, floating* norms, uint8_t* out, int64_t cap) noexcept nogil:
    """The norms and packed codes of x[0:d] (see ``dither_encode``; the sizes checked)."""
    cdef Py_ssize_t i, j, start, stop, n, seg
    cdef int L = bit_length(levels)
    cdef int64_t pos = 0
    cdef uint64_t r64[BLK]
    cdef uint16_t codes[BLK]
    j = 0
    start = 0
    while start < d:
        stop = min(start + bucket, d)
        norms[j] = <floating>bucket_norm(&x[start], stop - start, p)
        start = stop
        j += 1
    start = 0
    while start < d:
        n = min(<Py_ssize_t>BLK, d - start)
        if floating is double:  # float32 blocks draw their own words
            mpt_random64(s, start, n, r64)
        i = 0
        while i < n:  # segments of the block inside one bucket
            j = (start + i) // bucket
            seg = min(n - i, (j + 1) * bucket - (start + i))
            dither_codes(&x[start + i], seg, s, start + i, &r64[i], levels, natural,
                         norms[j], &codes[i])
            i += seg
        pos = put_codes(codes, n, 1 + L, out, pos, cap)
        start += n


def dither_decode(buf, int levels, Py_ssize_t bucket, bint natural, norms, out):
    """Inverse of ``dither_encode``: standard: sign * (norm * level) / s, or
    sign * norm * (level / s) when norm * level overflows (norms near the dtype's
    maximum: the value itself is <= norm, representable); natural:
    sign * norm * 2^(level - s) (0 for level 0; never overflows, level <= s). One table
    of the 2^(1+L) code values per bucket, then a branch-free lookup per entry."""
    cdef Py_ssize_t d = 0, nnorms = 0, n = 0
    cdef int kind = vector_type(out, &d, True)
    cdef const uint8_t *b = byte_data(buf, &n, False)
    if kind < 0 or b == NULL or vector_type(norms, &nnorms, False) != kind or not 1 <= levels <= 255 \
            or bucket < 1 or nnorms < (d + bucket - 1) // bucket or n < (d * (1 + bit_length(levels)) + 7) // 8:
        _dither_decode_buffers(buf, levels, bucket, natural, norms, out)  # the general path: its checks and errors
    elif d == 0:
        return
    elif kind == cnp.NPY_FLOAT:
        dither_unpack(b, n, levels, bucket, natural, <const float*>vector_data(norms), <float*>vector_data(out), d)
    else:
        dither_unpack(b, n, levels, bucket, natural, <const double*>vector_data(norms), <double*>vector_data(out), d)


def _dither_decode_buffers(const uint8_t[::1] buf, int levels, Py_ssize_t bucket, bint natural,
                          const floating[::1] norms, floating[::1] out):
    """``dither_decode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = out.shape[0]
    check_dither_sizes(d, levels, 255, bucket, norms.shape[0], buf.shape[0], "buf")
    if d == 0:
        return
    with nogil:
        dither_unpack(&buf[0], buf.shape[0], levels, bucket, natural, &norms[0], &out[0], d)


cdef void dither_unpack(const uint8_t* buf, Py_ssize_t nbuf, int levels, Py_ssize_t bucket, bint natural,
                        const floating* norms, floating* out, Py_ssize_t d) noexcept nogil:
    """out[0:d] from the norms and codes (see ``dither_decode``; the sizes checked)."""
    cdef Py_ssize_t i, start, stop, j = 0
    cdef int L = bit_length(levels), c, ncodes = 1 << (1 + L)
    cdef uint64_t level
    cdef floating nrm, v, fs = <floating>levels
    cdef floating table[512]
    cdef floating pair[512]
    cdef mpt_reader r
    mpt_reader_init(&r, buf, nbuf)
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
                if floating is float:
                    if v > FLT_MAX and nrm <= FLT_MAX:
                        v = nrm * (<floating>level / fs)
                else:
                    if v > DBL_MAX and nrm <= DBL_MAX:
                        v = nrm * (<floating>level / fs)
            table[c] = -v if (c & 1) else v
        if L == 3 and stop - start >= 4096 and r.nacc == 0 and 2 * r.pos == start:
            # 4-bit codes, two per byte
            if floating is float:  # table lookups in a SIMD block (compress_simd.h)
                mpt_d4decode32(buf + (start >> 1), (stop - start) & ~(<Py_ssize_t>1),
                               <const uint32_t *>table, <uint32_t *>&out[start])
            else:  # one table of both values per byte value
                for c in range(256):
                    pair[2 * c] = table[c & 15]
                    pair[2 * c + 1] = table[c >> 4]
                for i in range(start, stop - 1, 2):
                    memcpy(&out[i], &pair[2 * buf[i >> 1]], 2 * sizeof(floating))
            r.pos = stop // 2  # the reader resumes here (start was even)
            if stop % 2:  # last code in a low nibble; the high one is the next bucket's
                out[stop - 1] = table[buf[stop >> 1] & 15]
                r.acc = buf[stop >> 1] >> 4
                r.nacc = 4
                r.pos += 1
        else:
            for i in range(start, stop):
                out[i] = table[mpt_get(&r, 1 + L)]
        start = stop
        j += 1


def sign_encode(x, out):
    """Scaled sign (docs/papers.md s.2, B3(d)): pack sign bits of x into out; returns
    ||x||_1 / d rounded to the dtype (accumulated in double). If that sum overflows
    (float64 entries near DBL_MAX; the mean itself is <= max|x_i|, representable), the
    sum of |x_i| 2^-64 instead, and the mean scaled back by 2^64: exact scalings, so the
    header is the mean, not inf (Beznosikov et al., "On biased compression for
    distributed learning": the scale ||x||_1 / d makes C(x) contractive, B3(d))."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(x, &d, False)
    cdef uint8_t *o = byte_data(out, &n, True)
    if kind < 0 or o == NULL or n < (d + 7) // 8:
        return _sign_encode_buffers(x, out)  # the general path: its checks and errors
    if kind == cnp.NPY_FLOAT:
        return <float>sign_pack(<const float*>vector_data(x), d, o)
    return sign_pack(<const double*>vector_data(x), d, o)


def _sign_encode_buffers(const floating[::1] x, uint8_t[::1] out):
    """``sign_encode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = x.shape[0]
    cdef double mean
    if out.shape[0] < (d + 7) // 8:
        raise ValueError(f"out is too short: {out.shape[0]} bytes for {(d + 7) // 8} sign bits")
    if d == 0:
        return 0.0
    with nogil:
        mean = sign_pack(&x[0], d, &out[0])
    return <floating>mean


cdef double sign_pack(const floating* x, Py_ssize_t d, uint8_t* out) noexcept nogil:
    """The sign bits of x[0:d] into out, and ||x||_1 / d (see ``sign_encode``)."""
    cdef Py_ssize_t i, j, nfull = d // 32
    cdef double acc = 0.0, mean
    cdef uint32_t word
    cdef int M = 31 if floating is float else 63
    cdef mpt_writer w
    if d == 0:
        return 0.0
    mpt_writer_init(&w, out)
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
    if acc > DBL_MAX:  # overflowed (or an entry is inf: then inf again below)
        acc = 0.0
        for i in range(d):
            acc += fabs(<double>x[i]) * 5.421010862427522e-20  # 2^-64
        mean = (acc / d) * 18446744073709551616.0  # 2^64
        if mean > DBL_MAX and acc <= DBL_MAX:
            mean = DBL_MAX  # finite entries: the mean is <= max|x_i|, off by rounding
    else:
        mean = acc / d
    return mean


# sign_decode builds its 2048-value table (one per byte value and bit) only for d at least this;
# at d = 300 the table took 4.4 us of a 4.5 us call (2026-12-01)
cdef enum:
    SIGN_TABLE_MIN = 8192
SIGN_TABLE_MIN_D = SIGN_TABLE_MIN


def sign_decode(buf, double scale_, out):
    """out_i = -scale if bit i is set else scale (scale rounded to the dtype)."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(out, &d, True)
    cdef const uint8_t *b = byte_data(buf, &n, False)
    if kind < 0 or b == NULL or n < (d + 7) // 8:
        _sign_decode_buffers(buf, scale_, out)  # the general path: its checks and errors
    elif kind == cnp.NPY_FLOAT:
        sign_unpack(b, scale_, <float*>vector_data(out), d)
    else:
        sign_unpack(b, scale_, <double*>vector_data(out), d)


def _sign_decode_buffers(const uint8_t[::1] buf, double scale_, floating[::1] out):
    """``sign_decode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = out.shape[0]
    if buf.shape[0] < (d + 7) // 8:
        raise ValueError(f"buf is too short: {buf.shape[0]} bytes for {(d + 7) // 8} sign bits")
    if d == 0:
        return
    with nogil:
        sign_unpack(&buf[0], scale_, &out[0], d)


def sign_encode_payload(x, payload):
    """Scaled sign's whole payload of x in one call: the scale that ``sign_encode`` returns, in
    x's dtype (its bytes in this machine's order), then the sign bits, into ``payload`` (uint8,
    exactly itemsize + ceil(d / 8) bytes); returns payload. The bytes of writing that scale into
    the header's view and calling ``sign_encode`` on the rest (mpitrain.compress.ScaledSign),
    without the views. ValueError for any other arrays (the compressor checks them first)."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(x, &d, False)
    cdef uint8_t *o = byte_data(payload, &n, True)
    cdef float s32
    cdef double s64
    if kind == cnp.NPY_FLOAT and o != NULL and n == 4 + (d + 7) // 8:
        s32 = <float>sign_pack(<const float*>vector_data(x), d, o + 4)
        memcpy(o, &s32, 4)
    elif kind == cnp.NPY_DOUBLE and o != NULL and n == 8 + (d + 7) // 8:
        s64 = sign_pack(<const double*>vector_data(x), d, o + 8)
        memcpy(o, &s64, 8)
    else:
        raise ValueError("sign_encode_payload takes a contiguous float32 or float64 x and a writable "
                         "uint8 payload of exactly itemsize + ceil(d / 8) bytes")
    return payload


def sign_decode_payload(payload, out):
    """out_i = -scale if bit i is set else scale, from a whole ``sign_encode_payload`` payload
    (the scale read from its header in out's dtype); returns out. ValueError for arrays of any
    other kind or size (the compressor checks them first)."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(out, &d, True)
    cdef const uint8_t *b = byte_data(payload, &n, False)
    cdef float s32
    cdef double s64
    if kind == cnp.NPY_FLOAT and b != NULL and n == 4 + (d + 7) // 8:
        memcpy(&s32, b, 4)
        sign_unpack(b + 4, <double>s32, <float*>vector_data(out), d)
    elif kind == cnp.NPY_DOUBLE and b != NULL and n == 8 + (d + 7) // 8:
        memcpy(&s64, b, 8)
        sign_unpack(b + 8, s64, <double*>vector_data(out), d)
    else:
        raise ValueError("sign_decode_payload takes a uint8 payload of exactly itemsize + ceil(d / 8) "
                         "bytes and a writable contiguous float32 or float64 out of d entries")
    return out


cdef void sign_unpack(const uint8_t* buf, double scale_, floating* out, Py_ssize_t d) noexcept nogil:
    """out[0:d] from the sign bits in buf (see ``sign_decode``)."""
    cdef Py_ssize_t i
    cdef floating scale = <floating>scale_
    cdef uint64_t sb = bits_of(scale)
    cdef int M = 31 if floating is float else 63
    cdef floating table[2048]  # the 8 values of each byte value
    cdef Py_ssize_t c, nb = d // 8 if d >= SIGN_TABLE_MIN else 0  # below: the table costs more than it saves
    for c in range(2048 if nb else 0):
        table[c] = from_bits(sb ^ (<uint64_t>(((c >> 3) >> (c & 7)) & 1) << M), scale)
    for i in range(nb):
        memcpy(&out[8 * i], &table[8 * buf[i]], 8 * sizeof(floating))
    for i in range(8 * nb, d):
        out[i] = from_bits(sb ^ (<uint64_t>((buf[i >> 3] >> (i & 7)) & 1) << M), scale)


def ternary_encode(x, seed, out):
    """TernGrad (Wen et al. 2017; docs/papers.md s.2): returns m = ||x||_inf and packs
    2-bit codes: nonzero iff u_i < |x_i| * (1 / m) (dtype), bit 1 = sign. The maximum is
    taken on the magnitude bits as integers (NaN entries ignored). When 1 / m is not a
    normal number of the dtype (m subnormal or tiny: 1 / m overflowed and every entry was
    sent; m huge: 1 / m subnormal and imprecise; ``divides``) the probability is
    |x_i| / m instead, a correctly rounded quotient for every finite m > 0, so that
    E C(x) = x holds over the whole range (Beznosikov et al., "On biased compression for
    distributed learning", class U(omega)); that case runs the scalar loop."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(x, &d, False)
    cdef uint8_t *o = byte_data(out, &n, True)
    if kind < 0 or o == NULL or n < (2 * d + 7) // 8:
        return _ternary_encode_buffers(x, seed, out)  # the general path: its checks and errors
    if d == 0:
        return 0.0
    if kind == cnp.NPY_FLOAT:
        return ternary_pack(<const float*>vector_data(x), d, <uint64_t>(int(seed) & ((1 << 64) - 1)), o, n)
    return ternary_pack(<const double*>vector_data(x), d, <uint64_t>(int(seed) & ((1 << 64) - 1)), o, n)


def _ternary_encode_buffers(const floating[::1] x, seed, uint8_t[::1] out):
    """``ternary_encode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = x.shape[0]
    cdef uint64_t s = <uint64_t>(int(seed) & ((1 << 64) - 1))
    cdef floating mx
    if d == 0:
        return 0.0
    if out.shape[0] < (2 * d + 7) // 8:
        raise ValueError("out is too short")
    with nogil:
        mx = ternary_pack(&x[0], d, s, &out[0], out.shape[0])
    return mx


cdef floating ternary_pack(const floating* x, Py_ssize_t d, uint64_t s, uint8_t* out, int64_t cap) noexcept nogil:
    """The 2-bit codes of x[0:d] into out (cap bytes); returns m (see ``ternary_encode``)."""
    cdef Py_ssize_t i, start, n
    cdef int SB = 31 if floating is float else 63
    cdef floating mx = 0, inv, q, ax
    cdef bint div
    cdef int32_t k32, m32 = 0
    cdef int64_t k64, m64 = 0
    cdef uint64_t nz
    cdef uint32_t r = 0
    cdef uint64_t rr = 0
    cdef int64_t pos = 0
    cdef uint32_t r32[BLK]  # words of the float32 stream
    cdef uint64_t r64[BLK]
    cdef uint16_t codes[BLK]
    cdef const int32_t *xi32
    cdef const int64_t *xi64
    if floating is float:
        xi32 = <const int32_t *>x
        mpt_absmax32(xi32, d, &m32)  # max of |x_i| bits, NaN ignored
        mx = from_bits(<uint64_t>m32, mx)
    else:
        xi64 = <const int64_t *>x
        for i in range(d):
            k64 = xi64[i] & 0x7FFFFFFFFFFFFFFFLL
            k64 = 0 if k64 > 0x7FF0000000000000LL else k64
            m64 = k64 if k64 > m64 else m64
        mx = from_bits(<uint64_t>m64, mx)
    inv = (<floating>1) / mx if mx > 0 else 0
    div = divides(mx, inv)
    start = 0
    if floating is float:
        # one pass: random words, codes and packing in registers (compress_simd.h)
        if not div and mpt_ternary_enc32(x, d, s, inv, out):
            start = d
    while start < d:
        n = min(<Py_ssize_t>BLK, d - start)
        random_block(s, start, n, r32, r64, floating is float)
        if floating is float and not div:
            mpt_ternary32(&x[start], r32, n, inv, codes)
        else:
            for i in range(n):
                if floating is float:
                    r = r32[i]
                else:
                    rr = r64[i]
                ax = <floating>fabs(x[start + i])  # exact
                q = ax / mx if div else ax * inv  # in the dtype
                nz = below(r, rr, q)
                codes[i] = <uint16_t>(nz | ((nz & (bits_of(x[start + i]) >> SB)) << 1))
        pos = put_codes(codes, n, 2, out, pos, cap)
        start += n
    return mx


def ternary_decode(buf, double scale_, out):
    """out_i = 0, scale or -scale from the 2-bit codes (scale rounded to the dtype)."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(out, &d, True)
    cdef const uint8_t *b = byte_data(buf, &n, False)
    if kind < 0 or b == NULL or n < (2 * d + 7) // 8:
        _ternary_decode_buffers(buf, scale_, out)  # the general path: its checks and errors
    elif kind == cnp.NPY_FLOAT:
        ternary_unpack(b, scale_, <float*>vector_data(out), d)
    else:
        ternary_unpack(b, scale_, <double*>vector_data(out), d)


def _ternary_decode_buffers(const uint8_t[::1] buf, double scale_, floating[::1] out):
    """``ternary_decode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = out.shape[0]
    if d == 0:
        return
    if buf.shape[0] < (2 * d + 7) // 8:  # (float64 read past a short buf before 2026-12-01)
        raise ValueError("buf is too short")
    with nogil:
        ternary_unpack(&buf[0], scale_, &out[0], d)


cdef void ternary_unpack(const uint8_t* buf, double scale_, floating* out, Py_ssize_t d) noexcept nogil:
    """out[0:d] from the 2-bit codes in buf (see ``ternary_decode``)."""
    cdef Py_ssize_t i
    cdef floating scale = <floating>scale_
    cdef floating table[4]
    table[0] = 0
    table[1] = scale
    table[2] = 0
    table[3] = -scale
    cdef floating quad[1024]  # the 4 values of each byte value
    cdef Py_ssize_t c, nb = d // 4
    if floating is float:
        if d > 0:  # the same values from the bits of scale, in a SIMD block (compress_simd.h)
            mpt_tdecode32(buf, d, <uint32_t>bits_of(scale), <uint32_t *>out)
        return
    for c in range(1024):
        quad[c] = table[((c >> 2) >> (2 * (c & 3))) & 3]
    for i in range(nb):
        memcpy(&out[4 * i], &quad[4 * buf[i]], 4 * sizeof(floating))
    for i in range(4 * nb, d):
        out[i] = table[(buf[i >> 2] >> (2 * (i & 3))) & 3]


# -- the kernels C callers take -------------------------------------------------------------
# Compressed SGD's exchange in C (compressed_steps.pyx) writes and reads the payloads of the
# ditherings, scaled sign, ternary and natural compression through these very functions, taken from
# here as PyCapsules named "mpitrain.<name>" (the pointer is the specialisation's function), so both
# write and read the same bytes from one statement of the code.

include "round_kernel_types.pxi"
from libc.stdint cimport uintptr_t


cdef object c_kernels():
    cdef dither_pack32_t dither_pack32 = dither_pack[float]
    cdef dither_pack64_t dither_pack64 = dither_pack[double]
    cdef dither_unpack32_t dither_unpack32 = dither_unpack[float]
    cdef dither_unpack64_t dither_unpack64 = dither_unpack[double]
    cdef sign_pack32_t sign_pack32 = sign_pack[float]
    cdef sign_pack64_t sign_pack64 = sign_pack[double]
    cdef sign_unpack32_t sign_unpack32 = sign_unpack[float]
    cdef sign_unpack64_t sign_unpack64 = sign_unpack[double]
    cdef ternary_pack32_t ternary_pack32 = ternary_pack[float]
    cdef ternary_pack64_t ternary_pack64 = ternary_pack[double]
    cdef ternary_unpack32_t ternary_unpack32 = ternary_unpack[float]
    cdef ternary_unpack64_t ternary_unpack64 = ternary_unpack[double]
    cdef natural_pack32_t natural_pack32 = natural_pack[float]
    cdef natural_pack64_t natural_pack64 = natural_pack[double]
    cdef natural_unpack32_t natural_unpack32 = natural_unpack[float]
    cdef natural_unpack64_t natural_unpack64 = natural_unpack[double]
    functions = {"dither_pack32": <uintptr_t>dither_pack32, "dither_pack64": <uintptr_t>dither_pack64,
                 "dither_unpack32": <uintptr_t>dither_unpack32, "dither_unpack64": <uintptr_t>dither_unpack64,
                 "sign_pack32": <uintptr_t>sign_pack32, "sign_pack64": <uintptr_t>sign_pack64,
                 "sign_unpack32": <uintptr_t>sign_unpack32, "sign_unpack64": <uintptr_t>sign_unpack64,
                 "ternary_pack32": <uintptr_t>ternary_pack32, "ternary_pack64": <uintptr_t>ternary_pack64,
                 "ternary_unpack32": <uintptr_t>ternary_unpack32, "ternary_unpack64": <uintptr_t>ternary_unpack64,
                 "natural_pack32": <uintptr_t>natural_pack32, "natural_pack64": <uintptr_t>natural_pack64,
                 "natural_unpack32": <uintptr_t>natural_unpack32, "natural_unpack64": <uintptr_t>natural_unpack64}
    # PyCapsule_New keeps the name's pointer, not a copy: the names live in _CAPSULE_NAMES
    _CAPSULE_NAMES.update({name: f"mpitrain.{name}".encode() for name in functions})
    return {name: PyCapsule_New(<void*><uintptr_t>address, <const char*>_CAPSULE_NAMES[name], NULL)
            for name, address in functions.items()}


_CAPSULE_NAMES = {}  # name -> the bytes its capsule's name points into (kept for the module's life)


#: compress_round's kernels for C callers as PyCapsules, by name (``dither_pack32``, ...; see above)
C_KERNELS = c_kernels()
