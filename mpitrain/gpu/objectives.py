"""GPU twin of ``mpitrain._native.objectives``: loss and gradient of the linear models on
CuPy arrays (dense rows) or a cupyx.scipy.sparse CSR matrix.

Margins z = A x and the gradient's sum A^T c run in the features' dtype (cuBLAS / cuSPARSE);
the per-row terms (the data term and its slope, with the overflow-free logistic formulas of
the CPU kernels) run in double in ``cuda/objectives.cu``; out = scale * sum + l2 x is formed in
double and rounded once. The CPU kernels accumulate every sum in double, so results agree
within float rounding of the dtype (float64: ~1e-12 relative; float32: ~1e-5), not bit for
bit. The CPU's ``work`` argument is accepted and ignored. The matrix is passed as one object
(``Objective`` holds ``(matrix,)`` where the CPU holds ``(data, indices, indptr)``).
"""
import cupy
import numpy as np

from mpitrain.gpu import launch, raw_module

LOSS_KINDS = {"logistic": 0, "least_squares": 1}

_MODULE = raw_module("objectives")
_FINISH = cupy.ElementwiseKernel(
    "T w, T x, float64 scale, float64 l2", "T out",
    "out = (T)(scale * (double)w + l2 * (double)x)", "mpitrain_finish_gradient")
_SQUARES = cupy.ReductionKernel("T x", "float64 y", "(double)x * (double)x", "a + b", "y = a",
                                "0", "mpitrain_objective_squared_norm")


def _selected(matrix, labels, rows):
    """(rows of the matrix, their labels in double) for rows (None: all; int64, repeats ok)."""
    if rows is None:
        return matrix, labels.astype(np.float64)
    rows = cupy.asarray(rows, dtype=np.int64)
    n = matrix.shape[0]
    if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= n):
        raise IndexError(f"a row index is outside [0, {n})")
    return matrix[rows], labels[rows].astype(np.float64)


def _terms(kind, matrix, labels, x, rows):
    """(selected rows, slopes, losses) in double for the selected rows."""
    a, y = _selected(matrix, labels, rows)
    z = cupy.ascontiguousarray((a @ x).astype(np.float64)).ravel()
    slope = cupy.empty_like(z)
    loss = cupy.empty_like(z)
    launch(_MODULE.get_function("row_terms"), z.shape[0],
           (np.int32(kind), z, cupy.ascontiguousarray(y), np.int64(z.shape[0]), slope, loss))
    return a, slope, loss


def _loss_sum(kind, matrix, labels, x, rows=None):
    if rows is not None and len(rows) == 0:
        return 0.0
    return float(_terms(kind, matrix, labels, x, rows)[2].sum())


def _gradient(kind, matrix, labels, x, rows, scale, l2, work, out):
    if out.shape[0] != x.shape[0]:
        raise ValueError("x and out must have length d")
    a, slope, _ = _terms(kind, matrix, labels, x, rows)
    summed = a.T @ slope.astype(x.dtype)  # sum_i c_i a_i, shape (d,)
    _FINISH(cupy.ascontiguousarray(summed).ravel(), x, np.float64(scale), np.float64(l2), out)


def csr_loss_sum(kind, matrix, labels, x, rows=None):
    """sum over rows (all if None) of f_i(x), matrix a cupyx CSR matrix; a float."""
    return _loss_sum(kind, matrix, labels, x, rows)


def csr_gradient(kind, matrix, labels, x, rows, scale, l2, work, out):
    """out = scale * sum over rows of grad f_i(x) + l2 * x (CSR); returns None."""
    _gradient(kind, matrix, labels, x, rows, scale, l2, work, out)


def dense_loss_sum(kind, features, labels, x, rows=None):
    """sum over rows (all if None) of f_i(x), features a (n, d) CuPy array; a float."""
    return _loss_sum(kind, features, labels, x, rows)


def dense_gradient(kind, features, labels, x, rows, scale, l2, work, out):
    """out = scale * sum over rows of grad f_i(x) + l2 * x (dense); returns None."""
    _gradient(kind, features, labels, x, rows, scale, l2, work, out)


def squared_norm(x):
    """||x||^2 accumulated in double; a float."""
    return float(_SQUARES(x))
