"""Objectives: Cython kernels against NumPy references and finite differences, both losses,
CSR and dense, float32 and float64, full data and mini-batches with repeated rows.

Tolerances: float64 results agree with the NumPy reference to rtol 1e-12; float32 losses
(double accumulation of exactly representable products) to rtol 1e-10 and float32
gradients (rounded once to float32) to rtol 1e-6 of the largest entry; float64
gradients agree with central differences (h = 1e-6) to 1e-7.
"""
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit

from mpitrain.objectives import OBJECTIVES, LeastSquares, LogisticRegression, Objective, make_objective

NAMES = sorted(name for name, cls in OBJECTIVES.items() if issubclass(cls, Objective))  # the linear models
LAYOUTS = ["csr", "dense"]
DTYPES = [np.float32, np.float64]


def make_problem(name, layout, dtype, n=60, d=15, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, d)) * (rng.random((n, d)) < 0.3)
    dense[3] = 0.0  # an empty row
    labels = np.where(rng.random(n) < 0.5, -1.0, 1.0) if name == "logistic" else rng.standard_normal(n)
    features = sp.csr_matrix(dense.astype(dtype)) if layout == "csr" else dense.astype(dtype)
    x = (rng.standard_normal(d) * 0.5).astype(dtype)
    return features, labels.astype(dtype), x


def reference(name, features, labels, x, l2, rows=None):
    """(mean loss + (l2/2)||x||^2, its gradient) in float64 NumPy."""
    a = features.toarray() if sp.issparse(features) else np.asarray(features)
    a, y, x = a.astype(np.float64), labels.astype(np.float64), x.astype(np.float64)
    if rows is not None:
        a, y = a[rows], y[rows]
    z = a @ x
    if name == "logistic":
        losses, slopes = np.logaddexp(0.0, -y * z), -y * expit(-y * z)
    else:
        losses, slopes = 0.5 * (z - y) ** 2, z - y
    return losses.mean() + 0.5 * l2 * x @ x, a.T @ slopes / len(y) + l2 * x


def assert_gradient_close(actual, expected, dtype):
    if dtype == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-14)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", NAMES)
