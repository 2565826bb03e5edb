"""Loss and gradient kernels of L2-regularised linear models on CSR and dense rows.

For a row a_i with label y_i and margin z_i = a_i . x the data terms are

    logistic       f_i(x) = log(1 + exp(-y_i z_i))      df_i/dz = -y_i sigmoid(-y_i z_i)
    least squares  f_i(x) = 0.5 (z_i - y_i)^2            df_i/dz = z_i - y_i

and grad f_i(x) = (df_i/dz) a_i. This is the objective of the Local SGD experiment
(Stich 2019, PAPERS.md section 1): f = (1/n) sum_i f_i + (l2/2)||x||^2, l2 = 1/n.

Every kernel has one source for float32 and float64 (fused ``floating``: the matrix
values, labels, x and out share one dtype), runs its loop without the GIL and
accumulates in double: margins, loss sums and gradient sums (in the caller's double
``work`` buffer of length d, so that a float32 sum over 50,000 rows keeps its digits).
Rows are an int64 array (repeats allowed, as in sampling with replacement) or None for
all rows. A row index outside [0, n) raises IndexError before anything is written.
Loss kinds are the integers in ``LOSS_KINDS``.
"""
from cython cimport floating
from libc.math cimport exp, log1p
from libc.stdint cimport int32_t, int64_t

cdef enum:
    LOGISTIC = 0
    LEAST_SQUARES = 1

LOSS_KINDS = {"logistic": LOGISTIC, "least_squares": LEAST_SQUARES}


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


cdef Py_ssize_t row_count(object rows, Py_ssize_t n):
    return n if rows is None else len(rows)


def csr_loss_sum(int kind, const floating[::1] data, const int32_t[::1] indices,
                 const int32_t[::1] indptr, const floating[::1] labels, const floating[::1] x,
                 const int64_t[::1] rows=None):
    """sum over rows (all rows if None) of f_i(x) for a CSR matrix; returns a float (double sum)."""
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef Py_ssize_t count = row_count(rows, n)
    cdef const int64_t* rp = NULL if rows is None else &rows[0] if count > 0 else NULL
    cdef double total = 0.0
    cdef Py_ssize_t i, r
    cdef bint ok
    if rows is not None and count == 0:
        return 0.0
    with nogil:
        ok = rows_in_range(rp, count, n)
        if ok:
            for i in range(count):
                r = row_at(rp, i)
                total += row_loss(kind, csr_dot(&data[0], &indices[0], indptr[r], indptr[r + 1], &x[0]),
                                  <double>labels[r])
    if not ok:
        raise IndexError(f"a row index is outside [0, {n})")
    return total


def csr_gradient(int kind, const floating[::1] data, const int32_t[::1] indices,
                 const int32_t[::1] indptr, const floating[::1] labels, const floating[::1] x,
                 const int64_t[::1] rows, double scale, double l2, double[::1] work,
                 floating[::1] out):
    """out = scale * sum over rows (all rows if None) of grad f_i(x) + l2 * x, for a CSR matrix.

    ``work`` (float64, length d) receives the double sum before scaling; returns None.
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef Py_ssize_t d = x.shape[0]
    cdef Py_ssize_t count = row_count(rows, n)
    cdef const int64_t* rp = NULL if rows is None else &rows[0] if count > 0 else NULL
    cdef Py_ssize_t i, r, k
    cdef double c
    cdef bint ok
    if work.shape[0] < d or out.shape[0] != d:
        raise ValueError("work and out must have length d")
    if d == 0:
        return
    with nogil:
        ok = rows_in_range(rp, count, n)
        if ok:
            for k in range(d):
                work[k] = 0.0
            for i in range(count):
                r = row_at(rp, i)
                c = row_slope(kind, csr_dot(&data[0], &indices[0], indptr[r], indptr[r + 1], &x[0]),
                              <double>labels[r])
                for k in range(indptr[r], indptr[r + 1]):
                    work[indices[k]] += c * <double>data[k]
            finish_gradient(&work[0], scale, l2, &x[0], &out[0], d)
    if not ok:
        raise IndexError(f"a row index is outside [0, {n})")


def dense_loss_sum(int kind, const floating[:, ::1] features, const floating[::1] labels,
                   const floating[::1] x, const int64_t[::1] rows=None):
    """sum over rows (all rows if None) of f_i(x) for a C-contiguous (n, d) matrix."""
    cdef Py_ssize_t n = features.shape[0]
    cdef Py_ssize_t d = features.shape[1]
    cdef Py_ssize_t count = row_count(rows, n)
    cdef const int64_t* rp = NULL if rows is None else &rows[0] if count > 0 else NULL
    cdef double total = 0.0
    cdef double z
    cdef Py_ssize_t i, r
    cdef bint ok
    if count == 0:
        return 0.0
    with nogil:
        ok = rows_in_range(rp, count, n)
        if ok:
            for i in range(count):
                r = row_at(rp, i)
                z = dense_dot(&features[r, 0], &x[0], d) if d > 0 else 0.0
                total += row_loss(kind, z, <double>labels[r])
    if not ok:
        raise IndexError(f"a row index is outside [0, {n})")
    return total


def dense_gradient(int kind, const floating[:, ::1] features, const floating[::1] labels,
                   const floating[::1] x, const int64_t[::1] rows, double scale, double l2,
                   double[::1] work, floating[::1] out):
    """out = scale * sum over rows (all rows if None) of grad f_i(x) + l2 * x, dense rows; returns None."""
    cdef Py_ssize_t n = features.shape[0]
    cdef Py_ssize_t d = features.shape[1]
    cdef Py_ssize_t count = row_count(rows, n)
    cdef const int64_t* rp = NULL if rows is None else &rows[0] if count > 0 else NULL
    cdef const floating* a
    cdef Py_ssize_t i, r, k
    cdef double c
    cdef bint ok
    if work.shape[0] < d or out.shape[0] != d or x.shape[0] != d:
        raise ValueError("x, work and out must have length d")
    if d == 0:
        return
    with nogil:
        ok = rows_in_range(rp, count, n)
        if ok:
            for k in range(d):
                work[k] = 0.0
            for i in range(count):
                r = row_at(rp, i)
                a = &features[r, 0]
                c = row_slope(kind, dense_dot(a, &x[0], d), <double>labels[r])
                for k in range(d):
                    work[k] += c * <double>a[k]
            finish_gradient(&work[0], scale, l2, &x[0], &out[0], d)
    if not ok:
        raise IndexError(f"a row index is outside [0, {n})")


def squared_norm(const floating[::1] x):
    """||x||^2 accumulated in double."""
    cdef double total = 0.0
    cdef Py_ssize_t j
    with nogil:
        for j in range(x.shape[0]):
            total += <double>x[j] * <double>x[j]
    return total
