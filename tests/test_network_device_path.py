"""The GPU twin of the network kernels (``mpitrain.gpu.network``) on the CPU, NumPy and SciPy standing
in for CuPy and cupyx: the same code that runs on a GPU, checked against the Cython kernels.

Every head x activation x dense/CSR x 0/1/2 hidden layers, float64 within 1e-12 and float32 within
1e-5 of the Cython passes (relative, entries against the largest); chunked passes (7 rows) equal
one pass; the Network's methods, built with NumPy standing in for CuPy (its GPU branch), keep the
CPU semantics: batch_gradient's weight and l2, repeated rows, the errors. tests/test_gpu_network.py
runs the same comparisons on a GPU.
"""
import types

import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain import backend
from mpitrain.gpu import network as device_kernels
from mpitrain.objectives import MLP, Softmax
from network_cases import random_network

HEADS = ["softmax", "logistic", "squared"]
ACTIVATIONS = ["relu", "tanh"]
LAYOUTS = ["dense", "csr"]
DEPTHS = [(), (6,), (6, 5)]
DTYPES = [np.float64, np.float32]
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


class StandIn(types.ModuleType):
    """NumPy under another name: code that asks ``xp is not np`` takes its GPU branch."""

    def __getattr__(self, name):
        return getattr(np, name)


def make_network(head, activation, layout, hidden, dtype=np.float64, l2=0.1, n=40, d=8, seed=0):
    """A CPU network on random rows (row 2 empty) and a point x near its seeded start."""
    objective, x, _ = random_network(head, activation, layout, hidden, n=n, d=d, classes=4, density=0.5, l2=l2,
                                     seed=seed, dtype=dtype)
    return objective, x


def stand_in(cpu):
    """The same network built with NumPy standing in for CuPy: Network's GPU branch, the twin's passes."""
    xp = StandIn("numpy_standing_in_for_cupy")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "array_module", lambda array: xp)
        patch.setattr(device_kernels, "array_modules", lambda features: (xp, sp))
        return type(cpu)(cpu.features, cpu.labels, cpu.l2, **cpu.options)


def close(got, want, dtype):
    """Entries within rtol of the dtype, measured against the largest (sums cancel in places)."""
    rtol = RTOL[np.dtype(dtype)]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))


