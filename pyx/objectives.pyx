"""Loss and gradient kernels of L2-regularised linear models on CSR and dense rows.

For a row a_i with label y_i and margin z_i = a_i . x the data terms are

    logistic       f_i(x) = log(1 + exp(-y_i z_i))      df_i/dz = -y_i sigmoid(-y_i z_i)
    least squares  f_i(x) = 0.5 (z_i - y_i)^2            df_i/dz = z_i - y_i

and grad f_i(x) = (df_i/dz) a_i. This is the objective of the Local SGD experiment
(Stich 2019, docs/papers.md s.1): f = (1/n) sum_i f_i + (l2/2)||x||^2, l2 = 1/n.

Every kernel has one source for float32 and float64 (fused ``floating``: the matrix
values, labels, x and out share one dtype), runs its loop without the GIL and
accumulates in double: margins, loss sums and gradient sums (in the caller's double
``work`` buffer of length d, so that a float32 sum over 50,000 rows keeps its digits).
Rows are an int64 array (repeats allowed, as in sampling with replacement) or None for
all rows. A row index outside [0, n) raises IndexError before anything is written.
Loss kinds are the integers in ``LOSS_KINDS``.

Steps in blocks (the same math, many steps a call): pyx/sgd_steps.pyx.
"""
import numpy as np

from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from cython cimport floating
from libc.stdint cimport int32_t, int64_t, uint64_t
from numpy.random cimport bitgen_t
from libc.math cimport NAN

include "row_math.pxi"
include "row_draws.pxi"


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


def csr_loss_sum_repeated(int kind, const floating[::1] data, const int32_t[::1] indices,
                          const int32_t[::1] indptr, const floating[::1] labels, const floating[::1] x,
                          const int64_t[::1] row_of, double[::1] work):
    """sum over i of f_{row_of[i]}(x), in order of i, for the distinct rows of a CSR matrix
    (``indptr``: one entry per distinct row): each distinct row's loss is computed once (into
    ``work``), then the losses are added in the order of ``row_of``. On a matrix whose row i
    is distinct row row_of[i], the same additions of the same doubles as ``csr_loss_sum``
    over all rows: the same bits. Returns a float."""
    cdef Py_ssize_t distinct = indptr.shape[0] - 1, n = row_of.shape[0], i, u
    cdef double total = 0.0
    cdef bint ok
    if work.shape[0] < distinct or labels.shape[0] < distinct:
        raise ValueError("work and labels need one entry per distinct row")
    if n == 0:
        return 0.0
    with nogil:
        ok = rows_in_range(&row_of[0], n, distinct)
        if ok:
            csr_margins(&data[0], &indices[0], &indptr[0], distinct, &x[0], &work[0])
            for u in range(distinct):
                work[u] = row_loss(kind, work[u], <double>labels[u])
            for i in range(n):
                total += work[row_of[i]]
    if not ok:
        raise IndexError(f"a row_of entry is outside [0, {distinct})")
    return total


# -- a certified lower bound of the logistic loss sum, for deciding "above a threshold" -------
# log1p(exp(-u)) for u >= 0 is convex with second derivative at most 1/4, so its chord between
# table points u_j = j / SOFTPLUS_STEPS lies above it by at most (1/4) h^2 / 8 = h^2 / 32 (h =
# 1 / SOFTPLUS_STEPS): the chord minus that is a lower bound, and an exp and a log1p become a
# table look-up. Beyond SOFTPLUS_SPAN the value is below 4.3e-18 and 0 bounds it.
cdef enum:
    SOFTPLUS_STEPS = 64  # table points per unit of u (h = 1/64)
    SOFTPLUS_SPAN = 40  # the table covers u in [0, 40]
SOFTPLUS_TABLE_SIZE = SOFTPLUS_STEPS * SOFTPLUS_SPAN + 1
#: chord error h^2 / 32 plus the table's own rounding (a few ulp of values below 0.7)
SOFTPLUS_SLACK = 1.0 / (32.0 * SOFTPLUS_STEPS * SOFTPLUS_STEPS) + 1e-15


def softplus_table():
    """log1p(exp(-j / SOFTPLUS_STEPS)) for j = 0 .. SOFTPLUS_STEPS * SOFTPLUS_SPAN (float64)."""
    return np.log1p(np.exp(-np.arange(SOFTPLUS_TABLE_SIZE, dtype=np.float64) / SOFTPLUS_STEPS))


