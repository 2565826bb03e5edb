"""The quantisers over the whole floating-point range, and ternary's tight omega.

Beznosikov et al., "On biased compression for distributed learning" (docs/papers.md s.2) state
U(omega) (E C(x) = x, E||C(x) - x||^2 <= omega ||x||^2) and B3(delta)
(E||C(x) - x||^2 <= (1 - 1/delta) ||x||^2) for real vectors. In floats they held only in a
middle range: norms computed as sqrt(sum x^2) under- and overflowed (float64 entries beyond
~1e154 or below ~1e-160 decoded to 0), 1 / norm overflowed for subnormal float32 inputs
(ternary and dithering 0.7-6.3 ||x|| off), (norm * level) / s overflowed near the float32
maximum, and so did scaled sign's sum near the float64 maximum and Rand-k's (d/k) x_i.
These tests scale vectors to the ends of each dtype's range and check, over many seeds,
that decode(encode(x)) is finite, unbiased (U) and within the declared constant, or that the
compressor refuses x with a ValueError where the wire format cannot represent C(x)
(natural compression's top binade and subnormal-dominated vectors, norms above the dtype's
maximum, Rand-k's (d/k) x_i above it). Statistics are computed scale-free: x and C(x) are
divided by a power of two near the scale (exact) before any square.

Also here: ternary's omega = (sqrt(d) - 1) / 2 is attained (exact formula and Monte Carlo)
and never exceeded, and the CUDA per-element rules (mpitrain/gpu/cuda/mpt_common.cuh)
compiled for the host give the Cython kernels' bytes in the fallback ranges.
"""
import ctypes
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mpitrain._native import compress_round
from mpitrain.compress import make_compressor

D = 64
SEEDS = 400

# (name, params, how x is normalised before scaling: the quantity that travels or is bounded)
CASES = [
    ("standard_dithering", {"levels": 4}, "p"),
    ("standard_dithering", {"levels": 2, "bucket_size": 16}, "p"),
    ("natural_dithering", {"levels": 3}, "p"),
    ("natural_dithering", {"levels": 3, "p": 1.0}, "p"),
    ("natural_dithering", {"levels": 2, "p": 3.0}, "p"),
    ("ternary", {}, "max"),
    ("natural_compression", {}, "half_max"),
    ("biased_rounding", {}, "half_max"),
    ("scaled_sign", {}, "max"),
    ("rand_k", {"k": 8}, "max_times_d_over_k"),
    ("top_k", {"k": 8}, "max"),
]
# scales of the vector's normalising quantity: subnormal, tiny, ordinary, huge, near the maximum
SCALES = {
    np.float32: [1e-40, 1e-30, 1.0, 1e30, 3e38],
    np.float64: [1e-310, 1e-300, 1e-160, 1.0, 1e154, 1e300, 1e308],
}


def refused(name, dtype, scale):
    """Where the compressor must raise ValueError instead: natural compression and biased
    rounding of vectors whose entries are all subnormal (no subnormal powers of two)."""
    subnormal = scale < np.finfo(dtype).smallest_normal
    return name in ("natural_compression", "biased_rounding") and subnormal


def bases():
    rng = np.random.default_rng(20240611)
    yield rng.standard_normal(D) * np.exp(rng.uniform(-2, 2, D))  # spread magnitudes
    x = np.zeros(D)
    x[:4] = [1.0, -2.0, 0.75, 0.25]  # sparse
    yield x


def scaled_input(c, how, base, scale, dtype):
    """base scaled so that its normalising quantity is ``scale``, rounded to the dtype."""
    if how == "p":
        norm = np.linalg.norm(base, ord=c.p) if c.bucket_size == D else max(
            np.linalg.norm(base[j:j + c.bucket_size], ord=c.p) for j in range(0, D, c.bucket_size))
    elif how == "max":
        norm = np.abs(base).max()
    elif how == "half_max":
        norm = 2 * np.abs(base).max()
    else:
        norm = np.abs(base).max() * c.d / c.k
    unit = base / norm  # every quantity <= 1
    e = math.frexp(scale)[1]  # scale = m 2^e, applied as m then 2^e (exact) to avoid overflow
    return np.ldexp(unit * math.ldexp(scale, -e), e).astype(dtype), e


