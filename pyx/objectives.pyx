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
            for u in range(distinct):
                work[u] = row_loss(kind, csr_dot(&data[0], &indices[0], indptr[u], indptr[u + 1], &x[0]),
                                   <double>labels[u])
            for i in range(n):
                total += work[row_of[i]]
    if not ok:
        raise IndexError(f"a row_of entry is outside [0, {distinct})")
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
