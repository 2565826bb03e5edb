# cython: language_level=3
"""Vector updates fused into one pass (float32 and float64 from one source, GIL released)."""
from cython cimport floating

include "update_math.pxi"


def scaled_update(floating[::1] x, floating[::1] g, double alpha, double beta=1.0):
    """x <- beta * (x + alpha * g) in one pass over x and g; returns None.

    With beta = 1 this is the SGD step x -= eta g (alpha = -eta). With beta = w_k it also
    applies a rank's averaging weight, so the following Allreduce needs no pass of its own.
    The arithmetic (and so every bit) equals ``g *= -alpha; x -= g; x *= beta`` in NumPy.
    """
    cdef Py_ssize_t n = x.shape[0]
    if g.shape[0] != n:
        raise ValueError(f"g has {g.shape[0]} entries, x has {n}")
    if n == 0:
        return
    with nogil:
        scaled_step(&x[0], &g[0], -alpha, beta, n)

def copy_and_update(floating[::1] x, floating[::1] g, const floating[::1] src, double alpha, double beta=1.0):
    """g <- src, then x <- beta * (x + alpha * g), in one pass over the three; returns None.

    Every bit equals ``g[:] = src; scaled_update(x, g, alpha, beta)``: a gradient that arrives in
    a buffer of its own (PyTorch's autograd) lands in g and steps x while it is read once.
    src must not overlap x or g.
    """
    cdef Py_ssize_t n = x.shape[0]
    if g.shape[0] != n or src.shape[0] != n:
        raise ValueError(f"x, g and src must have one length, got {n}, {g.shape[0]} and {src.shape[0]}")
    if n == 0:
        return
    with nogil:
        copied_step(&x[0], &g[0], &src[0], -alpha, beta, n)


ctypedef fused source_t:
    float
    double


def add_weighted(floating[::1] out, const source_t[::1] src, double weight):
    """out <- out + w * src, with w = weight rounded to out's dtype and src converted to it,
    in one pass; returns None.

    Every bit equals NumPy's ``out += np.multiply(src, out.dtype.type(weight), dtype=out.dtype)``
    (a product rounded, then a sum rounded: no fused multiply-add). It adds one rank's decoded
    payload, weighted, into the mean of a compressed exchange
    (mpitrain.algorithms.compressed_exchange.average_payloads).
    """
    cdef Py_ssize_t n = out.shape[0], i
    if src.shape[0] != n:
        raise ValueError(f"src has {src.shape[0]} entries, out has {n}")
    cdef floating w = <floating>weight
    with nogil:
        for i in range(n):
            out[i] = out[i] + (<floating>src[i]) * w
