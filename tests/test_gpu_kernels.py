"""CPU (Cython) and GPU (CuPy) kernels give the same results: one test body per check, run
with ``xp`` = NumPy and ``xp`` = CuPy. The CuPy cases skip with the reason when CuPy or a GPU
is missing.

Payloads must be equal bit for bit for fixed seeds (float32 everywhere; in float64 the
header sums of dithering and scaled sign may differ in the last bit, see
mpitrain.gpu.compress_round, and are compared to 1 ulp); gradients, losses and clipping
agree within the float tolerance of the dtype.
"""
import numpy as np
import pytest
import scipy.sparse

from mpitrain import backend
from mpitrain.clip import clip_by_norm, global_norm
from mpitrain.compress import make_compressor
from mpitrain.objectives import make_objective

REASON = backend.gpu_unavailable_reason()
XP = [pytest.param("numpy", id="numpy"),
      pytest.param("cupy", id="cupy", marks=pytest.mark.skipif(REASON is not None, reason=f"gpu: {REASON}"))]


@pytest.fixture(params=XP)
def xp(request):
    return np if request.param == "numpy" else backend.cupy_module()


def on(xp, a):
    return a if xp is np else backend.to_device(a)


def host(a):
    return np.asarray(backend.to_host(a))


def vector(dtype, d=10007, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(d) * np.exp(rng.uniform(-6, 6, d))).astype(dtype)
    x[:4] = np.array([0.0, -0.0, 1.5, -1.5], dtype)[:d]
    x[100:120] = x[min(7, d - 1)]  # ties for top-k
    return x


CASES = [
    ("identity", {}), ("top_k", dict(ratio=0.01)), ("top_k", dict(k=20)), ("rand_k", dict(ratio=0.01)),
    ("rand_k", dict(ratio=0.8)), ("rand_k_unscaled", dict(k=33)), ("natural_compression", {}),
    ("biased_rounding", {}), ("standard_dithering", dict(levels=4)),
    ("standard_dithering", dict(levels=16, bucket_size=1000)), ("natural_dithering", dict(levels=3)),
    ("natural_dithering", dict(levels=5, p=1.0, bucket_size=999)), ("scaled_sign", {}), ("ternary", {}),
    ("top_k_natural_dithering", dict(ratio=0.01, levels=2)), ("top_k_natural_compression", dict(ratio=0.02)),
]
HEADER_SUMS = {"standard_dithering", "natural_dithering", "scaled_sign", "top_k_natural_dithering"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_payload_equals_cpu(xp, name, params, dtype):
    x = vector(dtype)
    comp = make_compressor(name, x.size, dtype=dtype, **params)
    for seed in (3, 2**63 + 5):
        want = comp.encode(x, seed)
        payload = comp.encode(on(xp, x), seed)
        assert backend.array_module(payload) is xp and payload.dtype == np.uint8
        got = host(payload)
        decoded = host(comp.decode(payload))
        assert backend.array_module(comp.decode(payload)) is xp
        if dtype == np.float64 and name in HEADER_SUMS and not np.array_equal(got, want):
            # summation order: the header may differ by an ulp; values then within 1e-15
            np.testing.assert_allclose(decoded, comp.decode(want), rtol=1e-14, atol=0)
            continue
        assert np.array_equal(got, want), f"{name} payload differs (seed {seed})"
        assert np.array_equal(decoded.view(np.uint8), comp.decode(want).view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_selection_equals_cpu(xp, dtype):
    from mpitrain._native import compress_select

    kernels = backend.kernels_for(on(xp, np.zeros(1)), "compress_select")
    for d, k in ((1, 1), (17, 5), (300000, 3000), (200000, 150000)):
        x = vector(dtype, d=d, seed=d)
        assert np.array_equal(host(kernels.topk_indices(on(xp, x), k)), compress_select.topk_indices(x, k))
        assert np.array_equal(host(kernels.topk_indices(on(xp, np.zeros(d, dtype)), k)), np.arange(k))
    for d, k, seed in ((10, 3, 0), (10, 8, 1), (100000, 1000, 2), (100000, 70000, 3)):
        assert np.array_equal(host(kernels.randk_indices(seed, d, k)),
                              compress_select.randk_indices(seed, d, k))


def test_pack_equals_cpu(xp):
    from mpitrain._native import compress_pack

    kernels = backend.kernels_for(on(xp, np.zeros(1)), "compress_pack")
    rng = np.random.default_rng(0)
    for b in (1, 3, 9, 17, 32):
        codes = rng.integers(0, 2**b, 1001, dtype=np.int64)
        packed = kernels.pack_bits(on(xp, codes), b)
        assert np.array_equal(host(packed), compress_pack.pack_bits(codes, b))
        assert np.array_equal(host(kernels.unpack_bits(packed, 1001, b)), codes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipping_equals_cpu(xp, dtype):
    g = vector(dtype, seed=4)
    norm = global_norm(g)
    assert global_norm(on(xp, g)) == pytest.approx(norm, rel=1e-12)
    for max_norm in (norm / 3, norm * 2):
        want, _ = clip_by_norm(g, max_norm)
        got, got_norm = clip_by_norm(on(xp, g), max_norm)
        assert backend.array_module(got) is xp and got_norm == pytest.approx(norm, rel=1e-12)
        np.testing.assert_allclose(host(got), want, rtol=4 * np.finfo(dtype).eps, atol=0)
        assert global_norm(got) <= max_norm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("name", ["logistic", "least_squares"])
def test_objective_equals_cpu(xp, name, sparse, dtype):
    rng = np.random.default_rng(1)
    a = scipy.sparse.random(300, 50, density=0.2, random_state=2, format="csr").astype(dtype)
    a = a if sparse else a.toarray()
    y = np.sign(rng.standard_normal(300)).astype(dtype)
    cpu = make_objective(name, a, y, 0.01)
    obj = cpu if xp is np else cpu.to_device()
    x = rng.standard_normal(50).astype(dtype)
    rows = rng.integers(0, 300, 16).astype(np.int64)
    rtol = 1e-5 if dtype == np.float32 else 1e-11
    assert obj.loss(on(xp, x)) == pytest.approx(cpu.loss(x), rel=rtol)
    assert obj.batch_loss(on(xp, x), on(xp, rows)) == pytest.approx(cpu.batch_loss(x, rows), rel=rtol)
    np.testing.assert_allclose(host(obj.gradient(on(xp, x))), cpu.gradient(x), rtol=rtol, atol=rtol * 1e-2)
    out = on(xp, np.empty(50, dtype))
    obj.batch_gradient(on(xp, x), on(xp, rows), out, weight=0.5)
    np.testing.assert_allclose(host(out), cpu.batch_gradient(x, rows, np.empty(50, dtype), weight=0.5),
                               rtol=rtol, atol=rtol * 1e-2)
    with pytest.raises(IndexError):
        obj.batch_gradient(on(xp, x), on(xp, np.array([300], np.int64)), out)
