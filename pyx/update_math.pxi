# The fused SGD update (included by pyx/vector.pyx and pyx/sgd_steps.pyx): one statement of the
# arithmetic that scaled_update exposes and the fused blocks take at every step.

from cython cimport floating


cdef inline void scaled_step(floating* x, const floating* g, double eta, double beta,
                             Py_ssize_t d) noexcept nogil:
    """x <- beta (x - eta g) in one pass; with beta = 1, x <- x - eta g. Every bit equals
    ``g *= eta; x -= g; x *= beta`` in NumPy (eta and beta rounded to x's dtype first)."""
    cdef floating a = <floating>eta
    cdef floating b = <floating>beta
    cdef Py_ssize_t j
    if beta == 1.0:
        for j in range(d):
            x[j] = x[j] - a * g[j]
    else:
        for j in range(d):
            x[j] = b * (x[j] - a * g[j])


cdef extern from "copied_step.h":
    void mpt_copied_step_f32(float* x, float* g, const float* src, double eta, double beta, Py_ssize_t n) noexcept nogil
    void mpt_copied_step_f64(double* x, double* g, const double* src, double eta, double beta, Py_ssize_t n) noexcept nogil


cdef inline void copied_step(floating* x, floating* g, const floating* src, double eta, double beta,
                             Py_ssize_t d) noexcept nogil:
    """g <- src and x <- beta (x - eta src) in one pass: every bit of copying src into g and then
    ``scaled_step(x, g, eta, beta, d)``, reading src once (pyx/copied_step.h: the same arithmetic,
    with g written past the cache on x86-64)."""
    if floating is float:
        mpt_copied_step_f32(x, g, src, eta, beta, d)
    else:
        mpt_copied_step_f64(x, g, src, eta, beta, d)
