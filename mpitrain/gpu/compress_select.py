"""GPU twin of ``mpitrain._native.compress_select``: Top-k and Rand-k supports on CuPy
(the array algorithms of ``mpitrain.gpu.selection``, index for index the CPU's)."""
import cupy

from mpitrain.gpu import selection


def topk_indices(x, k):
    """int64[k] (CuPy), ascending: the k entries of largest magnitude, ties to the smaller index."""
    return selection.topk_indices(cupy, cupy.ascontiguousarray(x), int(k))


topk_exact = topk_indices


def randk_indices(seed, d, k):
    """int64[k] (CuPy), ascending: the Rand-k subset for (seed, d, k), as on the CPU."""
    return selection.randk_indices(cupy, seed, int(d), int(k))
