"""The loss sum with each distinct row scored once (mpitrain.objectives.distinct_rows) has the
bits of the objective's own loss sum; rows are the same only when indices, stored values and
labels are."""
import numpy as np
import pytest
import scipy.sparse

from mpitrain._native import objectives as kernels
from mpitrain.objectives import make_objective
from mpitrain.objectives.distinct_rows import DistinctLossSum, distinct_rows


def repeated_rows(dtype, rng):
    base = scipy.sparse.random(40, 25, density=0.3, format="csr", random_state=1, dtype=np.float64)
    picks = rng.integers(0, 40, 300)
    features = scipy.sparse.csr_matrix(base[picks], dtype=dtype)
    labels = np.where(rng.random(40) < 0.5, -1.0, 1.0)[picks]
    labels[::7] *= -1  # the same features with the other label: another row
    return features, labels


@pytest.mark.parametrize("name", ["logistic", "least_squares"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distinct_loss_sum_has_the_bits_of_loss_sum(name, dtype):
    rng = np.random.default_rng(0)
    features, labels = repeated_rows(dtype, rng)
    objective = make_objective(name, features, labels, 0.1)
    loss_sum = DistinctLossSum(objective)
    assert loss_sum.distinct < objective.n_samples  # the test repeats rows
    for scale in (0.0, 1e-3, 1.0, 30.0, 1e4):
        x = (rng.standard_normal(25) * scale).astype(dtype)
        assert loss_sum(x) == objective.loss_sum(x), scale


def test_rows_differ_by_a_bit_of_a_value_or_of_the_label():
    # rows: {0: 1, 3: 2} +1; the same; {1: -0.0} +1; {1: +0.0} +1; empty +1; {0: 1, 3: 2} -1; the first again
    data = np.array([1.0, 2.0, 1.0, 2.0, -0.0, 0.0, 1.0, 2.0, 1.0, 2.0])
    indices = np.array([0, 3, 0, 3, 1, 1, 0, 3, 0, 3], dtype=np.int32)
    indptr = np.array([0, 2, 4, 5, 6, 6, 8, 10], dtype=np.int32)
    labels = np.array([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0])
    first, row_of = distinct_rows(data, indices, indptr, labels)
    assert first.tolist() == [0, 2, 3, 4, 5]
    assert row_of.tolist() == [0, 0, 1, 2, 3, 4, 0]


def test_repeated_kernel_rejects_a_row_outside_the_distinct_rows():
    one = np.ones(1)
    with pytest.raises(IndexError, match="outside"):
        kernels.csr_loss_sum_repeated["double"](0, one, np.zeros(1, np.int32), np.array([0, 1], np.int32), one,
                                                one, np.array([0, 1], np.int64), np.empty(1))


def test_dense_objectives_keep_their_own_loss_sum():
    rng = np.random.default_rng(2)
    objective = make_objective("logistic", rng.standard_normal((30, 5)), np.sign(rng.standard_normal(30)), 0.0)
    loss_sum = DistinctLossSum(objective)
    x = rng.standard_normal(5)
    assert loss_sum.distinct == 30 and loss_sum(x) == objective.loss_sum(x)


def rows_of_many_lengths(dtype, rng, n=400, d=60):
    """Sparse rows of 0 to 30 nonzeros, with repeats and both labels (the bound's sorting)."""
    lengths = rng.integers(0, 31, 80)
    base = scipy.sparse.lil_matrix((80, d), dtype=np.float64)
    for r, m in enumerate(lengths):
        cols = rng.choice(d, m, replace=False)
        base[r, cols] = rng.standard_normal(m)
    picks = rng.integers(0, 80, n)
    return scipy.sparse.csr_matrix(base.tocsr()[picks], dtype=dtype), np.where(rng.random(80) < 0.5, -1.0, 1.0)[picks]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lower_bound_is_below_the_exact_sum_and_close_to_it(dtype):
    rng = np.random.default_rng(5)
    features, labels = rows_of_many_lengths(dtype, rng)
    objective = make_objective("logistic", features, labels, 0.1)
    loss_sum = DistinctLossSum(objective)
    assert loss_sum(np.zeros(60, dtype)) == objective.loss_sum(np.zeros(60, dtype))  # sorted rows, the same bits
    # margins from 0 to past the table's end (40) and to 1e5, of both signs
    for scale in (0.0, 1e-6, 1e-2, 0.3, 1.0, 5.0, 100.0, 1e4):
        for _ in range(3):
            x = (rng.standard_normal(60) * scale).astype(dtype)
            exact, lower = loss_sum(x), loss_sum.lower_bound(x)
            assert exact == objective.loss_sum(x)
            assert lower <= exact, (scale, lower, exact)
            assert exact - lower <= objective.n_samples * (kernels.SOFTPLUS_SLACK + 1e-9 * max(1.0, exact)), scale


def test_lower_bound_gives_way_where_it_cannot_decide():
    rng = np.random.default_rng(6)
    features, labels = rows_of_many_lengths(np.float64, rng)
    loss_sum = DistinctLossSum(make_objective("logistic", features, labels, 0.1))
    for bad in (np.nan, np.inf, 1e12):
        x = np.zeros(60)
        x[features.indices[0]] = bad  # a margin that is not finite or too large
        assert loss_sum.lower_bound(x) is None
    squares = DistinctLossSum(make_objective("least_squares", features, labels, 0.1))
    assert squares.lower_bound(np.zeros(60)) is None  # the bound is the logistic loss's


def test_screened_suboptimality_decides_as_the_exact_one():
    """Problem.screened_suboptimality: <= a threshold exactly when the exact value is; the exact
    value itself at or below it, and a lower bound of it above."""
    from mpitrain.experiments.workers import Problem

    rng = np.random.default_rng(7)
    features, labels = rows_of_many_lengths(np.float64, rng)
    problem = Problem.__new__(Problem)  # the scoring parts only: no data set to open
    problem.objective = make_objective("logistic", features, labels, 1.0 / 400)
    problem.n, problem.f_star = 400, 0.5
    problem._loss_sum = DistinctLossSum(problem.objective)
    for scale in (0.0, 0.01, 0.1, 1.0, 10.0):
        x = rng.standard_normal(60) * scale
        exact = problem.suboptimality(x)
        for threshold in (exact - 1e-3, exact - 1e-9, exact, exact + 1e-9, exact + 1e-3, -1.0, 1e9):
            value = problem.screened_suboptimality(x, threshold)
            assert (value <= threshold) == (exact <= threshold), (scale, threshold)
            assert value == exact if exact <= threshold else value <= exact
