"""Network objectives on a GPU: ``Network.to_device()`` (CuPy arrays or a cupyx CSR matrix, the
passes of ``mpitrain.gpu.network`` on cuBLAS and cuSPARSE) against the CPU objective on the same
weights, every head, dense and CSR, float32 and float64. Skips without CuPy or a GPU;
tests/test_network_device_path.py runs the same code with NumPy standing in for CuPy everywhere.

Tolerances: float64 1e-11 and float32 1e-5 relative, entries against the largest (cuBLAS and the
device reductions sum in another order than the Cython kernels). float32 assumes CuPy's default
full-precision matmul (CUPY_TF32 unset: TF32 would round the inputs to 10 bits).
"""
import numpy as np
import pytest

from mpitrain import backend
from mpitrain.gpu import network as device_kernels
from mpitrain.objectives import MLP, Softmax
from network_cases import random_network

cupy = pytest.importorskip("cupy")
cupyx_sparse = pytest.importorskip("cupyx.scipy.sparse")
REASON = backend.gpu_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"gpu: {REASON}")

MODELS = [  # (head, activation, hidden)
    ("softmax", "relu", ()),
    ("softmax", "tanh", (16,)),
    ("logistic", "relu", (16, 8)),
    ("logistic", "tanh", ()),
    ("squared", "tanh", (16,)),
    ("squared", "relu", (16, 8)),
]
RTOL = {np.dtype(np.float64): 1e-11, np.dtype(np.float32): 1e-5}


def make_network(model, layout, dtype, l2=0.05, n=300, d=40, seed=0):
    head, activation, hidden = model
    cpu, x, _ = random_network(head, activation, layout, hidden, n=n, d=d, classes=5, density=0.3, l2=l2, seed=seed,
                               dtype=dtype)
    return cpu, x


def close(got, want, dtype):
    rtol = RTOL[np.dtype(dtype)]
    got = cupy.asnumpy(got)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("model", MODELS, ids=[f"{h}-{a}-{len(w)}" for h, a, w in MODELS])
def test_to_device_equals_the_cpu_objective(model, layout, dtype):
    cpu, x = make_network(model, layout, dtype)
    gpu = cpu.to_device()
    assert gpu.xp is cupy and isinstance(gpu._kernel, device_kernels.NetworkKernel) and gpu._kernel.xp is cupy
    if layout == "csr":
        assert cupyx_sparse.isspmatrix_csr(gpu.features) and gpu.is_sparse
    else:
        assert isinstance(gpu.features, cupy.ndarray) and not gpu.is_sparse
    assert isinstance(gpu.labels, cupy.ndarray) and gpu.dtype == cpu.dtype
    assert (gpu.n_params, gpu.sizes, gpu.n_classes) == (cpu.n_params, cpu.sizes, cpu.n_classes)
    rtol = RTOL[cpu.dtype]
    xg = cupy.asarray(x)
    assert gpu.loss(xg) == pytest.approx(cpu.loss(x), rel=rtol)
    assert gpu.loss_sum(xg) == pytest.approx(cpu.loss_sum(x), rel=rtol)
    if cpu.is_classifier:
        assert gpu.correct_sum(xg) == cpu.correct_sum(x)
    gradient = gpu.gradient(xg)
    assert isinstance(gradient, cupy.ndarray) and gradient.dtype == cpu.dtype
    close(gradient, cpu.gradient(x), dtype)
    close(gpu.gradient_sum(xg, cupy.empty_like(xg)), cpu.gradient_sum(x, np.empty_like(x)), dtype)
    rows = np.random.default_rng(1).integers(0, cpu.n_samples, 64).astype(np.int64)
    rows[:3] = [7, 7, cpu.n_samples - 1]  # repeats, the last row
    want = cpu.batch_gradient(x, rows, np.empty_like(x), weight=0.5)
    for given in (rows, cupy.asarray(rows)):  # host rows travel; device rows are used in place
        out = cupy.empty_like(xg)
        assert gpu.batch_gradient(xg, given, out, weight=0.5) is out
        close(out, want, dtype)
        assert gpu.batch_loss(xg, given) == pytest.approx(cpu.batch_loss(x, rows), rel=rtol)


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_chunked_device_passes_equal_one_pass(layout):
    cpu, x = make_network(("softmax", "relu", (16,)), layout, np.float64)
    gpu = cpu.to_device()
    xg = cupy.asarray(x)
    whole_loss, whole = gpu.loss_sum(xg), cupy.asnumpy(gpu.gradient(xg))
    gpu._kernel.chunk = 7  # 300 rows in 43 chunks
    assert gpu.loss_sum(xg) == pytest.approx(whole_loss, rel=1e-12)
    close(gpu.gradient(xg), whole, np.float64)


def test_device_objective_round_trips_and_errors():
    cpu, x = make_network(("logistic", "tanh", (8,)), "csr", np.float64)
    gpu = cpu.to_device()
    assert gpu.to_device() is gpu
    start = gpu.initial_point(3)
    assert isinstance(start, cupy.ndarray) and np.array_equal(cupy.asnumpy(start), cpu.initial_point(3))
    single = gpu.astype(np.float32)
    assert single.xp is cupy and single.dtype == np.float32 and single.is_sparse
    xg = cupy.asarray(x)
    out = cupy.empty_like(xg)
    for rows in (np.array([0, 300], np.int64), cupy.asarray(np.array([-1], np.int64))):
        with pytest.raises(IndexError, match=r"outside \[0, 300\)"):
            gpu.batch_gradient(xg, rows, out)
    with pytest.raises(ValueError, match="out must not be x"):
        gpu.batch_gradient(xg, np.array([0, 1], np.int64), xg)
    with pytest.raises(ValueError, match="x must be a float64 array"):
        gpu.gradient(x)  # a host x on a device objective
    softmax = Softmax(cpu.features, np.where(cpu.labels > 0, 1.0, 0.0), 0.1).to_device()
    assert isinstance(softmax, Softmax) and softmax.xp is cupy and softmax.n_classes == 2
    mlp = MLP(cpu.features, cpu.labels, 0.1, hidden=(4,), head="logistic").to_device()
    assert isinstance(mlp, MLP) and mlp.options == {"hidden": (4,), "activation": "relu", "head": "logistic",
                                                    "n_classes": None}