def samples(c, x, e):
    """C(x) for SEEDS seeds and x, both divided by 2^e (exact) and in float64."""
    ys = np.stack([c(x, seed) for seed in range(SEEDS)])
    assert np.isfinite(ys).all(), "decoded vector not finite"
    return np.ldexp(ys.astype(np.float64), -e), np.ldexp(x.astype(np.float64), -e)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name,params,how", CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)])
def test_range_finite_unbiased_and_bounded(name, params, how, dtype):
    c = make_compressor(name, D, dtype=dtype, **params)
    for scale in SCALES[dtype]:
        for base in bases():
            x, e = scaled_input(c, how, base, scale, dtype)
            assert np.isfinite(x).all() and np.any(x != 0)
            if refused(name, dtype, scale):
                with pytest.raises(ValueError, match="subnormal"):
                    c.encode(x, 1)
                continue
            ys, xs = samples(c, x, e)
            nx2 = xs @ xs
            err = ((ys - xs) ** 2).sum(axis=1)
            var, se = err.mean(), err.std() / np.sqrt(SEEDS)
            where = f"scale {scale:g}, x[:3] = {xs[:3]}"
            if c.unbiased:
                assert var - 4 * se <= c.omega * nx2 * (1 + 1e-6), (where, var / nx2, c.omega)
                # ||mean - x||^2 has expectation var / SEEDS; allow 5x, plus the dtype's rounding
                # (relative, and absolute near the subnormals: half an ulp of the smallest one)
                bias2 = ((ys.mean(axis=0) - xs) ** 2).sum()
                tiny = np.ldexp(float(np.finfo(dtype).smallest_subnormal), -e)
                slack = (SEEDS * np.finfo(dtype).eps) ** 2 * nx2 + D * tiny ** 2
                assert bias2 <= 5 * var / SEEDS + slack, (where, bias2 / nx2, var / nx2)
            else:
                bound = (1 - 1 / c.delta) * nx2
                assert err.mean() - 4 * se <= bound * (1 + 1e-5) + D * 1e-12 * nx2, (where, err.mean() / nx2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_dithering_norms_are_exact_at_range_ends(dtype):
    """The transmitted bucket norms equal ||x||_p (p = 1, 2, 3) computed on x scaled by a
    power of two into the middle range; before, float64 entries at 1e-160 gave 0 and at 1e154
    gave inf (sqrt(sum x^2) under- and overflowed), and p = 3 failed further in."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal(D) * np.exp(rng.uniform(-3, 3, D))
    scales = [1e-40, 1e-30, 3e38] if dtype == np.float32 else [1e-310, 1e-160, 1e-110, 1e103, 1e154, 1e308]
    for p, name, params in ((2.0, "standard_dithering", {}), (1.0, "natural_dithering", {"p": 1.0}),
                            (3.0, "natural_dithering", {"p": 3.0})):
        c = make_compressor(name, D, levels=3, dtype=dtype, **params)
        for scale in scales:
            x, e = scaled_input(c, "p", base, scale, dtype)
            norm = c.encode(x, 5)[: dtype().itemsize].view(dtype)[0]
            want = math.ldexp(np.linalg.norm(np.ldexp(x.astype(np.float64), -e), ord=p), e)
            rel = 1e-6 if dtype == np.float32 else 1e-13  # the header's rounding (and pow's)
            tiny = float(np.finfo(dtype).smallest_subnormal)  # a subnormal header: absolute
            assert math.isclose(float(norm), want, rel_tol=rel, abs_tol=tiny), (p, scale, norm, want)


def test_standard_dithering_decoder_near_the_maximum():
    """(norm * level) / s overflowed for norms near the dtype's maximum (float32 vectors of
    norm ~3e38 decoded to inf); the decoder now uses norm * (level / s) there, and keeps the
    old order (and bits) below."""
    for dtype in (np.float32, np.float64):
        big = np.finfo(dtype).max
        for norm in (big, big * dtype(0.6), dtype(1.75)):
            codes = np.array([2 * lv + sign for lv in range(5) for sign in (0, 1)], np.uint64)
            bits = ((codes[:, None] >> np.arange(4, dtype=np.uint64)) & 1).astype(np.uint8)
            buf = np.packbits(bits.ravel(), bitorder="little")
            out = np.empty(codes.size, dtype)
            compress_round.dither_decode(buf, 4, codes.size, False, np.array([norm], dtype), out)
            level = (codes >> 1).astype(dtype)
            with np.errstate(over="ignore"):
                old = (norm * level) / dtype(4)
            want = np.where(np.isinf(old), norm * (level / dtype(4)), old)
            want = np.where(codes & 1, -want, want)
            assert np.isfinite(out).all() and np.array_equal(out, want), (dtype, norm, out)


def test_scaled_sign_header_near_the_float64_maximum():
    """||x||_1 / d of float64 entries near DBL_MAX: the plain double sum overflowed to inf."""
    rng = np.random.default_rng(4)
    x = rng.uniform(0.5, 1.0, D) * np.where(rng.random(D) < 0.5, -1, 1) * 1.7e308
    scale = make_compressor("scaled_sign", D, dtype=np.float64).encode(x)[:8].view(np.float64)[0]
    assert math.isclose(scale, math.ldexp(np.abs(np.ldexp(x, -1000)).sum() / D, 1000), rel_tol=1e-14)
    x[7] = np.inf  # an infinite entry still gives an infinite scale, as before
    assert np.isinf(make_compressor("scaled_sign", D, dtype=np.float64).encode(x)[:8].view(np.float64)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_natural_compression_refuses_what_its_code_cannot_hold(dtype):
    """No power of two above 2^emax and none below the smallest normal in the code: finite
    |x_i| that could round up to inf, and subnormal-dominated vectors, raise ValueError (they
    decoded to inf, or with variance up to ~N / |x_i| times the bound 1/8); the edges of the
    accepted range encode."""
    info = np.finfo(dtype)
    top = math.ldexp(1.0, int(info.maxexp) - 1)
    nat = make_compressor("natural_compression", D, dtype=dtype)
    rnd = make_compressor("biased_rounding", D, dtype=dtype)
    x = np.linspace(-1, 1, D).astype(dtype)
    for value, nat_ok, rnd_ok in ((top, True, True), (1.25 * top, False, True), (1.5 * top, False, False)):
        y = x.copy()
        y[5] = dtype(value)
        for c, ok in ((nat, nat_ok), (rnd, rnd_ok)):
            if ok:
                assert np.isfinite(c(y, 3)).all()
            else:
                with pytest.raises(ValueError, match="round up past"):
                    c.encode(y, 3)
    y = x.copy()
    y[9] = np.inf  # inf stays inf (the documented code 255), not an error
    assert np.isinf(nat(y, 3)[9])
    _, tiny = nat.input_range()
    sub = np.full(D, info.smallest_normal / 4, dtype)  # all subnormal: refused
    for c in (nat, rnd):
        with pytest.raises(ValueError, match="subnormal"):
            c.encode(sub, 3)
    ok = sub.copy()
    ok[0] = dtype(tiny * 1.01)  # one entry large enough: the excess is below eps ||x||^2
    assert np.isfinite(nat(ok, 3)).all() and np.isfinite(rnd(ok)).all()


@pytest.fixture(params=[0, 1, 2], ids=["scalar", "avx2", "avx512"])
def simd_cap(request):
    yield compress_round.simd_level(request.param)
    compress_round.simd_level(2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_natural_range_statistics_at_every_simd_level(dtype, simd_cap):
    """natural_encode's (largest finite |x_i|, some nonzero subnormal), gathered inside the
    vectorised code loop (compress_simd.h), against NumPy: inf and NaN ignored, -0.0 and 0
    not subnormal, lengths that end inside a vector step and a block."""
    info = np.finfo(dtype)
    rng = np.random.default_rng(12)
    uint = np.uint32 if dtype == np.float32 else np.uint64
    width = 9 if dtype == np.float32 else 12
    for d in (1, 7, 17, 2047, 2049, 5000):
        x = (rng.standard_normal(d) * 1e-3).astype(dtype)
        cases = [x]
        for value in (np.inf, -np.inf, np.nan, info.smallest_subnormal, -info.smallest_normal * 0.5,
                      -0.0, info.max, -info.max):
            y = x.copy()
            y[rng.integers(0, d)] = value
            cases.append(y)
        cases += [np.zeros(d, dtype), np.full(d, -np.nan, dtype), np.full(d, info.smallest_subnormal, dtype)]
        for y in cases:
            k = y.view(uint) & uint(2 ** (8 * y.itemsize - 1) - 1)
            finite = np.where(k < np.array([np.inf], dtype).view(uint)[0], k, 0)
            want = (float(finite.max().astype(uint).reshape(1).view(dtype)[0]),
                    bool(((k > 0) & (k < np.array([info.smallest_normal], dtype).view(uint)[0])).any()))
            for det in (False, True):
                out = np.empty((d * width + 7) // 8, np.uint8)
                assert compress_round.natural_encode(y, 3, det, out) == want, (d, y[:3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_dithering_refuses_norms_above_the_dtype(dtype):
    """A bucket of finite entries whose norm exceeds the dtype's maximum has no header value:
    ValueError naming the bucket, where the decoded vector was inf or 0."""
    big = np.full(D, np.finfo(dtype).max / 4, dtype)
    for name, params in (("standard_dithering", {}), ("natural_dithering", {"p": 1.0, "bucket_size": 32})):
        c = make_compressor(name, D, levels=3, dtype=dtype, **params)
        with pytest.raises(ValueError, match="bucket 0"):
            c.encode(big, 1)
        ok = big.copy()
        ok[:] = np.finfo(dtype).max / (4 * D)  # norm <= max / 4: encodes, finite
        assert np.isfinite(c(ok, 1)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_rand_k_refuses_values_whose_scaled_copy_overflows(dtype):
    """Scaled Rand-k decodes (d/k) x_i: a kept finite |x_i| above max k / d raised nothing and
    decoded to inf; now a ValueError. At the limit it encodes; a kept inf stays inf."""
    c = make_compressor("rand_k", D, k=8, dtype=dtype)
    limit = np.finfo(dtype).max / np.float64(c.scale)
    with pytest.raises(ValueError, match="rand_k"):
        c.encode(np.full(D, dtype(limit * 1.01)), 9)
    assert np.isfinite(c(np.full(D, dtype(limit * 0.99)), 9)).all()
    x = np.full(D, np.inf, dtype)
    assert np.isinf(c(x, 9)[c.select(x, 9)]).all()
    unscaled = make_compressor("rand_k_unscaled", D, k=8, dtype=dtype)
    assert np.isfinite(unscaled(np.full(D, np.finfo(dtype).max), 9)).all()


# ---- ternary: omega = (sqrt(d) - 1) / 2 is the exact worst case

def maximiser(d):
    """x = (1, t, ..., t), t = 1 / (sqrt(d) + 1): where ||x||_1 ||x||_inf / ||x||^2 - 1 peaks."""
    x = np.full(d, 1.0 / (math.sqrt(d) + 1.0))
    x[0] = 1.0
    return x


def ternary_variance(x):
    """E||C(x) - x||^2 of ternary quantisation with m = ||x||_inf, summed per entry:
    Var(m b_i) = m^2 p_i (1 - p_i), p_i = |x_i| / m (= ||x||_1 ||x||_inf - ||x||^2)."""
    a = np.abs(x)
    m = a.max()
    return float((m * m * (a / m) * (1 - a / m)).sum())


@pytest.mark.parametrize("d", [1, 2, 3, 10, 96, 1000, 100_000])
def test_ternary_omega_is_attained(d):
    c = make_compressor("ternary", d, dtype=np.float64)
    x = maximiser(d)
    assert math.isclose(c.omega, (math.sqrt(d) - 1) / 2, rel_tol=1e-15)
    exact = ternary_variance(x)
    closed = np.abs(x).sum() * np.abs(x).max() - x @ x  # the formula of ternary.py
    assert math.isclose(exact, closed, rel_tol=1e-12, abs_tol=1e-12)
    assert math.isclose(exact, c.omega * (x @ x), rel_tol=1e-12, abs_tol=1e-12), (exact, c.omega * (x @ x))


def test_ternary_omega_is_never_exceeded():
    rng = np.random.default_rng(8)
    for d in (2, 5, 17, 96, 1000):
        omega = make_compressor("ternary", d).omega
        xs = [rng.standard_normal(d), rng.random(d) ** 3, rng.standard_cauchy(d), np.ones(d),
              maximiser(d) * (1 + 1e-3 * rng.standard_normal(d))]
        xs += [rng.standard_normal(d) * np.exp(rng.uniform(-5, 5, d)) for _ in range(200)]
        worst = max(ternary_variance(x) / (x @ x) for x in xs)
        assert worst <= omega * (1 + 1e-12), (d, worst, omega)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_ternary_monte_carlo_at_the_maximiser(dtype):
    """On the maximiser the kernels' empirical variance is omega ||x||^2 (within sampling
    error), half the former bound (sqrt(d) - 1) ||x||^2; and under error feedback's scaling
    C / (1 + omega) (contractive_scaling.py) the contraction bound 1 - 1/(1 + omega) holds
    with equality there, on every draw: m = 1 and 1 / (1 + omega) = 2 t, so each entry
    x_i = t decodes to 2 t or 0, an error of t either way. The tighter omega is thus valid
    for error feedback and the largest scale that is."""
    from mpitrain.algorithms.contractive_scaling import ContractiveScaling

    d, seeds = 96, 3000
    c = make_compressor("ternary", d, dtype=dtype)
    x = maximiser(d).astype(dtype)
    xs = x.astype(np.float64)
    ys = np.stack([c(x, s) for s in range(seeds)]).astype(np.float64)
    err = ((ys - xs) ** 2).sum(axis=1)
    var, se = err.mean(), err.std() / np.sqrt(seeds)
    nx2 = xs @ xs
    assert abs(var - c.omega * nx2) <= 4 * se, (var / nx2, c.omega)
    assert abs(var / ((math.sqrt(d) - 1) * nx2) - 0.5) <= 4 * se / ((math.sqrt(d) - 1) * nx2)
    scaled = ContractiveScaling(c)
    assert math.isclose(scaled.delta, (math.sqrt(d) + 1) / 2, rel_tol=1e-12)
    zs = ys * np.float64(scaled.scale)
    err = ((zs - xs) ** 2).sum(axis=1)
    bound = (1 - 1 / scaled.delta) * nx2
    rel = 1e-5 if dtype == np.float32 else 1e-12  # x, the scale and C(x) rounded to the dtype
    assert np.allclose(err, bound, rtol=rel, atol=0), (err.min() / nx2, err.max() / nx2, bound / nx2)


# ---- the CUDA rules in the fallback ranges, compiled for the host (as test_gpu_host_rules.py)

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
CUDA_DIR = Path(__file__).resolve().parents[1] / "mpitrain" / "gpu" / "cuda"
HARNESS = r"""
#include "mpt_common.cuh"
// the loops of cuda/compress_round.cu's ternary_encode / dither_encode / dither_decode
template <typename T>
static void tern(const T *x, mpt_i64 n, mpt_u64 seed, T mx, mpt_u8 *out, mpt_i64 nb) {
    const T inv = mx > (T)0 ? ((T)1) / mx : (T)0;
    for (mpt_i64 g = 0; g < (n + 7) / 8; g++)
        mpt_pack_group(g, n, 2, out, nb, [&](mpt_i64 j) { return mpt_ternary_code(x[j], seed, j, inv, mx); });
}
template <typename T>
static void denc(const T *x, mpt_i64 n, mpt_u64 seed, int levels, mpt_i64 bucket, int natural,
                 const T *norms, int b, mpt_u8 *out, mpt_i64 nb) {
    for (mpt_i64 g = 0; g < (n + 7) / 8; g++)
        mpt_pack_group(g, n, b, out, nb, [&](mpt_i64 j) {
            return mpt_dither_code(x[j], seed, j, levels, natural, norms[j / bucket]); });
}
template <typename T>
static void ddec(const mpt_u8 *buf, mpt_i64 nb, int levels, mpt_i64 bucket, int natural, const T *norms,
                 int b, mpt_i64 n, T *out) {
    for (mpt_i64 i = 0; i < n; i++)
        out[i] = mpt_dither_value<T>(mpt_unpack_code(buf, nb, i, b), levels, natural, norms[i / bucket]);
}
#define INST(T, S) \
extern "C" void tern_##S(const T *x, mpt_i64 n, mpt_u64 seed, T mx, mpt_u8 *out, mpt_i64 nb) \
    { tern<T>(x, n, seed, mx, out, nb); } \
