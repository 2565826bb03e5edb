# cython: language_level=3
"""The textbook SGD loop for L2-regularised logistic regression on CSR rows, in plain C.

This is the yardstick of ``python -m mpitrain bench steps``: what one SGD step costs when
nothing but the math runs. Each step t, on rows a_i (CSR, float64), labels y_i in {-1, +1},
parameters x (float64, length d), mini-batch b, step size eta and L2 weight lambda:

    draw b row indices i (splitmix64, then ``% n``; with replacement)
    g = 0                                                      (dense pass over d)
    for each i:  z_i = a_i . x                                 (sparse dot)
                 c_i = -y_i sigmoid(-y_i z_i)                  (logistic derivative)
                 g  += c_i a_i                                 (sparse axpy)
    g = g / b + lambda x                                       (dense pass: the L2 term)
    x = x - eta g                                              (dense pass: the update)

which is the mini-batch gradient of mpitrain's objective (mpitrain.objectives: the mean of
f_i over the batch plus (lambda/2)||x||^2) and the step of sync SGD on one rank. It is kept
the plain loop on purpose (no SIMD, no fused passes, no prefetching): it is the reference
that mpitrain's per-step overhead is measured against, not a tuned kernel. Its random rows
are not mpitrain's sampling stream (numpy PCG64); only the cost is compared.

``rows`` replaces the random draws with given indices (the test compares x with a NumPy
statement of the same math). The column indices of the CSR matrix are trusted (they must
be < d): checking them would cost a pass over all nonzeros in every call.
"""
from libc.math cimport exp
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc


cdef inline uint64_t splitmix64(uint64_t* state) noexcept nogil:
    """The next number of Steele, Lea and Flood's splitmix64 stream (state advances)."""
    cdef uint64_t z
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline double sigmoid(double s) noexcept nogil:
    return 1.0 / (1.0 + exp(-s))


cdef void sgd_steps(const double* data, const int32_t* indices, const int32_t* indptr, Py_ssize_t n,
                    const double* labels, double* x, double* g, Py_ssize_t d, Py_ssize_t steps,
                    Py_ssize_t b, double eta, double lam, uint64_t seed, const int64_t* rows) noexcept nogil:
    """``steps`` SGD steps in place on x; g (length d) holds the last step's gradient."""
    cdef uint64_t state = seed
    cdef Py_ssize_t t, i, j, k, r
    cdef double z, y, c
    for t in range(steps):
        for j in range(d):
            g[j] = 0.0
        for i in range(b):
            if rows != NULL:
                r = <Py_ssize_t>rows[t * b + i]
            else:
                r = <Py_ssize_t>(splitmix64(&state) % <uint64_t>n)
            z = 0.0
            for k in range(indptr[r], indptr[r + 1]):
                z += data[k] * x[indices[k]]
            y = labels[r]
            c = -y * sigmoid(-y * z)
            for k in range(indptr[r], indptr[r + 1]):
                g[indices[k]] += c * data[k]
        for j in range(d):
            g[j] = g[j] / b + lam * x[j]
        for j in range(d):
            x[j] -= eta * g[j]


def reference_loop(const double[::1] data, const int32_t[::1] indices, const int32_t[::1] indptr,
                   const double[::1] labels, double[::1] x, Py_ssize_t steps, Py_ssize_t b,
                   double eta, double lam, uint64_t seed, const int64_t[::1] rows=None,
                   double[::1] g=None):
    """Run ``steps`` textbook SGD steps (module doc) on x in place, without the GIL; returns None.

    data, indices, indptr: a CSR matrix with n = len(indptr) - 1 rows and d = len(x)
    columns (float64, int32, int32); labels: (n,) float64 in {-1, +1}; seed: the
    splitmix64 state of the row draws (one call, one stream). rows: None, or (steps * b,)
    int64 row indices used in order instead of the draws. g: None, or a (d,) float64
    buffer that receives the last step's gradient (``bench steps`` Allreduces it);
    without it a scratch buffer is allocated for the call.
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef Py_ssize_t d = x.shape[0]
    cdef Py_ssize_t i
    cdef double* gp
    cdef const int64_t* rp = NULL
    if n < 1 or labels.shape[0] != n:
        raise ValueError(f"need at least one row and one label per row; got {n} rows, {labels.shape[0]} labels")
    if b < 1 or steps < 0:
        raise ValueError(f"b must be >= 1 and steps >= 0; got b = {b}, steps = {steps}")
    if g is not None and g.shape[0] != d:
        raise ValueError(f"g has {g.shape[0]} entries, x has {d}")
    if rows is not None:
        if rows.shape[0] != steps * b:
            raise ValueError(f"rows must hold steps * b = {steps * b} indices, got {rows.shape[0]}")
        for i in range(rows.shape[0]):
            if rows[i] < 0 or rows[i] >= n:
                raise IndexError(f"row index {rows[i]} is outside [0, {n})")
        if rows.shape[0] > 0:
            rp = &rows[0]
    if steps == 0 or d == 0:
        return
    gp = &g[0] if g is not None else <double*>malloc(d * sizeof(double))
    if gp == NULL:
        raise MemoryError()
    with nogil:
        sgd_steps(&data[0], &indices[0], &indptr[0], n, &labels[0], &x[0], gp, d, steps, b,
                  eta, lam, seed, rp)
    if g is None:
        free(gp)
