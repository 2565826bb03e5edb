# The math of gradient clipping (Erickson and Johansson 2026, docs/papers.md s.3), in C without the
# GIL: clip_lambda(g) = min(1, lambda / ||g||_2) g. Included by pyx/clip.pyx (the kernels of
# mpitrain.clip) and pyx/sgd_steps.pyx (SGDSteps.clip_gradients: clipped steps in C blocks), so both
# clip with the same operations in the same order: the same bits.

from cython cimport floating
from libc.math cimport fabs, isfinite, isinf, sqrt
from libc.string cimport memcpy


cdef inline double l2_norm_of(const floating* g, Py_ssize_t d) noexcept nogil:
    """||g||_2 in double; rescales by max|g_j| when the plain sum of squares overflows."""
    cdef Py_ssize_t j
    cdef double total = 0.0, biggest = 0.0, v
    for j in range(d):
        total += <double>g[j] * <double>g[j]
    if not isinf(total):
        return sqrt(total)
    for j in range(d):
        v = fabs(<double>g[j])
        if v > biggest:
            biggest = v
    if isinf(biggest):
        return biggest
    total = 0.0
    for j in range(d):
        v = <double>g[j] / biggest
        total += v * v
    return biggest * sqrt(total)


cdef inline void scale_vector(const floating* g, double factor, floating* out, Py_ssize_t d) noexcept nogil:
    """out = factor * g (the product taken in double, rounded once); out may be g."""
    cdef Py_ssize_t j
    for j in range(d):
        out[j] = <floating>(factor * <double>g[j])


cdef inline double clip_vector(const floating* g, floating* out, Py_ssize_t d, double max_norm,
                             double eps) noexcept nogil:
    """out <- clip_lambda(g) with lambda = max_norm (mpitrain.clip.clip_by_norm; out may be g): g
    itself inside the ball, else g scaled by max_norm / ||g||, then by 1 - 2 eps (eps: the dtype's
    machine epsilon) until its norm is <= max_norm. Returns ||g||_2; when that is not finite,
    out is not written (clip_by_norm raises)."""
    cdef double norm = l2_norm_of(g, d)
    cdef double shrink = 1.0 - 2.0 * eps
    if not isfinite(norm):
        return norm
    if norm <= max_norm:
        if out != g:
            memcpy(out, g, d * sizeof(floating))
        return norm
    scale_vector(g, max_norm / norm, out, d)
    while l2_norm_of(out, d) > max_norm:
        scale_vector(out, shrink, out, d)
    return norm
