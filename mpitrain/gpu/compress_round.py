"""GPU twin of ``mpitrain._native.compress_round`` (cuda/compress_round.cu): the same
functions and arguments on CuPy arrays, and the same payload bytes.

Codes are computed per element from (seed, i) with the CPU's counter-based stream, so they
equal the CPU's bit for bit. Header scalars (bucket norms, ||x||_1 / d) are sums in double
whose order differs from the CPU's loop: after rounding to float32 they agree except when
the double sum lies within a few 1e-16 of a float32 rounding boundary; in float64 they may
differ in the last bit. The maximum of ternary is order-free and exact.

Range (Beznosikov et al., "On biased compression for distributed learning"; the rules of
pyx/compress_round.pyx's docstring): the per-element rules (cuda/mpt_common.cuh) divide by
the norm where s / norm or 1 / norm is not a normal number and decode norm * (level / s)
where (norm * level) / s overflows, on the device, without a host read. The headers
follow the CPU's fallbacks with one host read where the CPU tests a sum: dithering norms in
float64 or for p other than 1, 2 (plain double sum, then the power-of-two-scaled sum when
it over- or underflowed; float32 entries need none for p = 1, 2), scaled sign in float64
(sum of |x_i| 2^-64 when the plain sum overflowed). ``natural_encode`` returns the range
statistics the compressor checks (one fused reduction).
"""
import math

import cupy
import numpy as np

from mpitrain.gpu import launch, raw_module

_MODULE = raw_module("compress_round")
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}

# reductions in double, module-level objects built once (axis=1 reduces each bucket)
_SUM_SQUARES = cupy.ReductionKernel("T x", "float64 y", "(double)x * (double)x", "a + b",
                                    "y = a", "0", "mpitrain_sum_squares")
_SUM_ABS = cupy.ReductionKernel("T x", "float64 y", "fabs((double)x)", "a + b", "y = a", "0",
                                "mpitrain_sum_abs")
_MAX_ABS = cupy.ReductionKernel("T x", "float64 y", "fabs((double)x)", "max(a, b)", "y = a", "0",
                                "mpitrain_max_abs")

# natural compression's range statistics in one pass over the bits (k: x as uint32/uint64):
# key = (largest finite |x_i| bits) << 1 | [some x_i is a nonzero subnormal], as
# compress_simd.h's mpt_frange32 and the float64 loop of compress_round.pyx
_RANGE_PREAMBLE = r"""
template <typename U> __device__ unsigned long long mpitrain_range_key(U k) {
    const bool wide = sizeof(U) == 8;
    const unsigned long long mag = (unsigned long long)k
        & (wide ? 0x7FFFFFFFFFFFFFFFULL : 0x7FFFFFFFULL);
    const unsigned long long inf = wide ? 0x7FF0000000000000ULL : 0x7F800000ULL;
    const unsigned long long mant = wide ? 0x000FFFFFFFFFFFFFULL : 0x007FFFFFULL;
    const unsigned long long finite = mag < inf ? mag : 0ULL;
    return (finite << 1) | (unsigned long long)((mag - 1ULL) < mant);
}
__device__ unsigned long long mpitrain_range_join(unsigned long long a, unsigned long long b) {
    const unsigned long long m = (a >> 1) > (b >> 1) ? (a >> 1) : (b >> 1);
    return (m << 1) | ((a | b) & 1ULL);
}
"""
_RANGE = cupy.ReductionKernel("T k", "uint64 y", "mpitrain_range_key(k)", "mpitrain_range_join(a, b)",
                              "y = a", "0", "mpitrain_natural_range",
                              reduce_type="unsigned long long", preamble=_RANGE_PREAMBLE)
_UINT = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def _kernel(name, x):
    return _MODULE.get_function(f"{name}_{_SUFFIX[np.dtype(x.dtype)]}")


def _scalar_array(value, dtype):
    """A 1-element device array of dtype holding value (a 0-d/1-element CuPy array or a number)."""
    if isinstance(value, cupy.ndarray):
        return cupy.ascontiguousarray(value.reshape(1).astype(dtype, copy=False))
    return cupy.asarray([value], dtype=dtype)


