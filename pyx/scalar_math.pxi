# Scalar functions of the logistic loss, shared by the linear models' kernels (row_math.pxi) and
# the networks' (network_math.pxi): one statement of each, stable for every finite argument.

from libc.math cimport exp, log1p


cdef inline double sigmoid(double t) noexcept nogil:
    """1 / (1 + exp(-t)) without overflow for either sign of t."""
    cdef double e
    if t >= 0.0:
        return 1.0 / (1.0 + exp(-t))
    e = exp(t)
    return e / (1.0 + e)


cdef inline double softplus_neg(double m) noexcept nogil:
    """log(1 + exp(-m)) = max(-m, 0) + log1p(exp(-|m|)), finite for every finite m."""
    if m >= 0.0:
        return log1p(exp(-m))
    return -m + log1p(exp(m))
