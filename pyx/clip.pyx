"""Kernels of gradient clipping: the Euclidean norm and a scaled copy.

clip_lambda(g) = min(1, lambda / ||g||_2) g (Erickson and Johansson 2026, docs/papers.md
section 3) needs ||g||_2 and g times a factor. Both kernels take float32 or float64
(fused ``floating``), run without the GIL and accumulate in double.
"""
from cython cimport floating
from libc.math cimport fabs, sqrt, isinf


def l2_norm(const floating[::1] g):
    """||g||_2 in double; rescales by max|g_j| when the plain sum of squares overflows."""
    cdef Py_ssize_t j, d = g.shape[0]
    cdef double total = 0.0, biggest = 0.0, v, norm
    with nogil:
        for j in range(d):
            total += <double>g[j] * <double>g[j]
        if isinf(total):
            for j in range(d):
                v = fabs(<double>g[j])
                if v > biggest:
                    biggest = v
            if not isinf(biggest):
                total = 0.0
                for j in range(d):
                    v = <double>g[j] / biggest
                    total += v * v
                norm = biggest * sqrt(total)
            else:
                norm = biggest
        else:
            norm = sqrt(total)
    return norm


def scale_into(const floating[::1] g, double factor, floating[::1] out):
    """out = factor * g (the product taken in double, rounded once); out may be g; returns None."""
    cdef Py_ssize_t j, d = g.shape[0]
    if out.shape[0] != d:
        raise ValueError(f"out has length {out.shape[0]}, g has length {d}")
    with nogil:
        for j in range(d):
            out[j] = <floating>(factor * <double>g[j])
