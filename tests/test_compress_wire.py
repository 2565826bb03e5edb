"""Wire formats: decode(encode(x)) equals a NumPy reference of the compressor's output,
payload sizes equal the formulas, same seed -> same bytes, parameter errors."""
import math

import numpy as np
import pytest

from mpitrain._native import compress_random, compress_select
from mpitrain.compress import COMPRESSORS, make_compressor
from mpitrain.compress.base import derive_seed

DTYPES = [np.float32, np.float64]
D = 517  # not a multiple of 8 or 32: exercises partial bytes
SEED = 2**63 + 12345


def stream(seed, n, dtype):
    """The kernels' uniforms u_i: 32-bit r_i for float32 (two 16-bit pieces), 64-bit words for float64."""
    return compress_random.uniforms(seed, n, 32 if np.dtype(dtype) == np.float32 else 64)


def vector(dtype, d=D, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(d) * np.exp(rng.uniform(-8, 8, d))
    x[::50] = 0.0
    x[1] = -0.0
    return x.astype(dtype)


def topk_ref(x, k):
    return np.sort(np.lexsort((np.arange(x.size), -np.abs(x.astype(np.float64))))[:k])


def natural_ref(x, u, deterministic=False):
    """Natural compression / biased rounding with uniforms u (documented rule u < p)."""
    ubits, E, M = (np.uint32, 8, 23) if x.dtype == np.float32 else (np.uint64, 11, 52)
    b = x.view(ubits).astype(np.uint64)
    e = (b >> np.uint64(M)) & np.uint64(2**E - 1)
    m = b & np.uint64(2**M - 1)
    if deterministic:
        up = m >= np.uint64(2 ** (M - 1))
    else:
        up = u < m.astype(np.float64) / 2.0**M
    e = np.minimum(e + up.astype(np.uint64), np.uint64(2**E - 1))
    sign = b >> np.uint64(M + E)
    return ((sign << np.uint64(M + E)) | (e << np.uint64(M))).astype(ubits).view(x.dtype)


def dither_ref(x, u, s, norm, natural):
    """One bucket of standard / natural dithering with uniforms u and header norm."""
    t = x.dtype.type
    r = np.abs(x) * (t(1) / norm if norm else t(0))
    if not natural:
        q = np.abs(x) * (t(s) / norm if norm else t(0))
        level = np.floor(q)
        level = np.minimum(level + (u < (q - level)), s).astype(int)
        v = (norm * level.astype(x.dtype)) / t(s)
    else:
        mant, ex = np.frexp(r)
        a = ex - 1
        up_big = u < (2 * mant.astype(np.float64) - 1)
        level_big = np.where(a >= 0, s, a + s + up_big)
        level_small = (u < (r * t(2.0 ** (s - 1)))).astype(int)
        level = np.minimum(np.where(r >= t(2.0 ** (1 - s)), level_big, level_small), s)
        v = np.where(level == 0, t(0), norm * np.ldexp(t(1), level - s).astype(x.dtype))
    return np.where(np.signbit(x) & (level > 0), -v, v).astype(x.dtype)


def dithering_ref(c, x, payload, seed):
    norms = payload[: c.buckets * c.dtype.itemsize].view(c.dtype)
    u = stream(seed, x.size, x.dtype)
    out = np.empty_like(x)
    for j in range(c.buckets):
        sl = slice(j * c.bucket_size, (j + 1) * c.bucket_size)
        ref_norm = np.linalg.norm(x[sl].astype(np.float64), ord=c.p)
        assert math.isclose(norms[j], ref_norm, rel_tol=1e-6)
        out[sl] = dither_ref(x[sl], u[sl], c.levels, norms[j], c.natural)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparsifiers_match_reference(dtype):
    x, t = vector(dtype), np.dtype(dtype).type
    assert np.array_equal(make_compressor("identity", D, dtype=dtype)(x), x)
    ref = np.zeros_like(x)
    ref[topk_ref(x, 40)] = x[topk_ref(x, 40)]
    assert np.array_equal(make_compressor("top_k", D, k=40, dtype=dtype)(x), ref)
    idx = compress_select.randk_indices(SEED, D, 30)
    assert idx.shape == (30,) and np.all(np.diff(idx) > 0)
    for name, scale in (("rand_k", t(D / 30)), ("rand_k_unscaled", t(1))):
        ref = np.zeros_like(x)
        ref[idx] = x[idx] * scale
        assert np.array_equal(make_compressor(name, D, k=30, dtype=dtype)(x, SEED), ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantisers_match_reference(dtype):
    x, t = vector(dtype), np.dtype(dtype).type
    u = stream(SEED, D, dtype)
    assert np.array_equal(make_compressor("natural_compression", D, dtype=dtype)(x, SEED),
                          natural_ref(x, u))
    assert np.array_equal(make_compressor("biased_rounding", D, dtype=dtype)(x),
                          natural_ref(x, u, deterministic=True))
    for name in ("standard_dithering", "natural_dithering"):
        for s, bucket in ((1, None), (3, None), (7, 64), (30, 100)):
            c = make_compressor(name, D, levels=s, bucket_size=bucket, dtype=dtype)
            payload = c.encode(x, SEED)
            assert np.array_equal(c.decode(payload), dithering_ref(c, x, payload, SEED))
    c = make_compressor("natural_dithering", D, levels=4, p=1.0, dtype=dtype)
    payload = c.encode(x, SEED)
    assert np.array_equal(c.decode(payload), dithering_ref(c, x, payload, SEED))
    c = make_compressor("scaled_sign", D, dtype=dtype)
    payload = c.encode(x)
    scale = payload[: c.dtype.itemsize].view(dtype)[0]  # sum order: accumulated in double
    assert math.isclose(scale, np.abs(x.astype(np.float64)).sum() / D, rel_tol=1e-6)
    assert np.array_equal(c.decode(payload), np.where(np.signbit(x), -scale, scale))
    m = np.abs(x).max()
    nz = u < np.abs(x) * (t(1) / m)
    assert np.array_equal(make_compressor("ternary", D, dtype=dtype)(x, SEED),
                          np.where(nz, np.where(np.signbit(x), -m, m), t(0)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_compositions_match_reference(dtype):
    x, t = vector(dtype), np.dtype(dtype).type
    k = 60
    idx = topk_ref(x, k)
    sub = derive_seed(SEED, 1)
    u = stream(sub, k, dtype)
    c = make_compressor("top_k_natural_compression", D, k=k, dtype=dtype)
    ref = np.zeros_like(x)
    ref[idx] = natural_ref(x[idx], u) * t(1 / (1 + 1 / 8))
    assert np.array_equal(c(x, SEED), ref)
    c = make_compressor("top_k_natural_dithering", D, k=k, levels=3, dtype=dtype)
    payload = c.encode(x, SEED)
    inner = c.unbiased_part
    ref = np.zeros_like(x)
    ref[idx] = dithering_ref(inner, x[idx], payload, sub) * t(1 / (1 + inner.omega))
    assert np.array_equal(c.decode(payload), ref)
    # dense composition: biased rounding then ternary
    c = make_compressor("composition", D, biased="biased_rounding", unbiased="ternary",
                        dtype=dtype)
    y = natural_ref(x, None, deterministic=True)
    m = np.abs(y).max()
    nz = stream(sub, D, dtype) < np.abs(y) * (t(1) / m)
    # scale 1 / (1 + omega) with ternary's tight omega = (sqrt(d) - 1) / 2 (it was
    # 1 / sqrt(d) with the former constant sqrt(d) - 1, twice the worst case)
    ref = np.where(nz, np.where(np.signbit(y), -m, m), t(0)) * t(1.0 / (1.0 + (math.sqrt(D) - 1.0) / 2.0))
    assert np.array_equal(c(x, SEED), ref)


def formula_bits(name, d, dtype):
    w = 8 * np.dtype(dtype).itemsize
    lg = math.ceil(math.log2(d))
    return {
        "identity": w * d,
        "top_k": 40 * (w + lg),
        "rand_k": 64 + 40 * w,
        "rand_k_unscaled": 64 + 40 * w,
        "natural_compression": d * (9 if w == 32 else 12),
        "biased_rounding": d * (9 if w == 32 else 12),
        "standard_dithering": w + d * (1 + math.ceil(math.log2(3 + 1))),
        "qsgd": w + d * (1 + math.ceil(math.log2(3 + 1))),
        "natural_dithering": w + d * (1 + math.ceil(math.log2(3 + 1))),
        "scaled_sign": w + d,
        "ternary": w + 2 * d,
        "top_k_natural_dithering": 40 * (lg + 1 + 2) + w,
        "top_k_natural_compression": 40 * (lg + (9 if w == 32 else 12)),
        "composition": 40 * (lg + 2) + w,
    }[name]


def build(name, d, dtype):
    params = {"dtype": dtype}
    if "top_k" in name or "rand_k" in name:
        params["k"] = 40
    if "dithering" in name or name == "qsgd":
        params["levels"] = 3
    if name == "composition":
        params.update(biased="top_k", unbiased="ternary", biased_params={"k": 40})
    return make_compressor(name, d, **params)


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_payload_size_and_determinism(name, dtype):
    x = vector(dtype)
    c = build(name, D, dtype)
    p1 = c.encode(x, SEED)
    assert p1.dtype == np.uint8 and p1.shape == (c.payload_nbytes(),)
    assert c.payload_bits() == formula_bits(name, D, dtype)
    assert c.payload_bits() <= 8 * c.payload_nbytes() < c.payload_bits() + 16
    assert np.array_equal(p1, c.encode(x.copy(), SEED))  # same seed -> same bytes
    y = c.decode(p1)
    assert y.dtype == np.dtype(dtype) and y.shape == (D,)
    if c.random and name not in ("top_k_natural_dithering",):
        assert not np.array_equal(p1, c.encode(x, SEED + 1))
    assert (c.omega is not None) == c.unbiased and (c.delta is not None) == (not c.unbiased)
    with pytest.raises(ValueError, match="payload"):
        c.decode(p1[:-1])


def test_natural_dithering_bits_within_paper_formula():
    for s in (1, 2, 3, 4, 8, 15):
        c = make_compressor("natural_dithering", 1000, levels=s)
        assert c.payload_bits() <= 32 + 1000 * (2 + math.log2(s)) + 1e-9


def test_random_compressors_need_a_seed():
    with pytest.raises(ValueError, match="seed is required"):
        make_compressor("natural_compression", 10).encode(np.ones(10, np.float32))


@pytest.mark.parametrize("name", ["top_k", "rand_k", "rand_k_unscaled", "top_k_natural_dithering"])
def test_bad_k(name):
    with pytest.raises(ValueError, match="k must"):
        make_compressor(name, 10, k=0)
    with pytest.raises(ValueError, match="k must"):
        make_compressor(name, 10, k=11)
    with pytest.raises(ValueError, match="ratio must"):
        make_compressor(name, 10, ratio=0.0)
    with pytest.raises(ValueError, match="exactly one of k or ratio"):
        make_compressor(name, 10, k=1, ratio=0.5)
    assert make_compressor(name, 1000, ratio=0.01).payload_bits() == \
        make_compressor(name, 1000, k=10).payload_bits()


def test_bad_levels_and_names():
    for name in ("standard_dithering", "natural_dithering", "qsgd"):
        with pytest.raises(ValueError, match=r"levels \(s\) must"):
            make_compressor(name, 10, levels=0)
    with pytest.raises(ValueError, match=r"levels \(s\) must be <= 126"):
        make_compressor("natural_dithering", 10, levels=127)
    with pytest.raises(ValueError, match="bucket_size must"):
        make_compressor("qsgd", 10, levels=2, bucket_size=0)
    with pytest.raises(ValueError, match="p .* must be >= 1"):
        make_compressor("natural_dithering", 10, levels=2, p=0.5)
    with pytest.raises(ValueError, match="unknown compressor 'topk'; known: .*top_k"):
        make_compressor("topk", 10)
    with pytest.raises(ValueError, match="d must"):
        make_compressor("identity", 0)
    with pytest.raises(ValueError, match="dtype must"):
        make_compressor("identity", 3, dtype=np.int32)
    with pytest.raises(ValueError, match="x must have shape"):
        make_compressor("identity", 3).encode(np.ones(4))


def test_summable_payloads_sum_by_allreduce():
    """Rand-k payloads with a shared seed: summing their value sections then decoding
    equals the sum of the decoded vectors (what an Allreduce does)."""
    rng = np.random.default_rng(3)
    c = make_compressor("rand_k", 300, k=20, dtype=np.float64)
    assert c.summable and make_compressor("identity", 5).summable
    assert not make_compressor("top_k", 300, k=20).summable
    xs = [rng.standard_normal(300) for _ in range(4)]
    payloads = [c.encode(x, 77) for x in xs]
    total = payloads[0].copy()
    c.values(total)[:] = sum(c.values(p) for p in payloads)
    assert np.allclose(c.decode(total), sum(c.decode(p) for p in payloads), rtol=1e-12)
