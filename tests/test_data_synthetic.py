"""Generators: deterministic, the advertised shape, and for least squares a true
minimiser and the chosen condition number."""
import numpy as np
import pytest

from mpitrain.data import synthetic_classification, synthetic_least_squares


def test_classification_is_deterministic_and_w8a_shaped():
    first = synthetic_classification(seed=3)
    again = synthetic_classification(seed=3)
    other = synthetic_classification(seed=4)
    assert (first.features != again.features).nnz == 0
    np.testing.assert_array_equal(first.labels, again.labels)
    assert (first.features != other.features).nnz > 0
    assert first.fingerprint == again.fingerprint != other.fingerprint
    assert (first.n_samples, first.n_features) == (20000, 300) and first.is_sparse
    assert np.all(first.features.data == 1.0)
    assert 0.03 < first.features.nnz / (20000 * 300) < 0.045
    assert set(np.unique(first.labels)) == {-1.0, 1.0}
    assert abs((first.labels > 0).mean() - 0.5) < 0.01
    assert first.x_star is None


def test_classification_options():
    data = synthetic_classification(2000, 40, 0.1, seed=1, dtype=np.float32, positive_fraction=0.03)
    assert data.dtype == np.float32 and data.labels.dtype == np.float32
    assert abs((data.labels > 0).mean() - 0.03) < 0.01
    with pytest.raises(ValueError, match="density"):
        synthetic_classification(density=0.0)


def gradient(data, x):
    a, b = data.features.astype(np.float64), data.labels.astype(np.float64)
    return a.T @ (a @ x - b) / data.n_samples


@pytest.mark.parametrize("condition_number", [1.0, 10.0, 1e4])
def test_least_squares_condition_number_and_exact_solution(condition_number):
    data = synthetic_least_squares(500, 30, condition_number, seed=2)
    eigenvalues = np.linalg.eigvalsh(data.features.T @ data.features / data.n_samples)
    assert eigenvalues.max() == pytest.approx(1.0, rel=1e-9)
    assert eigenvalues.max() / eigenvalues.min() == pytest.approx(condition_number, rel=1e-6)
    assert np.abs(data.features @ data.x_star - data.labels).max() < 1e-10
    assert np.linalg.norm(gradient(data, data.x_star)) < 1e-12
    assert data.features.flags.c_contiguous and not data.is_sparse


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_least_squares_with_noise_x_star_is_minimiser(dtype):
    data = synthetic_least_squares(400, 20, 100.0, noise=0.5, seed=5, dtype=dtype)
    assert data.dtype == dtype and data.x_star.dtype == np.float64
    g = gradient(data, data.x_star)
    scale = np.linalg.norm(gradient(data, np.zeros(20)))
    assert np.linalg.norm(g) < 1e-10 * scale
    # residual is the noise: f(x*) > 0, and any perturbation increases f
    residual = data.features.astype(np.float64) @ data.x_star - data.labels
    moved = data.features.astype(np.float64) @ (data.x_star + 1e-3) - data.labels
    assert 0 < residual @ residual < moved @ moved


def test_least_squares_is_deterministic():
    first = synthetic_least_squares(100, 10, 50.0, noise=0.1, seed=7)
    again = synthetic_least_squares(100, 10, 50.0, noise=0.1, seed=7)
    np.testing.assert_array_equal(first.features, again.features)
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.x_star, again.x_star)
    assert not np.array_equal(synthetic_least_squares(100, 10, 50.0, seed=8).features, first.features)


@pytest.mark.parametrize("kwargs, word", [
    (dict(n_samples=5, n_features=10), "n_samples >= n_features"),
    (dict(condition_number=0.5), "condition_number"),
    (dict(noise=-1.0), "noise"),
    (dict(dtype=np.int64), "dtype"),
])
def test_least_squares_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        synthetic_least_squares(**kwargs)
