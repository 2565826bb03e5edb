"""The fused update x <- beta (x + alpha g) equals the NumPy steps bit for bit."""
import numpy as np
import pytest

from mpitrain._native.vector import scaled_update


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [1.0, 0.25, 1 / 3])
def test_scaled_update_matches_numpy_bitwise(dtype, beta):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1001).astype(dtype)
    g = rng.standard_normal(1001).astype(dtype)
    eta = 0.37
    expected = x.copy()
    step = g * dtype(eta)
    expected -= step
    if beta != 1.0:
        expected *= dtype(beta)
    scaled_update(x, g, -eta, beta)
    assert np.array_equal(x, expected)


def test_scaled_update_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="g has 3 entries, x has 4"):
        scaled_update(np.zeros(4), np.zeros(3), 1.0)
