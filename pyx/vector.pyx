# cython: language_level=3
"""Vector updates fused into one pass (float32 and float64 from one source, GIL released)."""
from cython cimport floating


def scaled_update(floating[::1] x, floating[::1] g, double alpha, double beta=1.0):
    """x <- beta * (x + alpha * g) in one pass over x and g; returns None.

    With beta = 1 this is the SGD step x -= eta g (alpha = -eta). With beta = w_k it also
    applies a rank's averaging weight, so the following Allreduce needs no pass of its own.
    The arithmetic (and so every bit) equals ``g *= -alpha; x -= g; x *= beta`` in NumPy.
    """
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating a = <floating>(-alpha)
    cdef floating b = <floating>beta
    if g.shape[0] != n:
        raise ValueError(f"g has {g.shape[0]} entries, x has {n}")
    with nogil:
        if beta == 1.0:
            for i in range(n):
                x[i] = x[i] - a * g[i]
        else:
            for i in range(n):
                x[i] = b * (x[i] - a * g[i])
