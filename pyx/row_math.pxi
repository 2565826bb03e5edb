# The row-level math of the linear models (included by pyx/objectives.pyx and pyx/sgd_steps.pyx):
# loss and slope of one row at its margin, sparse and dense dots, and the gradient sums over rows
# (formulas: the docstring of pyx/objectives.pyx). Accumulation in double throughout.

from cython cimport floating
from libc.stdint cimport int32_t, int64_t

include "scalar_math.pxi"

cdef enum:
    LOGISTIC = 0
    LEAST_SQUARES = 1

LOSS_KINDS = {"logistic": LOGISTIC, "least_squares": LEAST_SQUARES}


cdef inline double row_loss(int kind, double z, double y) noexcept nogil:
    if kind == LOGISTIC:
        return softplus_neg(y * z)
    return 0.5 * (z - y) * (z - y)


cdef inline double row_slope(int kind, double z, double y) noexcept nogil:
    """d f_i / d z at margin z."""
    if kind == LOGISTIC:
        return -y * sigmoid(-y * z)
    return z - y


cdef inline Py_ssize_t row_at(const int64_t* rows, Py_ssize_t i) noexcept nogil:
    if rows == NULL:
        return i
    return <Py_ssize_t>rows[i]


cdef inline bint rows_in_range(const int64_t* rows, Py_ssize_t count, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if rows == NULL:
        return True
    for i in range(count):
        if rows[i] < 0 or rows[i] >= n:
            return False
    return True


cdef inline double csr_dot(const floating* data, const int32_t* indices, Py_ssize_t start,
                           Py_ssize_t end, const floating* x) noexcept nogil:
    cdef double acc = 0.0
    cdef Py_ssize_t k
    for k in range(start, end):
        acc += <double>data[k] * <double>x[indices[k]]
    return acc


cdef inline double dense_dot(const floating* a, const floating* x, Py_ssize_t d) noexcept nogil:
    """Dot product in double with four independent accumulators (the adds pipeline)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t j = 0
    while j + 4 <= d:
        s0 += <double>a[j] * <double>x[j]
        s1 += <double>a[j + 1] * <double>x[j + 1]
        s2 += <double>a[j + 2] * <double>x[j + 2]
        s3 += <double>a[j + 3] * <double>x[j + 3]
        j += 4
    while j < d:
        s0 += <double>a[j] * <double>x[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


cdef inline void finish_gradient(const double* work, double scale, double l2, const floating* x,
                                 floating* out, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(d):
        out[j] = <floating>(scale * work[j] + l2 * <double>x[j])


cdef inline void csr_slope_sum(int kind, const floating* data, const int32_t* indices, const int32_t* indptr,
                               const floating* labels, const floating* x, const int64_t* rows,
                               Py_ssize_t count, double* work, Py_ssize_t d) noexcept nogil:
    """work = sum over rows (all rows if NULL) of (df_i/dz) a_i, in double, CSR rows in range."""
    cdef Py_ssize_t i, r, k
    cdef double c
    for k in range(d):
        work[k] = 0.0
    for i in range(count):
        r = row_at(rows, i)
        c = row_slope(kind, csr_dot(data, indices, indptr[r], indptr[r + 1], x), <double>labels[r])
        for k in range(indptr[r], indptr[r + 1]):
            work[indices[k]] += c * <double>data[k]


cdef inline void dense_slope_sum(int kind, const floating* features, Py_ssize_t row_stride,
                                 const floating* labels, const floating* x, const int64_t* rows,
                                 Py_ssize_t count, double* work, Py_ssize_t d) noexcept nogil:
    """work = sum over rows (all rows if NULL) of (df_i/dz) a_i, in double; dense rows in range,
    row r at ``features + r * row_stride``."""
    cdef const floating* a
    cdef Py_ssize_t i, k, r
    cdef double c
    for k in range(d):
        work[k] = 0.0
    for i in range(count):
        r = row_at(rows, i)
        a = features + r * row_stride
        c = row_slope(kind, dense_dot(a, x, d), <double>labels[r])
        for k in range(d):
            work[k] += c * <double>a[k]