def repeated_rows(n, seed=3):
    rows = np.random.default_rng(seed).integers(0, n, 30).astype(np.int64)
    rows[:4] = [5, 5, 5, n - 1]  # repeats, the last row
    return rows


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("hidden", DEPTHS, ids=["0", "1", "2"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("head", HEADS)
def test_twin_equals_the_cython_kernel(head, activation, layout, hidden, dtype):
    cpu, x = make_network(head, activation, layout, hidden, dtype)
    rows = repeated_rows(cpu.n_samples)
    for chunk in (7, device_kernels.CHUNK_ROWS):
        twin = device_kernels.for_network(cpu, chunk=chunk)
        assert twin.xp is np and twin.is_sparse == (layout == "csr") and twin.n_params == cpu.n_params
        for selection in (None, rows):
            total, correct = twin.loss_sum(x, selection)
            want_total, want_correct = cpu._kernel.loss_sum(x, selection)
            assert total == pytest.approx(want_total, rel=RTOL[cpu.dtype])
            assert correct == want_correct
            for scale, decay in ((1.0, 0.0), (0.37, 0.05)):
                got, want = np.full_like(x, np.nan), np.full_like(x, np.nan)
                twin.gradient(x, selection, scale, decay, got)
                cpu._kernel.gradient(x, selection, scale, decay, want)
                close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("head", HEADS)
def test_large_outputs_stay_finite_as_on_the_cpu(head, dtype):
    """Logits of several hundred: the stable head formulas (no exp overflow) on both."""
    cpu, x = make_network(head, "relu", "dense", (6,), dtype)
    x = (x * 30).astype(dtype)
    twin = device_kernels.for_network(cpu)
    total, correct = twin.loss_sum(x)
    want_total, want_correct = cpu._kernel.loss_sum(x)
    assert np.isfinite(total) and want_total > 1e3
    assert total == pytest.approx(want_total, rel=RTOL[cpu.dtype]) and correct == want_correct
    got, want = np.empty_like(x), np.empty_like(x)
    twin.gradient(x, None, 1.0, 0.0, got)
    cpu._kernel.gradient(x, None, 1.0, 0.0, want)
    assert np.isfinite(got).all()
    close(got, want, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("model", [("softmax", "relu", ()), ("softmax", "tanh", (6,)),
                                   ("logistic", "relu", (6, 5)), ("squared", "tanh", (6,))],
                         ids=["softmax", "mlp-softmax", "mlp-logistic", "mlp-squared"])
def test_network_methods_on_the_device_path_keep_the_cpu_semantics(model, layout):
    head, activation, hidden = model
    cpu, x = make_network(head, activation, layout, hidden)
    net = stand_in(cpu)
    assert net.xp is not np and isinstance(net._kernel, device_kernels.NetworkKernel)
    assert (net.n_params, net.sizes, net.n_classes, net.is_sparse) == (cpu.n_params, cpu.sizes, cpu.n_classes,
                                                                       cpu.is_sparse)
    assert net.to_device() is net and np.array_equal(net.initial_point(4), cpu.initial_point(4))
    assert net.loss_sum(x) == pytest.approx(cpu.loss_sum(x), rel=1e-12)
    assert net.loss(x) == pytest.approx(cpu.loss(x), rel=1e-12)
    if cpu.is_classifier:
        assert net.correct_sum(x) == cpu.correct_sum(x)
    close(net.gradient(x), cpu.gradient(x), np.float64)
    close(net.gradient_sum(x, np.empty_like(x)), cpu.gradient_sum(x, np.empty_like(x)), np.float64)
    rows = repeated_rows(cpu.n_samples)
    assert net.batch_loss(x, rows) == pytest.approx(cpu.batch_loss(x, rows), rel=1e-12)
    out = np.empty_like(x)
    assert net.batch_gradient(x, rows, out, weight=0.25) is out
    close(out, cpu.batch_gradient(x, rows, np.empty_like(x), weight=0.25), np.float64)
    # the definition, whatever the CPU does: weight ((1/b) sum over the rows gathered + l2 x)
    gathered = type(cpu)(cpu.features[rows], cpu.labels[rows], 0.0, **cpu.options)
    want = 0.25 * (gathered.gradient_sum(x, np.empty_like(x)) / rows.shape[0] + cpu.l2 * x)
    close(out, want, np.float64)
    assert net.batch_loss(x, rows) == pytest.approx(
        gathered.loss_sum(x) / rows.shape[0] + 0.5 * cpu.l2 * float(x @ x), rel=1e-12)
    # a repeated row counts as often as it is drawn: rows (1, 1, 7) give 2 g_1 + g_7
    def row_gradient(i):
        one = type(cpu)(cpu.features[[i]], cpu.labels[[i]], 0.0, **cpu.options)
        return one.gradient_sum(x, np.empty_like(x))

    net.batch_gradient(x, np.array([1, 1, 7], dtype=np.int64), out, weight=3.0)
    close(out, 2 * row_gradient(1) + row_gradient(7) + 3.0 * cpu.l2 * x, np.float64)


def test_bad_calls_name_what_is_wrong():
    cpu, x = make_network("softmax", "relu", "csr", (4,))
    net = stand_in(cpu)
    out = np.empty_like(x)
    with pytest.raises(IndexError, match=r"outside \[0, 40\)"):
        net.batch_gradient(x, np.array([0, 40], dtype=np.int64), out)
    with pytest.raises(IndexError, match=r"outside \[0, 40\)"):
        net.batch_loss(x, np.array([-1], dtype=np.int64))
    with pytest.raises(ValueError, match="out must not be x"):
        net.batch_gradient(x, np.array([0, 1], dtype=np.int64), x)
    with pytest.raises(ValueError, match="x must be a float64 array"):
        net.gradient(x.astype(np.float32))
    with pytest.raises(ValueError, match="rows must be a 1-D int64"):
        net.batch_gradient(x, np.array([0, 1], dtype=np.int32), out)
    twin = net._kernel
    with pytest.raises(ValueError, match=f"x must be a 1-D float64 array with {cpu.n_params} entries"):
        twin.loss_sum(x[:-1])
    with pytest.raises(ValueError, match="activation must be one of"):
        device_kernels.NetworkKernel(np, sp, "sigmoid", "softmax", cpu.parameter_shapes(), cpu.features,
                                     cpu.labels, cpu.classes)


def test_buffers_are_kept_and_grown_to_the_largest_chunk():
    cpu, x = make_network("logistic", "tanh", "dense", (6, 5))
    twin = device_kernels.for_network(cpu, chunk=16)
    out = np.empty_like(x)
    twin.gradient(x, np.arange(8, dtype=np.int64), 1.0, 0.0, out)
    buffers = [id(a) for a in twin._act + twin._delta] + [id(twin._gathered)]
    assert twin._capacity == 8
    twin.gradient(x, np.arange(5, dtype=np.int64), 1.0, 0.0, out)
    assert [id(a) for a in twin._act + twin._delta] + [id(twin._gathered)] == buffers
    twin.loss_sum(x)  # 40 rows in chunks of 16
    assert twin._capacity == 16 and twin._act[0].shape == (16, 6)


def test_softmax_and_mlp_rebuild_on_the_device_path():
    cpu, x = make_network("softmax", "relu", "dense", ())
    softmax = Softmax(cpu.features, cpu.labels, 0.1, n_classes=4)
    assert isinstance(stand_in(softmax), Softmax)
    mlp = MLP(cpu.features, cpu.labels, 0.1, hidden=(3,), activation="tanh")
    assert stand_in(mlp).options == mlp.options


def test_array_modules_of_host_features():
    assert device_kernels.array_modules(np.zeros((2, 2))) == (np, sp)
    assert device_kernels.array_modules(sp.csr_matrix(np.eye(2))) == (np, sp)


@pytest.mark.skipif(backend.gpu_unavailable_reason() is None, reason="a GPU is visible here")
def test_to_device_without_a_gpu_says_why():
    cpu, _ = make_network("squared", "relu", "dense", (3,))
    with pytest.raises(RuntimeError, match="Network.to_device needs a GPU: CuPy"):
        cpu.to_device()
