"""Network objectives (softmax, mlp): the Objective interface's semantics, checked as properties.

A batch gradient over rows (repeats allowed) is the full gradient of the objective on those rows
gathered; chunked passes equal one pass; shards' gradient sums add up to the whole; float32 is
float64 rounded; correct_sum agrees with a NumPy forward pass; the seeded start is deterministic
and has the scale of its rule; bad inputs name what is wrong; a batch gradient allocates nothing.
Also the attributes the linear objectives gained for the same interface.
"""
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain.objectives import MLP, LeastSquares, LogisticRegression, Network, Softmax, make_objective
from mpitrain.objectives import network as network_module

MODELS = [  # (hidden, activation, head)
    ((), "relu", "softmax"),
    ((6,), "relu", "softmax"),
    ((6, 5), "tanh", "logistic"),
    ((6,), "tanh", "squared"),
]
LAYOUTS = ["dense", "csr"]


def make_data(head, layout, n=40, d=8, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    dense = (rng.standard_normal((n, d)) * (rng.random((n, d)) < 0.5)).astype(dtype)
    if head == "softmax":
        labels = rng.integers(0, 4, n).astype(np.float64)
    elif head == "logistic":
        labels = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    else:
        labels = rng.standard_normal(n)
    return (sp.csr_matrix(dense) if layout == "csr" else dense), labels


def make_network(model, layout, l2=0.1, seed=0, **data):
    hidden, activation, head = model
    features, labels = make_data(head, layout, seed=seed, **data)
    objective = Network(features, labels, l2, hidden=hidden, activation=activation, head=head,
                        n_classes=4 if head == "softmax" else None)
    rng = np.random.default_rng(seed + 1)
    x = (objective.initial_point(seed) + 0.3 * rng.standard_normal(objective.n_params)).astype(objective.dtype)
    return objective, x


def outputs(objective, x):
    """The network's outputs o (n, n_outputs) by a NumPy forward pass in float64."""
    h = objective.features.toarray() if objective.is_sparse else objective.features
    h = h.astype(np.float64)
    views = objective.parameters(x)
    layers = len(objective.sizes) - 1
    for l in range(1, layers + 1):
        h = h @ views[f"W{l}"].astype(np.float64) + views[f"b{l}"]
        if l < layers:
            h = np.maximum(h, 0.0) if objective.activation == "relu" else np.tanh(h)
    return h


def subset(objective, rows):
    """The same model on the rows gathered (repeats kept)."""
    return type(objective)(objective.features[rows], objective.labels[rows], objective.l2, **objective.options)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("model", MODELS, ids=lambda m: "-".join(map(str, m)))
def test_batch_gradient_is_the_gradient_on_the_rows_gathered_times_weight(model, layout):
    objective, x = make_network(model, layout)
    rows = np.array([5, 5, 0, 39, 3, 5, 17], dtype=np.int64)
    sub = subset(objective, rows)
    out = np.full_like(x, np.nan)
    assert objective.batch_gradient(x, rows, out, weight=0.25) is out
    np.testing.assert_allclose(out, 0.25 * sub.gradient(x), rtol=1e-12, atol=1e-15)
    assert objective.batch_loss(x, rows) == pytest.approx(sub.loss(x), rel=1e-13)
    everything = np.arange(objective.n_samples, dtype=np.int64)
    np.testing.assert_allclose(objective.batch_gradient(x, everything, out), objective.gradient(x),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_regulariser_covers_the_whole_vector_biases_included(layout):
    model = ((6,), "relu", "softmax")
    plain, x = make_network(model, layout, l2=0.0)
    decayed, _ = make_network(model, layout, l2=0.7)
    rows = np.array([1, 2, 2], dtype=np.int64)
    np.testing.assert_allclose(decayed.gradient(x), plain.gradient(x) + 0.7 * x, rtol=1e-12, atol=1e-15)
    expected = 2.0 * (plain.batch_gradient(x, rows, np.empty_like(x)) + 0.7 * x)
    np.testing.assert_allclose(decayed.batch_gradient(x, rows, np.empty_like(x), weight=2.0), expected,
                               rtol=1e-12, atol=1e-15)
    assert decayed.loss(x) == pytest.approx(plain.loss(x) + 0.35 * float(x @ x), rel=1e-13)
    n = plain.n_samples
    assert plain.loss_sum(x) == pytest.approx(n * plain.loss(x), rel=1e-13)
    np.testing.assert_allclose(decayed.gradient_sum(x, np.empty_like(x)), n * plain.gradient(x), rtol=1e-12,
                               atol=1e-14)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("model", MODELS, ids=lambda m: "-".join(map(str, m)))
def test_chunked_passes_equal_one_pass(model, layout, monkeypatch):
    objective, x = make_network(model, layout)  # 40 rows: one chunk of CHUNK_ROWS = 256
    monkeypatch.setattr(network_module, "CHUNK_ROWS", 7)
    chunked = subset(objective, np.arange(objective.n_samples))
    rows = np.random.default_rng(0).integers(0, objective.n_samples, 50)
    assert chunked.loss_sum(x) == pytest.approx(objective.loss_sum(x), rel=1e-13)
    np.testing.assert_allclose(chunked.gradient_sum(x, np.empty_like(x)), objective.gradient_sum(x, np.empty_like(x)),
                               rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(chunked.batch_gradient(x, rows, np.empty_like(x)),
                               objective.batch_gradient(x, rows, np.empty_like(x)), rtol=1e-12, atol=1e-14)
    if objective.is_classifier:
        assert chunked.correct_sum(x) == objective.correct_sum(x)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shards_with_n_classes_add_up_to_the_whole(layout):
    features, labels = make_data("softmax", layout)
    labels[:20] = np.minimum(labels[:20], 2)  # the first shard never shows class 3
    whole = Softmax(features, labels, 0.0, n_classes=4)
    shards = [Softmax(features[part], labels[part], 0.0, n_classes=4) for part in (slice(0, 20), slice(20, 40))]
    x = np.random.default_rng(2).standard_normal(whole.n_params)
    sums = sum(shard.gradient_sum(x, np.empty_like(x)) for shard in shards)
    np.testing.assert_allclose(sums, whole.gradient_sum(x, np.empty_like(x)), rtol=1e-12, atol=1e-13)
    assert sum(shard.loss_sum(x) for shard in shards) == pytest.approx(whole.loss_sum(x), rel=1e-13)
    assert sum(shard.correct_sum(x) for shard in shards) == whole.correct_sum(x)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("model", MODELS, ids=lambda m: "-".join(map(str, m)))
def test_float32_is_float64_rounded(model, layout):
    double, x = make_network(model, layout)
    single = double.astype(np.float32)
    assert single.dtype == np.float32 and single.options == double.options and single.n_params == double.n_params
    x32 = x.astype(np.float32)
    assert single.loss(x32) == pytest.approx(double.loss(x32.astype(np.float64)), rel=1e-5)
    expected = double.gradient(x32.astype(np.float64))
    actual = single.gradient(x32)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    rows = np.array([1, 1, 30], dtype=np.int64)
    np.testing.assert_allclose(single.batch_gradient(x32, rows, np.empty_like(x32)),
                               double.batch_gradient(x32.astype(np.float64), rows, np.empty_like(x)),
                               rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("model", MODELS, ids=lambda m: "-".join(map(str, m)))
def test_correct_sum_matches_a_numpy_forward_pass(model, layout):
    objective, x = make_network(model, layout)
    if not objective.is_classifier:
        with pytest.raises(ValueError, match="classifier"):
            objective.correct_sum(x)
        return
    o = outputs(objective, x)
    if objective.head == "softmax":
        expected = int((o.argmax(axis=1) == objective.labels).sum())
    else:
        expected = int((objective.labels * o[:, 0] > 0).sum())
    assert objective.correct_sum(x) == expected
    assert 0 < expected < objective.n_samples  # neither trivial
    zero = np.zeros_like(x)  # all outputs 0: softmax picks class 0, logistic counts none
    count = int((objective.labels == 0).sum()) if objective.head == "softmax" else 0
    assert objective.correct_sum(zero) == count


def test_initial_point_is_deterministic_with_the_scale_of_its_rule():
    features, labels = make_data("softmax", "dense", n=30, d=400)
    relu = MLP(features, labels, 0.0, hidden=(300,), activation="relu", n_classes=4)
    other_rank = MLP(features[:5], labels[:5], 0.0, hidden=(300,), activation="relu", n_classes=4)
    x = relu.initial_point(7)
    np.testing.assert_array_equal(x, other_rank.initial_point(7))
    assert not np.array_equal(x, relu.initial_point(8))
    views = relu.parameters(x)
    assert views["W1"].std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)  # He: N(0, 2 / fan_in)
    assert views["W2"].std() == pytest.approx(np.sqrt(2 / 300), rel=0.1)
    assert not views["b1"].any() and not views["b2"].any()
    tanh = MLP(features, labels, 0.0, hidden=(300,), activation="tanh", n_classes=4)
    w1 = tanh.parameters(tanh.initial_point(7))["W1"]
    limit = np.sqrt(6 / 700)  # Glorot: U(-r, r), r = sqrt(6 / (fan_in + fan_out))
    assert np.abs(w1).max() <= limit and w1.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    single = tanh.astype(np.float32).initial_point(7)
    assert single.dtype == np.float32 and np.array_equal(single, tanh.initial_point(7).astype(np.float32))
    softmax = Softmax(features, labels, 0.0, n_classes=4)
    assert not softmax.initial_point(7).any() and softmax.initial_point(7).shape == (softmax.n_params,)


def test_attributes_layout_and_interface():
    features, labels = make_data("softmax", "csr", d=8)
    softmax = make_objective("softmax", features, labels, 0.1)
    assert isinstance(softmax, Softmax) and softmax.name == "softmax"
    assert (softmax.n_features, softmax.n_outputs, softmax.n_classes, softmax.n_params) == (8, 4, 4, 8 * 4 + 4)
    assert softmax.is_convex and softmax.is_classifier and softmax.is_sparse and softmax.xp is np
    assert softmax.hidden == () and softmax.head == "softmax" and softmax.labels.dtype == np.float64
    mlp = make_objective("mlp", features.toarray(), np.where(labels > 1, 1.0, -1.0), 0.1, hidden=[5, 3],
                         activation="tanh", head="logistic", n_classes=None)
    assert isinstance(mlp, MLP) and mlp.name == "mlp" and mlp.hidden == (5, 3) and mlp.n_outputs == 1
    assert not mlp.is_convex and mlp.is_classifier and not mlp.is_sparse and mlp.n_classes is None
    shapes = mlp.parameter_shapes()
    assert [(p.name, p.offset, p.shape) for p in shapes] == [
        ("W1", 0, (8, 5)), ("b1", 40, (5,)), ("W2", 45, (5, 3)), ("b2", 60, (3,)), ("W3", 63, (3, 1)),
        ("b3", 66, (1,))]
    assert mlp.n_params == 67
    assert "hidden=(5, 3)" in repr(mlp) and "n_params=67" in repr(mlp) and "l2=0.1" in repr(mlp)
    x = mlp.initial_point(0)
    assert mlp.sgd_steps(x, np.empty_like(x), sampler=None) is None
    from mpitrain import backend

    if backend.gpu_unavailable_reason() is not None:
        with pytest.raises(RuntimeError, match="needs a GPU"):
            mlp.to_device()
    squared = MLP(features, labels, 0.0, hidden=(4,), head="squared")
    assert not squared.is_classifier and squared.n_classes is None


def test_bad_inputs_name_what_is_wrong():
    features, labels = make_data("softmax", "dense")
    cases = [
        (lambda: Softmax(features, np.where(labels == 0, 0.5, labels), 0.1), "got 0.5"),
        (lambda: Softmax(features, labels, 0.1, n_classes=3), r"\[0, 3\), got 3.0"),
        (lambda: Softmax(features, -labels - 1, 0.1), "got -"),
        (lambda: Softmax(features, np.zeros(40), 0.1), "single class: pass n_classes"),
        (lambda: Softmax(features[:0], labels[:0], 0.1), "n_classes is required"),
        (lambda: Softmax(features, labels, 0.1, n_classes=1), "n_classes must be an integer >= 2"),
        (lambda: Softmax(features, labels[:5], 0.1), r"labels must have shape \(40,\)"),
        (lambda: Softmax(features, labels, -1.0), "l2 must be"),
        (lambda: Softmax(features.astype(np.int64), labels, 0.1), "float32 or float64"),
        (lambda: MLP(features, labels, 0.1, hidden=()), "at least one layer"),
        (lambda: MLP(features, labels, 0.1, hidden=(4, 0)), "widths must be integers >= 1"),
        (lambda: MLP(features, labels, 0.1, hidden=(4.5,)), "widths must be integers >= 1"),
        (lambda: MLP(features, labels, 0.1, hidden=8), "hidden must be a sequence"),
        (lambda: MLP(features, labels, 0.1, activation="sigmoid"), "activation must be one of"),
        (lambda: MLP(features, labels, 0.1, head="hinge"), "head must be one of"),
        (lambda: MLP(features, labels, 0.1, head="logistic"), "-1 or \\+1 for the logistic head, got 0.0"),
        (lambda: MLP(features, labels, 0.1, head="squared", n_classes=4), "softmax head only"),
        (lambda: make_objective("logistic", features, labels, 0.1, hidden=(4,)), "does not take.*hidden"),
        (lambda: make_objective("softmax", features, labels, 0.1, activation="tanh"), "activation"),
        (lambda: make_objective("mlp", features, labels, 0.1, hidden=(4,), width=3), "width"),
    ]
    for build, message in cases:
        with pytest.raises(ValueError, match=message):
            build()
    objective = MLP(features, labels, 0.1, hidden=(4,))
    x = objective.initial_point(0)
    out = np.empty_like(x)
    rows = np.array([0, 1], dtype=np.int64)
    for call, message in [
        (lambda: objective.gradient(x[:-1]), rf"x must be a float64 array of shape \({objective.n_params},\)"),
        (lambda: objective.gradient(x.astype(np.float32)), "x must be a float64 array"),
        (lambda: objective.batch_gradient(x, rows, out[:-1]), "out must be"),
        (lambda: objective.batch_gradient(x, rows.astype(np.int32), out), "rows must be a 1-D int64"),
        (lambda: objective.batch_gradient(x, rows[:0], out), "rows must not be empty"),
        (lambda: objective.batch_gradient(x, rows, x), "out must not be x"),
        (lambda: objective.correct_sum(np.zeros((2, x.size))), "x must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(IndexError, match=r"outside \[0, 40\)"):
        objective.batch_gradient(x, np.array([0, 40], dtype=np.int64), out)
    with pytest.raises(IndexError):
        objective.batch_loss(x, np.array([-1], dtype=np.int64))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_gradient_allocates_nothing(layout):
    objective, x = make_network(((16,), "relu", "softmax"), layout)
    rows = np.arange(32, dtype=np.int64) % objective.n_samples
    out = np.empty_like(x)
    objective.batch_gradient(x, rows, out)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(100):
        objective.batch_gradient(x, rows, out, weight=0.5)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 4096


def test_linear_objectives_have_the_same_interface():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((30, 5))
    labels = np.where(rng.random(30) < 0.5, -1.0, 1.0)
    logistic = LogisticRegression(features, labels, 0.1)
    assert logistic.n_params == 5 and logistic.is_convex and logistic.is_classifier
    x0 = logistic.initial_point(3)
    assert x0.dtype == np.float64 and x0.shape == (5,) and not x0.any()
    x = rng.standard_normal(5)
    assert logistic.correct_sum(x) == int((labels * (features @ x) > 0).sum())
    assert logistic.correct_sum(x0) == 0  # margin 0 counts as wrong
    single = logistic.astype(np.float32)
    assert single.correct_sum(x.astype(np.float32)) == logistic.correct_sum(x)
    squares = LeastSquares(sp.csr_matrix(features), labels, 0.1)
    assert squares.n_params == 5 and squares.is_convex and not squares.is_classifier
    with pytest.raises(ValueError, match="not a classifier"):
        squares.correct_sum(x)


def test_the_cpu_kernels_take_the_names_the_models_check():
    from mpitrain._native import network as kernels

    assert set(network_module.ACTIVATIONS) == set(kernels.ACTIVATIONS)
    assert set(network_module.HEADS) == set(kernels.HEADS)


def test_linear_models_load_neither_the_network_kernels_nor_their_scipy(tmp_path):
    """The network kernels (and scipy.linalg, which they load for BLAS) and scipy.special are
    imported when first needed, not with the package: about 0.2 s in every process that trains
    a linear model (the experiments start one per core). The first network built loads them."""
    import subprocess
    import sys

    from mpi_run import ROOT, mpi_env

    lazy = ("mpitrain._native.network", "scipy.linalg", "scipy.special", "matplotlib")
    code = ("import sys, numpy as np, scipy.sparse as sp\n"
            "import mpitrain.cli, mpitrain.train, mpitrain.experiments.compression_bits\n"
            "from mpitrain.objectives import make_objective\n"
            "a = sp.random(20, 5, density=0.5, format='csr', random_state=0)\n"
            "y = np.where(np.arange(20) % 2 == 0, 1.0, -1.0)\n"
            "make_objective('logistic', a, y, 0.1).gradient(np.zeros(5))\n"
            f"print([m for m in {lazy!r} if m in sys.modules])\n"
            "make_objective('mlp', a, y, 0.1, hidden=[3], head='logistic').gradient(np.zeros(22))\n"
            "print('mpitrain._native.network' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=mpi_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "True"], result.stdout
