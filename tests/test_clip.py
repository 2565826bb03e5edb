"""Clipping (Erickson and Johansson 2026, docs/papers.md s.3): clip_lambda(g) = min(1, lambda/||g||) g.

Properties over many random vectors and scales: the clipped norm is <= lambda (measured
in float64), vectors inside the ball are unchanged, clipped vectors keep their direction
and have norm lambda to float32/float64 precision. The bound is exact for
``global_norm`` and within 4 ulps of float64 for NumPy's norm (another summation order).
"""
import numpy as np
import pytest

from mpitrain.clip import clip_by_norm, global_norm

DTYPES = [np.float32, np.float64]


def norm64(v):
    return float(np.linalg.norm(v.astype(np.float64)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipped_norm_is_at_most_max_norm(dtype):
    rng = np.random.default_rng(0)
    eps = float(np.finfo(dtype).eps)
    for trial in range(500):
        d = int(rng.integers(1, 400))
        g = (rng.standard_normal(d) * 10.0 ** rng.uniform(-6, 6)).astype(dtype)
        max_norm = 10.0 ** rng.uniform(-4, 4)
        clipped, norm = clip_by_norm(g, max_norm)
        assert norm == pytest.approx(norm64(g), rel=1e-12)
        assert global_norm(clipped) <= max_norm  # guaranteed for the library's own norm
        assert norm64(clipped) <= max_norm * (1 + 4 * 2.0**-52)  # NumPy sums in another order
        if norm > max_norm:
            assert norm64(clipped) == pytest.approx(max_norm, rel=8 * eps)
            np.testing.assert_allclose(clipped, g * (max_norm / norm), rtol=8 * eps, atol=0)
        else:
            np.testing.assert_array_equal(clipped, g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inside_the_ball_unchanged_and_in_place(dtype):
    g = np.array([0.3, -0.4], dtype=dtype)
    clipped, norm = clip_by_norm(g, 1.0)
    assert clipped is not g and norm == pytest.approx(0.5, rel=1e-7)
    np.testing.assert_array_equal(clipped, g)
    big = np.array([30.0, -40.0], dtype=dtype)
    same, norm = clip_by_norm(big, 5.0, out=big)
    assert same is big and norm == pytest.approx(50.0)
    np.testing.assert_allclose(big, [3.0, -4.0], rtol=4 * np.finfo(dtype).eps)
    out = np.empty_like(big)
    assert clip_by_norm(big, 100.0, out=out)[0] is out


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_vector_and_empty_vector(dtype):
    zero = np.zeros(7, dtype=dtype)
    clipped, norm = clip_by_norm(zero, 1.0)
    assert norm == 0.0 and not clipped.any()
    assert global_norm(np.zeros(0, dtype=dtype)) == 0.0


def test_global_norm_double_accumulation_and_no_overflow():
    assert global_norm(np.full(10**6, 0.1, dtype=np.float32)) == pytest.approx(
        np.sqrt(10**6) * float(np.float32(0.1)), rel=1e-10)  # float32 sums: ~1e-4 off
    assert global_norm(np.array([3e200, 4e200])) == pytest.approx(5e200, rel=1e-15)
    assert global_norm(np.array([1e38, 2e38], dtype=np.float32)) == pytest.approx(np.sqrt(5.0) * 1e38, rel=1e-7)
    assert np.isinf(global_norm(np.array([np.inf, 1.0])))
    assert np.isnan(global_norm(np.array([np.nan, 1.0])))
    clipped, norm = clip_by_norm(np.array([3e200, 4e200]), 1.0)
    np.testing.assert_allclose(clipped, [0.6, 0.8], rtol=1e-15)


def test_bad_arguments_name_the_argument():
    g = np.ones(3)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_norm"):
            clip_by_norm(g, bad)
    with pytest.raises(ValueError, match="g must"):
        clip_by_norm(np.ones(3, dtype=np.int64), 1.0)
    with pytest.raises(ValueError, match="g must"):
        clip_by_norm(np.ones((2, 2)), 1.0)
    with pytest.raises(ValueError, match="out"):
        clip_by_norm(g, 1.0, out=np.empty(3, dtype=np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        clip_by_norm(np.array([np.nan, 1.0]), 1.0)
