"""Sharding: every row on exactly one rank, balanced where promised, deterministic,
and skewed label mixes for small Dirichlet alpha."""
import numpy as np
import pytest

from mpitrain.data import Dataset, assignment, shard, shard_rows, shard_sizes
from mpitrain.data.synthetic import synthetic_classification

SIZES = [1, 2, 3, 5, 8]


def labels_for(seed, n=97):
    return np.random.default_rng(seed).choice([-1.0, 1.0, 2.0], size=n, p=[0.6, 0.3, 0.1])


@pytest.mark.parametrize("scheme", ["iid", "label", "dirichlet"])
@pytest.mark.parametrize("size", SIZES)
def test_every_row_on_exactly_one_rank(scheme, size):
    for seed in range(40):
        labels = labels_for(seed)
        rows = [shard_rows(labels, rank, size, scheme=scheme, seed=seed, alpha=0.3)
                for rank in range(size)]
        np.testing.assert_array_equal(np.sort(np.concatenate(rows)), np.arange(labels.size))
        assert all(r.size >= 1 for r in rows)
        assert all(np.all(np.diff(r) > 0) for r in rows)


@pytest.mark.parametrize("scheme", ["iid", "label"])
@pytest.mark.parametrize("size", SIZES)
def test_balanced_schemes(scheme, size):
    for seed in range(40):
        counts = np.bincount(assignment(labels_for(seed), size, scheme=scheme, seed=seed),
                             minlength=size)
        assert counts.max() - counts.min() <= 1
        np.testing.assert_array_equal(counts, shard_sizes(97, size))


@pytest.mark.parametrize("scheme", ["iid", "label", "dirichlet"])
def test_deterministic_from_seed(scheme):
    labels = labels_for(0, 500)
    first = assignment(labels, 6, scheme=scheme, seed=11, alpha=0.5)
    np.random.seed(123)                                   # global state must not matter
    np.random.random(10)
    np.testing.assert_array_equal(assignment(labels, 6, scheme=scheme, seed=11, alpha=0.5), first)
    if scheme != "label":
        assert not np.array_equal(assignment(labels, 6, scheme=scheme, seed=12, alpha=0.5), first)


def test_label_scheme_is_sorted_blocks():
    labels = labels_for(1, 300)
    owners = assignment(labels, 4, scheme="label")
    for rank in range(3):
        assert labels[owners == rank].max() <= labels[owners == rank + 1].min()


def label_skew(alpha, seeds=20, size=8):
    """Mean over seeds and ranks of |positive fraction on the rank - 1/2|."""
    labels = np.repeat([-1.0, 1.0], 400)
    skew = []
    for seed in range(seeds):
        owners = assignment(labels, size, scheme="dirichlet", seed=seed, alpha=alpha)
        for rank in range(size):
            skew.append(abs((labels[owners == rank] > 0).mean() - 0.5))
    return np.mean(skew)


def test_dirichlet_small_alpha_is_skewed():
    assert label_skew(0.05) > 0.3
    assert label_skew(1000.0) < 0.05
    assert label_skew(0.05) > label_skew(1.0) > label_skew(1000.0)


def test_dirichlet_fills_empty_ranks_when_rows_are_scarce():
    labels = np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    for seed in range(200):
        counts = np.bincount(assignment(labels, 5, scheme="dirichlet", seed=seed, alpha=0.01),
                             minlength=5)
        np.testing.assert_array_equal(counts, np.ones(5))


@pytest.mark.parametrize("sparse", [True, False])
def test_shard_returns_the_rows(sparse):
    data = synthetic_classification(n_samples=200, n_features=20, density=0.2, seed=1)
    if not sparse:
        data = Dataset(data.features.toarray(), data.labels, data.name, data.fingerprint)
    pieces = [shard(data, rank, 3, scheme="dirichlet", seed=4, alpha=0.5) for rank in range(3)]
    for rank, piece in enumerate(pieces):
        rows = shard_rows(data.labels, rank, 3, scheme="dirichlet", seed=4, alpha=0.5)
        dense = piece.features.toarray() if sparse else piece.features
        expected = data.features[rows].toarray() if sparse else data.features[rows]
        np.testing.assert_array_equal(dense, expected)
        np.testing.assert_array_equal(piece.labels, data.labels[rows])
        assert piece.is_sparse == sparse and piece.n_features == 20
        assert piece.fingerprint == f"{data.fingerprint}:shard=dirichlet:seed=4:alpha=0.5:{rank}/3"
    assert sum(p.n_samples for p in pieces) == 200


@pytest.mark.parametrize("kwargs, word", [
    (dict(rank=3, size=3), "rank"),
    (dict(rank=-1, size=3), "rank"),
    (dict(rank=0, size=0), "size"),
    (dict(rank=0, size=2, scheme="random"), "scheme"),
    (dict(rank=0, size=2, scheme="dirichlet", alpha=0.0), "alpha"),
    (dict(rank=0, size=11), "ranks exceed"),
])
def test_bad_arguments_name_the_argument(kwargs, word):
    data = synthetic_classification(n_samples=10, n_features=5, density=0.5)
    with pytest.raises(ValueError, match=word):
        shard(data, **kwargs)
