"""Class constants over many seeds (docs/papers.md s.2): unbiasedness and variance <= omega
||x||^2 for U(omega); E||C(x) - x||^2 <= (1 - 1/delta) ||x||^2 for B3(delta); error
feedback's invariant."""
import numpy as np
import pytest

from mpitrain.compress import ErrorFeedback, make_compressor

D = 96
SEEDS = 600


def inputs():
    rng = np.random.default_rng(11)
    yield rng.standard_normal(D)
    yield rng.standard_normal(D) * np.exp(rng.uniform(-4, 4, D))  # spread magnitudes
    x = np.zeros(D)
    x[:3] = [1.0, -2.0, 0.5]
    yield x  # sparse
    yield 1.5 * 2.0 ** rng.integers(-5, 5, D) * rng.choice([-1, 1], D)  # rounding worst case


UNBIASED = [
    ("identity", {}),
    ("rand_k", {"k": 10}),
    ("natural_compression", {}),
    ("standard_dithering", {"levels": 1}),
    ("standard_dithering", {"levels": 4, "bucket_size": 20}),
    ("natural_dithering", {"levels": 2}),
    ("natural_dithering", {"levels": 5, "p": 1.0}),
    ("natural_dithering", {"levels": 3, "p": float("inf"), "bucket_size": 32}),
    ("ternary", {}),
]

BIASED = [
    ("top_k", {"k": 7}),
    ("rand_k_unscaled", {"k": 10}),
    ("biased_rounding", {}),
    ("scaled_sign", {}),
    ("top_k_natural_dithering", {"k": 12, "levels": 2}),
    ("top_k_natural_compression", {"ratio": 0.1}),
    ("composition", {"biased": "scaled_sign", "unbiased": "natural_compression"}),
    ("composition", {"biased": "rand_k_unscaled", "unbiased": "standard_dithering",
                     "biased_params": {"k": 30}, "unbiased_params": {"levels": 2}}),
]


def samples(c, x):
    return np.stack([c(x, seed) for seed in range(SEEDS)]).astype(np.float64)


@pytest.mark.parametrize("name,params", UNBIASED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unbiased(name, params, dtype):
    c = make_compressor(name, D, dtype=dtype, **params)
    assert c.unbiased and c.omega >= 0
    for x in inputs():
        x = x.astype(dtype).astype(np.float64)
        ys = samples(c, x)
        err = ((ys - x) ** 2).sum(axis=1)
        var = err.mean()
        # variance bound with a 4-standard-error allowance for the sampling noise
        se = err.std() / np.sqrt(SEEDS)
        assert var - 4 * se <= c.omega * (x @ x) * (1 + 1e-6) + 1e-12, (x[:4], var)
        # unbiasedness: ||mean - x||^2 has expectation var / SEEDS (sum over D coordinates,
        # a chi-square with few degrees of freedom for sparse x); allow 5x, plus the
        # float rounding of the dtype and of the mean over SEEDS samples
        bias2 = ((ys.mean(axis=0) - x) ** 2).sum()
        eps = np.finfo(dtype).eps
        assert bias2 <= 5 * var / SEEDS + (SEEDS * eps) ** 2 * (x @ x), (x[:4], bias2, var)


@pytest.mark.parametrize("name,params", BIASED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contractive(name, params, dtype):
    c = make_compressor(name, D, dtype=dtype, **params)
    assert not c.unbiased and c.delta >= 1
    for x in inputs():
        x = x.astype(dtype).astype(np.float64)
        err = ((samples(c, x) - x) ** 2).sum(axis=1)
        se = err.std() / np.sqrt(SEEDS)
        bound = (1 - 1 / c.delta) * (x @ x)
        assert err.mean() - 4 * se <= bound * (1 + 1e-5), (name, x[:4], err.mean(), bound)


def test_biased_rounding_bound_is_tight():
    c = make_compressor("biased_rounding", 4)
    x = np.array([1.5, -3.0, 0.75, 6.0], np.float32)
    err = ((c(x) - x) ** 2).sum()
    assert np.isclose(err, (1 - 1 / c.delta) * (x @ x), rtol=1e-6)


@pytest.mark.parametrize("name,params", [("top_k", {"k": 3}), ("natural_dithering", {"levels": 2}),
                                         ("scaled_sign", {}), ("rand_k", {"k": 5})])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_error_feedback_invariant(name, params, dtype):
    c = make_compressor(name, 50, dtype=dtype, **params)
    ef = ErrorFeedback(c)
    rng = np.random.default_rng(5)
    eps = np.finfo(dtype).eps
    for step in range(20):
        g = rng.standard_normal(50).astype(dtype)
        lr = 0.1
        e_old = ef.error.copy()
        payload, decoded = ef.step(g, lr, seed=1000 + step)
        assert np.array_equal(decoded, c.decode(payload))
        lhs = dtype(lr) * g.astype(np.float64) + e_old
        rhs = decoded.astype(np.float64) + ef.error
        scale = np.abs(dtype(lr) * g) + np.abs(e_old) + np.abs(decoded)
        assert np.all(np.abs(lhs - rhs) <= 4 * eps * scale)
    state = ef.state_dict()
    other = ErrorFeedback(c)
    other.load_state_dict(state)
    assert np.array_equal(other.error, ef.error)
    with pytest.raises(ValueError, match="error must have shape"):
        other.load_state_dict({"error": np.zeros(3)})


def test_error_feedback_with_top1_keeps_all_mass():
    """EF with Top-1 on a constant gradient: everything is sent eventually (sum of v
    over T steps = T lr g - e_T, with e_T bounded)."""
    c = make_compressor("top_k", 4, k=1, dtype=np.float64)
    ef = ErrorFeedback(c)
    g = np.array([1.0, 0.9, 0.8, 0.7])
    sent = sum(ef.step(g, 1.0)[1] for _ in range(400))
    assert np.allclose(sent + ef.error, 400 * g)
    assert np.abs(ef.error).max() <= 4 * np.abs(g).max()
