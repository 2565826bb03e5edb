"""Kernels of gradient clipping: the Euclidean norm, a scaled copy, and the clip itself.

clip_lambda(g) = min(1, lambda / ||g||_2) g (Erickson and Johansson 2026, docs/papers.md
section 3) needs ||g||_2 and g times a factor. Both kernels take float32 or float64
(fused ``floating``), run without the GIL and accumulate in double (the C of
pyx/clip_math.pxi, which the step kernels of pyx/sgd_steps.pyx also run).
"""
from cython cimport floating

include "clip_math.pxi"


def l2_norm(const floating[::1] g):
    """||g||_2 in double; rescales by max|g_j| when the plain sum of squares overflows."""
    cdef Py_ssize_t d = g.shape[0]
    cdef double norm
    if d == 0:
        return 0.0
    with nogil:
        norm = l2_norm_of(&g[0], d)
    return norm


def scale_into(const floating[::1] g, double factor, floating[::1] out):
    """out = factor * g (the product taken in double, rounded once); out may be g; returns None."""
    cdef Py_ssize_t d = g.shape[0]
    if out.shape[0] != d:
        raise ValueError(f"out has length {out.shape[0]}, g has length {d}")
    if d == 0:
        return
    with nogil:
        scale_vector(&g[0], factor, &out[0], d)


def clip_into(const floating[::1] g, double max_norm, floating[::1] out):
    """out <- clip_lambda(g) = min(1, max_norm / ||g||_2) g, its norm then <= max_norm (shrunk by
    a few ulps when rounding to the dtype would cross it); out may be g. Returns ||g||_2 (a
    float); when it is not finite out is left as it is. Checks are the caller's
    (mpitrain.clip.clip_by_norm)."""
    cdef Py_ssize_t d = g.shape[0]
    cdef double norm
    cdef double eps = 2.0 ** -23 if floating is float else 2.0 ** -52  # the dtype's machine epsilon
    if out.shape[0] != d:
        raise ValueError(f"out has length {out.shape[0]}, g has length {d}")
    if d == 0:
        return 0.0
    with nogil:
        norm = clip_vector(&g[0], &out[0], d, max_norm, eps)
    return norm
