# The per-element math of pyx/network.pyx (included there): row-major gemm through SciPy's BLAS,
# the hidden activations and their derivatives, and the fused head pass (loss, its derivative
# with respect to the outputs, correct predictions). Formulas: the docstring of network.pyx.

from libc.math cimport exp, log, log1p, tanh
from libc.stdint cimport int32_t, int64_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

include "scalar_math.pxi"  # sigmoid, softplus_neg: those of the linear models

cdef enum:
    RELU = 0
    TANH = 1

cdef enum:
    SOFTMAX = 0
    LOGISTIC = 1
    SQUARED = 2

ACTIVATIONS = {"relu": RELU, "tanh": TANH}
HEADS = {"softmax": SOFTMAX, "logistic": LOGISTIC, "squared": SQUARED}


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, const floating* a, int lda,
                      const floating* b, int ldb, floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major C (m, n) = op(A) op(B) + beta C, with op(A) (m, k) and op(B) (k, n); lda, ldb, ldc
    are the row strides of A, B, C as stored.

    A row-major array is the column-major array of its transpose, so this is the column-major
    C^T = op(B)^T op(A)^T: BLAS gemm with the operands swapped and the same transpose flags.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef floating one = 1.0
    if m == 0 or n == 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &one, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &one, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)


cdef inline void activate(int activation, floating* z, Py_ssize_t size) noexcept nogil:
    """z <- relu(z) = max(z, 0) or tanh(z), in place."""
    cdef Py_ssize_t j
    if activation == RELU:
        for j in range(size):  # a select, not a branch: the compiler vectorises it (maxps)
            z[j] = z[j] if z[j] > 0 else 0
    else:
        for j in range(size):
            z[j] = <floating>tanh(<double>z[j])


cdef inline void times_derivative(int activation, const floating* a, floating* delta,
                                  Py_ssize_t size) noexcept nogil:
    """delta <- delta * sigma'(z), from the activation a = sigma(z): relu' = [a > 0], tanh' = 1 - a^2."""
    cdef Py_ssize_t j
    if activation == RELU:
        for j in range(size):
            delta[j] = delta[j] if a[j] > 0 else 0
    else:
        for j in range(size):
            delta[j] = delta[j] * (1 - a[j] * a[j])


cdef inline double softmax_row(const floating* o, Py_ssize_t classes, int32_t y, double scale,
                               floating* delta, Py_ssize_t* correct) noexcept nogil:
    """Cross-entropy log sum_c exp(o_c) - o_y, stabilised by the largest logit m; delta (if not
    NULL) = scale (softmax(o) - e_y); correct += [argmax o == y] (the first largest logit)."""
    cdef double m = o[0], total = 0.0
    cdef Py_ssize_t c, best = 0
    for c in range(1, classes):
        if o[c] > m:
            m, best = o[c], c
    for c in range(classes):
        total += exp(<double>o[c] - m)
    if best == y:
        correct[0] += 1
    if delta != NULL:
        for c in range(classes):
            delta[c] = <floating>(scale * (exp(<double>o[c] - m) / total - (1.0 if c == y else 0.0)))
    return log(total) + m - <double>o[y]


cdef inline double scalar_row(int head, double o, double y, double scale, floating* delta,
                              Py_ssize_t* correct) noexcept nogil:
    """logistic: log(1 + exp(-y o)), d/do = -y sigmoid(-y o), correct when y o > 0;
    squared: 0.5 (o - y)^2, d/do = o - y. delta (if not NULL) = scale d/do."""
    if head == LOGISTIC:
        if y * o > 0.0:
            correct[0] += 1
        if delta != NULL:
            delta[0] = <floating>(scale * -y * sigmoid(-y * o))
        return softplus_neg(y * o)
    if delta != NULL:
        delta[0] = <floating>(scale * (o - y))
    return 0.5 * (o - y) * (o - y)


cdef inline double head_pass(int head, const floating* outputs, Py_ssize_t n_outputs,
                             const floating* labels, const int32_t* classes, const int64_t* rows,
                             Py_ssize_t first, Py_ssize_t count, double scale, floating* delta,
                             Py_ssize_t* correct) noexcept nogil:
    """Sum of the head's loss over ``count`` rows of outputs (count, n_outputs), in double; writes
    delta (count, n_outputs) = scale dloss/doutputs unless delta is NULL; counts correct rows."""
    cdef double total = 0.0
    cdef Py_ssize_t i, r
    cdef floating* row_delta = NULL
    for i in range(count):
        r = first + i if rows == NULL else <Py_ssize_t>rows[first + i]
        if delta != NULL:
            row_delta = delta + i * n_outputs
        if head == SOFTMAX:
            total += softmax_row(outputs + i * n_outputs, n_outputs, classes[r], scale, row_delta, correct)
        else:
            total += scalar_row(head, <double>outputs[i], <double>labels[r], scale, row_delta, correct)
    return total
