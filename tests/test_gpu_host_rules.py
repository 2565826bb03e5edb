"""The CUDA kernels' per-element rules (mpitrain/gpu/cuda/mpt_common.cuh), compiled for the
host with a C++ compiler, against the Cython kernels: same payload bytes for fixed seeds.

The CUDA kernels are these rules inside grid loops (see tests/gpu_host_rules.cpp), so this
checks on a machine without a GPU the part of the bit-equality claim that does not depend on
the launch. Skips when no C++ compiler is found.
"""
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mpitrain.compress import make_compressor
from mpitrain.gpu import CUDA_DIR

HERE = Path(__file__).resolve().parent
CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
P8, PI64 = ctypes.POINTER(ctypes.c_uint8), ctypes.c_int64


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    if CXX is None:
        pytest.skip("no C++ compiler (g++/c++/clang++) to build the CUDA rules for the host")
    lib = tmp_path_factory.mktemp("rules") / "gpu_host_rules.so"
    subprocess.run([CXX, "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC",
                    "-I", str(CUDA_DIR), str(HERE / "gpu_host_rules.cpp"), "-o", str(lib)],
                   check=True, capture_output=True, timeout=120)
    return ctypes.CDLL(str(lib))


def ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def vector(dtype, d=4099, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(d) * np.exp(rng.uniform(-8, 8, d))).astype(dtype)
    x[:6] = [0.0, -0.0, 1.5, -3.0, 2.0 ** -130 if dtype == np.float32 else 1e-310, 1.0]
    return x


SUFFIX = {np.float32: "f32", np.float64: "f64"}
SCALAR = {np.float32: ctypes.c_float, np.float64: ctypes.c_double}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["natural_compression", "biased_rounding"])
def test_natural_rules_equal_cython(rules, dtype, name):
    x = vector(dtype)
    comp = make_compressor(name, x.size, dtype=dtype)
    for seed in (0, 7, 2**64 - 1):
        want = comp.encode(x, seed if comp.random else None)
        got = np.zeros_like(want)
        getattr(rules, f"natural_encode_{SUFFIX[dtype]}")(
            ptr(x), PI64(x.size), ctypes.c_uint64(seed if comp.random else 0),
            ctypes.c_int(int(comp.deterministic)), ptr(got), PI64(got.size))
        assert np.array_equal(got, want)
        out = np.empty_like(x)
        getattr(rules, f"natural_decode_{SUFFIX[dtype]}")(ptr(want), PI64(want.size), PI64(x.size), ptr(out))
        assert np.array_equal(out.view(np.uint8), comp.decode(want).view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,params", [
    ("standard_dithering", dict(levels=4)), ("standard_dithering", dict(levels=255, bucket_size=512)),
    ("natural_dithering", dict(levels=3)), ("natural_dithering", dict(levels=8, p=1.0, bucket_size=1000)),
    ("natural_dithering", dict(levels=2, p=float("inf"))),
])
def test_dither_rules_equal_cython(rules, dtype, name, params):
    x = vector(dtype, seed=3)
    comp = make_compressor(name, x.size, dtype=dtype, **params)
    cut = comp.buckets * comp.dtype.itemsize
    b = 1 + comp.levels.bit_length()
    for seed in (1, 99):
        want = comp.encode(x, seed)
        norms = np.ascontiguousarray(want[:cut].view(dtype))  # the CPU's header
        got = np.zeros(want.size - cut, np.uint8)
        getattr(rules, f"dither_encode_{SUFFIX[dtype]}")(
            ptr(x), PI64(x.size), ctypes.c_uint64(seed), ctypes.c_int(comp.levels),
            PI64(comp.bucket_size), ctypes.c_int(int(comp.natural)), ptr(norms), ctypes.c_int(b),
            ptr(got), PI64(got.size))
        assert np.array_equal(got, want[cut:])
        out = np.empty_like(x)
        codes = np.ascontiguousarray(want[cut:])
        getattr(rules, f"dither_decode_{SUFFIX[dtype]}")(
            ptr(codes), PI64(codes.size), ctypes.c_int(comp.levels), PI64(comp.bucket_size),
            ctypes.c_int(int(comp.natural)), ptr(norms), ctypes.c_int(b), PI64(x.size), ptr(out))
        assert np.array_equal(out.view(np.uint8), comp.decode(want).view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sign_and_ternary_rules_equal_cython(rules, dtype):
    x = vector(dtype, seed=5)
    k = dtype().itemsize
    sign = make_compressor("scaled_sign", x.size, dtype=dtype).encode(x)
    got = np.zeros(sign.size - k, np.uint8)
    getattr(rules, f"sign_encode_{SUFFIX[dtype]}")(ptr(x), PI64(x.size), ptr(got), PI64(got.size))
    assert np.array_equal(got, sign[k:])
    for seed in (0, 12345):
        ternary = make_compressor("ternary", x.size, dtype=dtype).encode(x, seed)
        mx = ternary[:k].view(dtype)[0]
        got = np.zeros(ternary.size - k, np.uint8)
        getattr(rules, f"ternary_encode_{SUFFIX[dtype]}")(
            ptr(x), PI64(x.size), ctypes.c_uint64(seed), SCALAR[dtype](mx), ptr(got), PI64(got.size))
        assert np.array_equal(got, ternary[k:])


@pytest.mark.parametrize("b", [1, 2, 3, 9, 12, 17, 24, 31, 32])
def test_pack_rules_equal_cython(rules, b):
    from mpitrain._native import compress_pack

    rng = np.random.default_rng(b)
    for n in (1, 7, 8, 9, 1001):
        codes = rng.integers(0, 2**b, n, dtype=np.int64)
        want = compress_pack.pack_bits(codes, b)
        got = np.zeros_like(want)
        rules.pack_i64(ptr(codes), PI64(n), ctypes.c_int(b), ptr(got), PI64(got.size))
        assert np.array_equal(got, want)
        back = np.zeros(n, np.int64)
        rules.unpack_i64(ptr(want), PI64(want.size), PI64(n), ctypes.c_int(b), ptr(back))
        assert np.array_equal(back, codes)


def test_row_terms_equal_cython_objective(rules):
    """Slopes and losses of the CUDA rules give the Cython objective's loss and gradient."""
    from mpitrain.objectives import make_objective

    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 7))
    x = rng.standard_normal(7) * 30  # large margins: the overflow-free branches
    for name, kind, y in (("logistic", 0, np.sign(rng.standard_normal(50))),
                          ("least_squares", 1, rng.standard_normal(50))):
        obj = make_objective(name, a, y, 0.0)
        z = np.ascontiguousarray(a @ x)
        slope, loss = np.empty(50), np.empty(50)
        rules.row_terms(ctypes.c_int(kind), ptr(z), ptr(np.ascontiguousarray(y)), PI64(50),
                        ptr(slope), ptr(loss))
        assert np.isclose(loss.sum(), obj.loss_sum(x), rtol=1e-12)
        assert np.allclose(a.T @ slope, obj.gradient_sum(x, np.empty(7)), rtol=1e-10, atol=1e-12)