def natural_encode(x, seed, deterministic, out):
    """Natural compression (or biased rounding when deterministic) of x into out (packed).
    Returns (largest finite |x_i|, whether some x_i is a nonzero subnormal) as 0-d CuPy
    arrays (dtype, bool), for the compressor's range check (natural_compression.py)."""
    n = x.shape[0]
    launch(_kernel("natural_encode", x), -(-n // 8),
           (x, np.int64(n), np.uint64(int(seed) & (2**64 - 1)), np.int32(bool(deterministic)),
            out, np.int64(out.shape[0])))
    if n == 0:
        return cupy.zeros((), x.dtype), cupy.zeros((), np.bool_)
    uint = _UINT[np.dtype(x.dtype)]
    key = _RANGE(x.view(uint))
    largest = (key >> 1).astype(uint).reshape(1).view(x.dtype).reshape(())
    return largest, (key & 1).astype(np.bool_)


def natural_decode(buf, out):
    """out_i = sign * 2^(e - bias) from the packed codes."""
    launch(_kernel("natural_decode", out), out.shape[0],
           (cupy.ascontiguousarray(buf), np.int64(buf.shape[0]), np.int64(out.shape[0]), out))


def _scaled_norms(x, axis, p):
    """compress_round.pyx ``scaled_norm`` for each bucket: entries scaled by 2^-e first
    (max|x_i| = f 2^e, f in [0.5, 1); two exact factors), the norm scaled back by 2^e;
    0 or inf where max|x_i| is."""
    xd = cupy.abs(x.astype(np.float64))
    amax = xd.max(axis=axis)
    e = cupy.frexp(amax)[1]
    k = -e
    s1, s2 = cupy.ldexp(1.0, k // 2), cupy.ldexp(1.0, k - k // 2)
    if axis is not None:
        s1, s2 = s1[:, None], s2[:, None]
    v = (xd * s1) * s2
    if p == 2.0:
        total = cupy.ldexp(cupy.sqrt((v * v).sum(axis=axis)), e)
    elif p == 1.0:
        total = cupy.ldexp(v.sum(axis=axis), e)
    else:
        total = cupy.ldexp((v ** p).sum(axis=axis) ** (1.0 / p), e)
    return cupy.where((amax == 0) | cupy.isinf(amax), amax, total)


def bucket_norms(x, bucket, p, norms):
    """norms[j] = ||x_bucket_j||_p, accumulated in double, rounded to the dtype (in place).
    As compress_round.pyx ``bucket_norm``: the plain double sum, or the scaled one for the
    buckets where it overflowed or (p != 1) fell below n DBL_MIN (float64 entries beyond
    ~1e154 or below ~1e-154 for p = 2); float32 entries need no test for p = 1, 2."""
    d, buckets = x.shape[0], norms.shape[0]
    if buckets > 1:
        padded = cupy.zeros(buckets * bucket, dtype=x.dtype)
        padded[:d] = x
        x = padded.reshape(buckets, bucket)
    axis = 1 if buckets > 1 else None
    if p == 2.0:
        acc = _SUM_SQUARES(x, axis=axis)
    elif p == 1.0:
        acc = _SUM_ABS(x, axis=axis)
    elif p == float("inf"):
        acc = _MAX_ABS(x, axis=axis)
    else:
        acc = cupy.sum(cupy.abs(x.astype(np.float64)) ** p, axis=axis)
    if p != float("inf") and (x.dtype == np.float64 or p not in (1.0, 2.0)):
        bad = acc > np.finfo(np.float64).max
        if p != 1.0:
            lengths = cupy.full(buckets, bucket, dtype=np.float64)
            lengths[-1] = d - (buckets - 1) * bucket
            bad |= acc < lengths.reshape(acc.shape) * np.finfo(np.float64).smallest_normal
        if bool(bad.any()):  # one host read; the fallback only for the rare buckets
            plain = cupy.sqrt(acc) if p == 2.0 else acc if p == 1.0 else acc ** (1.0 / p)
            total = cupy.where(bad, _scaled_norms(x, axis, p), plain)
            norms[...] = total.reshape(buckets).astype(norms.dtype)
            return
    total = cupy.sqrt(acc) if p == 2.0 else acc if p in (1.0, float("inf")) else acc ** (1.0 / p)
    norms[...] = total.reshape(buckets).astype(norms.dtype)


def dither_encode(x, seed, levels, bucket, natural, p, norms, out):
    """Standard or natural dithering of x bucket by bucket: norms (dtype) and packed codes."""
    n = x.shape[0]
    bucket_norms(x, int(bucket), float(p), norms)
    b = 1 + int(levels).bit_length()
    launch(_kernel("dither_encode", x), -(-n // 8),
           (x, np.int64(n), np.uint64(int(seed) & (2**64 - 1)), np.int32(levels),
            np.int64(bucket), np.int32(bool(natural)), cupy.ascontiguousarray(norms),
            np.int32(b), out, np.int64(out.shape[0])))


def dither_decode(buf, levels, bucket, natural, norms, out):
    """Inverse of dither_encode into out."""
    b = 1 + int(levels).bit_length()
    launch(_kernel("dither_decode", out), out.shape[0],
           (cupy.ascontiguousarray(buf), np.int64(buf.shape[0]), np.int32(levels),
            np.int64(bucket), np.int32(bool(natural)), cupy.ascontiguousarray(norms),
            np.int32(b), np.int64(out.shape[0]), out))


def sign_encode(x, out):
    """Pack the sign bits of x into out; returns ||x||_1 / d in the dtype (a 0-d CuPy array).
    Float64: when the plain double sum overflowed (one host read), the mean of |x_i| 2^-64
    scaled back by 2^64, capped at DBL_MAX, as compress_round.pyx ``sign_encode``."""
    n = x.shape[0]
    launch(_kernel("sign_encode", x), -(-n // 8), (x, np.int64(n), out, np.int64(out.shape[0])))
    total = _SUM_ABS(x)
    big = np.finfo(np.float64).max
    if x.dtype == np.float64 and bool(total > big):
        acc = (cupy.abs(x) * math.ldexp(1.0, -64)).sum()
        mean = (acc / n) * math.ldexp(1.0, 64)
        return cupy.where((mean > big) & (acc <= big), big, mean).astype(x.dtype)
    return (total / n).astype(x.dtype)


def sign_decode(buf, scale, out):
    """out_i = -scale if bit i is set else scale."""
    launch(_kernel("sign_decode", out), out.shape[0],
           (cupy.ascontiguousarray(buf), _scalar_array(scale, out.dtype), np.int64(out.shape[0]),
            out))


def ternary_maximum(x):
    """||x||_inf over the magnitude bits as integers, NaN entries ignored (0-d, dtype)."""
    ukey = np.int32 if x.dtype == np.float32 else np.int64
    nbits = 8 * x.dtype.itemsize
    keys = x.view(ukey) & ukey((1 << (nbits - 1)) - 1)
    inf_bits = 0x7F800000 if nbits == 32 else 0x7FF0000000000000
    keys = cupy.where(keys > ukey(inf_bits), ukey(0), keys)
    return keys.max().reshape(1).view(x.dtype).reshape(())


def ternary_encode(x, seed, out):
    """TernGrad codes of x into out; returns m = ||x||_inf (0-d CuPy array of the dtype)."""
    n = x.shape[0]
    mx = ternary_maximum(x)
    launch(_kernel("ternary_encode", x), -(-n // 8),
           (x, np.int64(n), np.uint64(int(seed) & (2**64 - 1)), mx.reshape(1), out,
            np.int64(out.shape[0])))
    return mx


def ternary_decode(buf, scale, out):
    """out_i = 0, scale or -scale from the 2-bit codes."""
    launch(_kernel("ternary_decode", out), out.shape[0],
           (cupy.ascontiguousarray(buf), _scalar_array(scale, out.dtype), np.int64(out.shape[0]),
            out))
