"""GPU twin of ``mpitrain._native.compress_round`` (cuda/compress_round.cu): the same
functions and arguments on CuPy arrays, and the same payload bytes.

Codes are computed per element from (seed, i) with the CPU's counter-based stream, so they
equal the CPU's bit for bit. Header scalars (bucket norms, ||x||_1 / d) are sums in double
whose order differs from the CPU's loop: after rounding to float32 they agree except when
the double sum lies within a few 1e-16 of a float32 rounding boundary; in float64 they may
differ in the last bit. The maximum of ternary is order-free and exact.
"""
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


def _kernel(name, x):
    return _MODULE.get_function(f"{name}_{_SUFFIX[np.dtype(x.dtype)]}")


def _scalar_array(value, dtype):
    """A 1-element device array of dtype holding value (a 0-d/1-element CuPy array or a number)."""
    if isinstance(value, cupy.ndarray):
        return cupy.ascontiguousarray(value.reshape(1).astype(dtype, copy=False))
    return cupy.asarray([value], dtype=dtype)


def natural_encode(x, seed, deterministic, out):
    """Natural compression (or biased rounding when deterministic) of x into out (packed)."""
    n = x.shape[0]
    launch(_kernel("natural_encode", x), -(-n // 8),
           (x, np.int64(n), np.uint64(int(seed) & (2**64 - 1)), np.int32(bool(deterministic)),
            out, np.int64(out.shape[0])))


def natural_decode(buf, out):
    """out_i = sign * 2^(e - bias) from the packed codes."""
    launch(_kernel("natural_decode", out), out.shape[0],
           (cupy.ascontiguousarray(buf), np.int64(buf.shape[0]), np.int64(out.shape[0]), out))


def bucket_norms(x, bucket, p, norms):
    """norms[j] = ||x_bucket_j||_p, accumulated in double, rounded to the dtype (in place)."""
    d, buckets = x.shape[0], norms.shape[0]
    if buckets > 1:
        padded = cupy.zeros(buckets * bucket, dtype=x.dtype)
        padded[:d] = x
        x = padded.reshape(buckets, bucket)
    axis = 1 if buckets > 1 else None
    if p == 2.0:
        total = cupy.sqrt(_SUM_SQUARES(x, axis=axis))
    elif p == 1.0:
        total = _SUM_ABS(x, axis=axis)
    elif p == float("inf"):
        total = _MAX_ABS(x, axis=axis)
    else:
        total = cupy.sum(cupy.abs(x.astype(np.float64)) ** p, axis=axis) ** (1.0 / p)
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
    """Pack the sign bits of x into out; returns ||x||_1 / d in the dtype (a 0-d CuPy array)."""
    n = x.shape[0]
    launch(_kernel("sign_encode", x), -(-n // 8), (x, np.int64(n), out, np.int64(out.shape[0])))
    return (_SUM_ABS(x) / n).astype(x.dtype)


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
