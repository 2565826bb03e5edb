"""GPU twin of ``mpitrain._native.clip``: ||g||_2 in double, a scaled copy and the clip, on CuPy arrays."""
import cupy
import numpy as np

_SUM_SQUARES = cupy.ReductionKernel("T x", "float64 y", "(double)x * (double)x", "a + b",
                                    "y = a", "0", "mpitrain_clip_sum_squares")
_SCALE = cupy.ElementwiseKernel("T g, float64 factor", "T out", "out = (T)(factor * (double)g)",
                                "mpitrain_clip_scale")


def l2_norm(g):
    """||g||_2 in double (a float); rescales by max|g_j| when the sum of squares overflows."""
    total = float(_SUM_SQUARES(g))
    if not np.isinf(total):
        return float(np.sqrt(total))
    biggest = float(cupy.abs(g).max())
    if np.isinf(biggest):
        return biggest
    return biggest * float(np.sqrt(float(_SUM_SQUARES(g.astype(np.float64) / biggest))))


def scale_into(g, factor, out):
    """out = factor * g (product in double, rounded once); out may be g."""
    if out.shape[0] != g.shape[0]:
        raise ValueError(f"out has length {out.shape[0]}, g has length {g.shape[0]}")
    _SCALE(g, np.float64(factor), out)


def clip_into(g, max_norm, out):
    """out <- min(1, max_norm / ||g||_2) g, shrunk by 1 - 2 eps until its norm is <= max_norm
    (the steps of pyx/clip_math.pxi's clip_vector); out may be g. Returns ||g||_2; out is left as
    it is when that is not finite."""
    norm = l2_norm(g)
    if not np.isfinite(norm):
        return norm
    if norm <= max_norm:
        if out is not g:
            out[...] = g
        return norm
    scale_into(g, max_norm / norm, out)
    shrink = 1.0 - 2.0 * float(np.finfo(g.dtype).eps)
    while l2_norm(out) > max_norm:
        scale_into(out, shrink, out)
    return norm
