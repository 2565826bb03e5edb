"""GPU twin of ``mpitrain._native.clip``: ||g||_2 in double and a scaled copy, on CuPy arrays."""
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