cdef void csr_margins(const floating* data, const int32_t* indices, const int32_t* indptr,
                      Py_ssize_t rows, const floating* x, double* out) noexcept nogil:
    """out[u] = csr_dot of row u, for u < rows: the same bits (each row's products added in
    its own order, from 0.0), four rows at a time. A row's sum is a chain of dependent
    additions (about 4 cycles a term); four rows' chains run side by side, and on rows sorted
    by length (as DistinctLossSum passes them here) the four have one length almost always."""
    cdef Py_ssize_t u = 0, k, m, s0, s1, s2, s3, n0, n1, n2, n3
    cdef double a0, a1, a2, a3
    while u + 4 <= rows:
        s0, s1, s2, s3 = indptr[u], indptr[u + 1], indptr[u + 2], indptr[u + 3]
        n0, n1, n2, n3 = s1 - s0, s2 - s1, s3 - s2, indptr[u + 4] - s3
        m = min(min(n0, n1), min(n2, n3))
        a0 = a1 = a2 = a3 = 0.0
        for k in range(m):
            a0 += <double>data[s0 + k] * <double>x[indices[s0 + k]]
            a1 += <double>data[s1 + k] * <double>x[indices[s1 + k]]
            a2 += <double>data[s2 + k] * <double>x[indices[s2 + k]]
            a3 += <double>data[s3 + k] * <double>x[indices[s3 + k]]
        for k in range(m, n0):
            a0 += <double>data[s0 + k] * <double>x[indices[s0 + k]]
        for k in range(m, n1):
            a1 += <double>data[s1 + k] * <double>x[indices[s1 + k]]
        for k in range(m, n2):
            a2 += <double>data[s2 + k] * <double>x[indices[s2 + k]]
        for k in range(m, n3):
            a3 += <double>data[s3 + k] * <double>x[indices[s3 + k]]
        out[u], out[u + 1], out[u + 2], out[u + 3] = a0, a1, a2, a3
        u += 4
    while u < rows:
        out[u] = csr_dot(data, indices, indptr[u], indptr[u + 1], x)
        u += 1


def csr_logistic_loss_lower(const floating[::1] data, const int32_t[::1] indices,
                            const int32_t[::1] indptr, const floating[::1] labels, const floating[::1] x,
                            const double[::1] counts, const double[::1] table, double[::1] work):
    """A lower bound of the logistic loss sum that ``csr_loss_sum_repeated`` computes for these
    distinct rows (in any order; ``work``: one double per row), row u counted ``counts[u]``
    times (a float no larger than that kernel's
    result, for any x), or NaN when a margin is not finite or beyond 1e6 in size (then only
    the exact sum can tell).

    Each row's margin is ``csr_dot``'s (by ``csr_margins``), the same bits as the exact kernel's; its loss
    log(1 + exp(-t)), t = y z, is bounded below by the chord of ``table`` minus
    ``SOFTPLUS_SLACK`` (above: the chord is within h^2 / 32 of the convex function), plus -t
    when t < 0 (per row below libm's value: the slack exceeds the table's and the arithmetic's
    rounding, a few ulp of values below 0.7, and rounding is monotone). The sum is then lowered by
    (1e-9 + 4.5e-16 n) of its size, n = the rows counted: the rounding of both sums is at most
    n eps (eps = 1.1e-16) of their size each."""
    cdef Py_ssize_t distinct = indptr.shape[0] - 1, u, j
    cdef double acc = 0.0, rows = 0.0, t, a, s, f, g, slack = SOFTPLUS_SLACK
    if counts.shape[0] < distinct or labels.shape[0] < distinct or work.shape[0] < distinct:
        raise ValueError("counts, labels and work need one entry per distinct row")
    if table.shape[0] != SOFTPLUS_TABLE_SIZE:
        raise ValueError(f"table must be softplus_table() ({SOFTPLUS_TABLE_SIZE} entries)")
    if distinct == 0:
        return 0.0
    with nogil:
        csr_margins(&data[0], &indices[0], &indptr[0], distinct, &x[0], &work[0])
        for u in range(distinct):
            t = <double>labels[u] * work[u]
            a = t if t >= 0.0 else -t
            if not a <= 1e6:  # NaN, inf or huge: undecided
                acc = NAN
                break
            if a < SOFTPLUS_SPAN:
                s = a * SOFTPLUS_STEPS  # exact: a power-of-two scaling
                j = <Py_ssize_t>s
                f = s - j
                g = table[j] + f * (table[j + 1] - table[j]) - slack
            else:
                g = -slack
            acc += counts[u] * (g if t >= 0.0 else a + g)
            rows += counts[u]
    if acc != acc:
        return float("nan")
    return acc - (1e-9 + 4.5e-16 * rows) * (acc if acc >= 0.0 else -acc)


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
    cdef bint ok
    if work.shape[0] < d or out.shape[0] != d:
        raise ValueError("work and out must have length d")
    if d == 0:
        return
    with nogil:
        ok = rows_in_range(rp, count, n)
        if ok:
            csr_slope_sum(kind, &data[0], &indices[0], &indptr[0], &labels[0], &x[0], rp, count, &work[0], d)
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
    cdef bint ok
    if work.shape[0] < d or out.shape[0] != d or x.shape[0] != d:
        raise ValueError("x, work and out must have length d")
    if d == 0:
        return
    with nogil:
        ok = rows_in_range(rp, count, n)
        if ok:
            dense_slope_sum(kind, &features[0, 0], features.strides[0] // sizeof(floating), &labels[0], &x[0],
                            rp, count, &work[0], d)
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


def bounded_integers(object bit_generator, int64_t n, int64_t[::1] out):
    """out[:] = integers uniform on [0, n) drawn from ``bit_generator`` (a numpy BitGenerator, under
    its lock): the numbers of ``numpy.random.Generator(bit_generator).integers(0, n, size=len(out))``,
    which leave the generator in the same state; returns None."""
    cdef bitgen_t* bitgen = bitgen_of(bit_generator)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if out.shape[0] == 0:
        return
    with bit_generator.lock, nogil:
        draw_rows(bitgen, <uint64_t>(n - 1), out.shape[0], &out[0])