extern "C" void denc_##S(const T *x, mpt_i64 n, mpt_u64 seed, int levels, mpt_i64 bucket, int natural, \
    const T *norms, int b, mpt_u8 *out, mpt_i64 nb) { denc<T>(x, n, seed, levels, bucket, natural, norms, b, out, nb); } \
extern "C" void ddec_##S(const mpt_u8 *buf, mpt_i64 nb, int levels, mpt_i64 bucket, int natural, \
    const T *norms, int b, mpt_i64 n, T *out) { ddec<T>(buf, nb, levels, bucket, natural, norms, b, n, out); }
INST(float, f32)
INST(double, f64)
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    if CXX is None:
        pytest.skip("no C++ compiler (g++/c++/clang++) to build the CUDA rules for the host")
    tmp = tmp_path_factory.mktemp("range_rules")
    (tmp / "harness.cpp").write_text(HARNESS)
    lib = tmp / "harness.so"
    subprocess.run([CXX, "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-I", str(CUDA_DIR),
                    str(tmp / "harness.cpp"), "-o", str(lib)], check=True, capture_output=True, timeout=120)
    return ctypes.CDLL(str(lib))


def ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def extreme_inputs(dtype, d=1003):
    """Vectors whose maximum (ternary's m) or 2-norm (dithering's header) is subnormal,
    tiny, huge or near the maximum: every fallback branch of the rules."""
    rng = np.random.default_rng(11)
    base = rng.standard_normal(d) * np.exp(rng.uniform(-4, 4, d))
    base[::97] = 0.0
    scales = ([1e-43, 1e-41, 1e-39, 2e-38, 1e37, 1.5e38, 3e38] if dtype == np.float32
              else [1e-318, 1e-315, 1e-309, 1e-300, 1e300, 1e306, 1e308])
    for s in scales:
        for norm in (np.abs(base).max(), np.linalg.norm(base)):
            yield np.ldexp(base / norm * math.ldexp(s, -math.frexp(s)[1]), math.frexp(s)[1]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_cuda_rules_equal_cython_in_fallback_ranges(rules, dtype):
    suffix = "f32" if dtype == np.float32 else "f64"
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    k = dtype().itemsize
    n64 = ctypes.c_int64
    for x in extreme_inputs(dtype):
        d = x.size
        t = make_compressor("ternary", d, dtype=dtype).encode(x, 77)
        got = np.zeros(t.size - k, np.uint8)
        getattr(rules, f"tern_{suffix}")(ptr(x), n64(d), ctypes.c_uint64(77), scalar(t[:k].view(dtype)[0]),
                                         ptr(got), n64(got.size))
        assert np.array_equal(got, t[k:]), ("ternary", x[:3])
        for name, params in (("standard_dithering", {"levels": 5}), ("natural_dithering", {"levels": 3}),
                             ("standard_dithering", {"levels": 1}),
                             ("standard_dithering", {"levels": 7, "bucket_size": 100})):
            c = make_compressor(name, d, dtype=dtype, **params)
            try:
                payload = c.encode(x, 5)
            except ValueError:
                continue  # a norm above the dtype: refused on both sides alike
            cut = c.buckets * k
            norms = np.ascontiguousarray(payload[:cut].view(dtype))
            b = 1 + c.levels.bit_length()
            got = np.zeros(payload.size - cut, np.uint8)
            getattr(rules, f"denc_{suffix}")(ptr(x), n64(d), ctypes.c_uint64(5), ctypes.c_int(c.levels),
                                             n64(c.bucket_size), ctypes.c_int(int(c.natural)), ptr(norms),
                                             ctypes.c_int(b), ptr(got), n64(got.size))
            assert np.array_equal(got, payload[cut:]), (name, x[:3])
            out = np.empty(d, dtype)
            codes = np.ascontiguousarray(payload[cut:])
            getattr(rules, f"ddec_{suffix}")(ptr(codes), n64(codes.size), ctypes.c_int(c.levels),
                                             n64(c.bucket_size), ctypes.c_int(int(c.natural)), ptr(norms),
                                             ctypes.c_int(b), n64(d), ptr(out))
            assert np.array_equal(out.view(np.uint8), c.decode(payload).view(np.uint8)), (name, x[:3])
    # the decoder's overflow branch: a norm near the maximum, every level
    big = np.array([np.finfo(dtype).max * dtype(0.9)], dtype)
    codes = np.arange(16, dtype=np.uint8)
    buf = np.ascontiguousarray((codes[0::2] | codes[1::2] << 4).astype(np.uint8))
    want, got = np.empty(16, dtype), np.empty(16, dtype)
    compress_round.dither_decode(buf, 7, 16, False, big, want)
    getattr(rules, f"ddec_{suffix}")(ptr(buf), n64(buf.size), ctypes.c_int(7), n64(16), ctypes.c_int(0),
                                     ptr(big), ctypes.c_int(4), n64(16), ptr(got))
    assert np.isfinite(want).all() and np.array_equal(got.view(np.uint8), want.view(np.uint8))