def test_full_loss_and_gradient_match_numpy(name, layout, dtype):
    features, labels, x = make_problem(name, layout, dtype)
    objective = make_objective(name, features, labels, l2=0.1)
    loss, grad = reference(name, features, labels, x, 0.1)
    assert objective.dtype == dtype and objective.n_samples == 60 and objective.n_features == 15
    assert objective.loss(x) == pytest.approx(loss, rel=1e-10)
    out = objective.gradient(x)
    assert out.dtype == dtype
    assert_gradient_close(out, grad, dtype)
    n = objective.n_samples
    assert objective.loss_sum(x) == pytest.approx(n * (loss - 0.05 * float(x.astype(np.float64) @ x)), rel=1e-10)
    sums = objective.gradient_sum(x, np.empty_like(x))
    assert_gradient_close(sums, n * (grad - 0.1 * x.astype(np.float64)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", NAMES)
def test_batch_gradient_with_repeated_rows_matches_numpy(name, layout, dtype):
    features, labels, x = make_problem(name, layout, dtype, seed=1)
    objective = make_objective(name, features, labels, l2=0.03)
    rows = np.array([5, 5, 0, 59, 3, 5, 17], dtype=np.int64)
    loss, grad = reference(name, features, labels, x, 0.03, rows)
    out = np.full_like(x, np.nan)
    assert objective.batch_gradient(x, rows, out) is out
    assert_gradient_close(out, grad, dtype)
    assert objective.batch_loss(x, rows) == pytest.approx(loss, rel=1e-10)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", NAMES)
def test_gradient_equals_central_differences(name, layout):
    features, labels, x = make_problem(name, layout, np.float64, seed=2)
    objective = make_objective(name, features, labels, l2=0.2)
    h = 1e-6
    numeric = np.empty_like(x)
    for j in range(x.size):
        step = np.zeros_like(x)
        step[j] = h
        numeric[j] = (objective.loss(x + step) - objective.loss(x - step)) / (2 * h)
    np.testing.assert_allclose(objective.gradient(x), numeric, rtol=0, atol=1e-7)
    rows = np.array([1, 1, 2, 40], dtype=np.int64)
    batch_numeric = np.empty_like(x)
    for j in range(x.size):
        step = np.zeros_like(x)
        step[j] = h
        batch_numeric[j] = (objective.batch_loss(x + step, rows) - objective.batch_loss(x - step, rows)) / (2 * h)
    np.testing.assert_allclose(objective.batch_gradient(x, rows, np.empty_like(x)), batch_numeric, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", NAMES)
def test_batch_of_all_rows_equals_gradient(name, layout, dtype):
    features, labels, x = make_problem(name, layout, dtype, seed=3)
    objective = make_objective(name, features, labels, l2=0.5)
    rows = np.arange(objective.n_samples, dtype=np.int64)
    batch = objective.batch_gradient(x, rows, np.empty_like(x))
    np.testing.assert_array_equal(batch, objective.gradient(x))
    assert objective.batch_loss(x, rows) == pytest.approx(objective.loss(x), rel=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("scale", [1e3, 1e5, 1e30])
def test_logistic_is_finite_and_exact_at_huge_margins(layout, dtype, scale):
    dense = np.array([[1.0], [1.0], [-1.0]], dtype=dtype)
    features = sp.csr_matrix(dense) if layout == "csr" else dense
    labels = np.array([1.0, -1.0, 1.0], dtype=dtype)
    objective = LogisticRegression(features, labels, l2=0.0)
    x = np.array([scale], dtype=dtype)
    # margins +scale, -scale, -scale: losses 0, scale, scale
    assert objective.loss_sum(x) == pytest.approx(2 * float(x[0]), rel=1e-12)
    # gradients -y sigmoid(-m) a: row 1 ~ 0, row 2 = +1, row 3 = +1
    gradient = objective.gradient_sum(x, np.empty_like(x))
    assert np.isfinite(gradient).all()
    assert gradient[0] == pytest.approx(2.0, rel=1e-12)
    assert objective.loss_sum(-x) == pytest.approx(float(x[0]), rel=1e-12)
    assert objective.gradient_sum(-x, np.empty_like(x))[0] == pytest.approx(-1.0, rel=1e-12)


def test_logistic_at_zero_is_log_two_and_least_squares_at_zero_is_half_label_square():
    features = sp.csr_matrix(np.eye(4))
    labels = np.array([1.0, -1.0, 2.0, -3.0])
    x = np.zeros(4)
    assert LogisticRegression(features, np.sign(labels), 0.0).loss(x) == pytest.approx(np.log(2.0), rel=1e-15)
    assert LeastSquares(features, labels, 0.0).loss(x) == pytest.approx(0.5 * np.mean(labels**2), rel=1e-15)


def test_float32_sums_accumulate_in_double():
    n = 200_000
    features = np.ones((n, 1), dtype=np.float32)
    labels = np.full(n, 0.1, dtype=np.float32)
    objective = LeastSquares(features, labels, 0.0)
    x = np.zeros(1, dtype=np.float32)
    expected = n * 0.5 * float(np.float32(0.1)) ** 2
    assert objective.loss_sum(x) == pytest.approx(expected, rel=1e-10)  # float32 sums would be off by ~1e-3
    grad = objective.gradient(x)
    assert grad[0] == pytest.approx(-float(np.float32(0.1)), rel=1e-7)


def test_batch_gradient_allocates_nothing_beyond_out():
    features, labels, x = make_problem("logistic", "csr", np.float64, n=500, d=4000, seed=4)
    objective = make_objective("logistic", features, labels, 1e-3)
    rows = np.array([1, 7, 7, 300], dtype=np.int64)
    out = np.empty_like(x)
    objective.batch_gradient(x, rows, out)
    tracemalloc.start()
    for _ in range(50):
        objective.batch_gradient(x, rows, out)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4000 * 8 // 2, f"peak {peak} bytes: something of length d is allocated per call"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rows_out_of_range_raise_index_error(layout):
    features, labels, x = make_problem("logistic", layout, np.float64)
    objective = make_objective("logistic", features, labels, 0.0)
    out = np.zeros_like(x)
    for bad in ([0, 60], [-1]):
        with pytest.raises(IndexError):
            objective.batch_gradient(x, np.array(bad, dtype=np.int64), out)
        with pytest.raises(IndexError):
            objective.batch_loss(x, np.array(bad, dtype=np.int64))
    assert not out.any()


def test_bad_arguments_name_the_argument():
    features, labels, x = make_problem("logistic", "csr", np.float64)
    with pytest.raises(ValueError, match="name"):
        make_objective("hinge", features, labels, 0.1)
    with pytest.raises(ValueError, match="l2"):
        make_objective("logistic", features, labels, -1.0)
    with pytest.raises(ValueError, match="labels"):
        make_objective("logistic", features, labels[:-1], 0.1)
    with pytest.raises(ValueError, match="features"):
        make_objective("logistic", features.astype(np.int64), labels, 0.1)
    objective = make_objective("logistic", features, labels, 0.1)
    with pytest.raises(ValueError, match="x must be a float64"):
        objective.gradient(x.astype(np.float32))
    with pytest.raises(ValueError, match="x must be a float64"):
        objective.loss(x[:-1])
    with pytest.raises(ValueError, match="out"):
        objective.batch_gradient(x, np.array([0], dtype=np.int64), np.empty(3))
    with pytest.raises(ValueError, match="rows"):
        objective.batch_gradient(x, np.array([0], dtype=np.int32), np.empty_like(x))
    with pytest.raises(ValueError, match="rows"):
        objective.batch_gradient(x, np.array([], dtype=np.int64), np.empty_like(x))


def test_int64_csr_indices_and_astype():
    features, labels, x = make_problem("least_squares", "csr", np.float64)
    wide = sp.csr_matrix((features.data, features.indices.astype(np.int64), features.indptr.astype(np.int64)),
                         shape=features.shape)
    objective = LeastSquares(wide, labels, 0.1)
    assert objective.features.indices.dtype == np.int32
    assert objective.loss(x) == pytest.approx(LeastSquares(features, labels, 0.1).loss(x), rel=1e-15)
    single = objective.astype(np.float32)
    assert single.dtype == np.float32 and objective.astype(np.float64) is objective
    assert single.loss(x.astype(np.float32)) == pytest.approx(objective.loss(x), rel=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", NAMES)
def test_hessian_sum_matches_gradient_differences(name, layout):
    features, labels, x = make_problem(name, layout, np.float64, seed=5)
    objective = make_objective(name, features, labels, 0.0)
    hessian = objective.hessian_sum(x)
    h = 1e-6
    for j in range(0, x.size, 4):
        step = np.zeros_like(x)
        step[j] = h
        column = (objective.gradient_sum(x + step, np.empty_like(x))
                  - objective.gradient_sum(x - step, np.empty_like(x))) / (2 * h)
        np.testing.assert_allclose(hessian[:, j], column, atol=1e-6)
