"""The float32 dithering encoders (standard and natural, docs/papers.md s.2) against a NumPy statement
of their rules, at every SIMD level. The AVX2 and AVX-512 blocks (compress_simd.h) make the
random words in registers and decide u_i < p_i from the top 16 (AVX2: the lead words alone) or
23 bits (AVX-512) of r_i, taking the double test of MPT_BELOW32 only where those bits cannot
decide; all levels must give the bytes of the rule as written. Inputs put p_i next to r_i 2^-32
(so that the fallback runs; for natural dithering, in a test of their own, also the mantissas
of entries at or above 2^(1-s), next to r_i >> 9), buckets of odd sizes start segments at every entry of a lead word
(4 entries each), and levels cover the vector blocks' limits (standard s < 256, natural
s <= 105) and the buffered path beyond them.
"""
import numpy as np
import pytest

from simd_stream import stream32

from mpitrain._native import compress_round

SEED = 0x5EED0F0DD17
F32 = np.float32


@pytest.fixture(params=[0, 1, 2], ids=["scalar", "avx2", "avx512"])
def level(request):
    yield compress_round.simd_level(request.param)
    compress_round.simd_level(2)


def below(r, p):
    """MPT_BELOW32: (double)(int32)(r ^ 2^31) < (double)p 2^32 - 2^31."""
    rs = (r ^ np.uint32(0x80000000)).view(np.int32).astype(np.float64)
    return rs < p.astype(np.float64) * 4294967296.0 - 2147483648.0


def pack(codes, b):
    """LSB-first bit stream of b-bit codes (the layout of compress_common.pxi)."""
    bits = ((codes[:, None].astype(np.uint64) >> np.arange(b, dtype=np.uint64)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel(), bitorder="little")


def reference(x, seed, levels, bucket, natural):
    """(norms, payload bytes) of dither_encode with p = inf (the norm is max |x_i|, exact), for
    finite x whose bucket norms make s / norm and 1 / norm normal float32 numbers."""
    r = stream32(seed, x.size)
    norms, codes = [], []
    for start in range(0, x.size, bucket):
        xb, rb = x[start:start + bucket], r[start:start + bucket]
        ax = np.abs(xb)
        nrm = F32(ax.max())
        sign = np.signbit(xb).astype(np.int64)
        if not natural:
            mul = F32(levels) / nrm if nrm != 0 else F32(0)
            t = ax * mul
            lv = np.floor(t).astype(np.int64)
            lv = lv + below(rb, t - lv.astype(F32))
        else:
            inv = F32(1) / nrm if nrm != 0 else F32(0)
            q = ax * inv
            qb = q.view(np.uint32).astype(np.int64)
            big = (qb >> 23) - 127 + levels + ((rb >> np.uint32(9)).astype(np.int64) < (qb & 0x7FFFFF))
            small = below(rb, q * F32(2.0 ** (levels - 1))).astype(np.int64)
            lv = np.where(q >= F32(2.0 ** (1 - levels)), big, small)
        lv = np.minimum(lv, levels)
        norms.append(nrm)
        codes.append((lv << 1) | (sign & (lv != 0)))
    return np.array(norms, F32), pack(np.concatenate(codes), 1 + levels.bit_length())


def encode(x, seed, levels, bucket, natural, p=np.inf):
    b = 1 + levels.bit_length()
    norms = np.empty(-(-x.size // bucket), F32)
    out = np.empty((x.size * b + 7) // 8, np.uint8)
    compress_round.dither_encode(x, seed, levels, bucket, natural, p, norms, out)
    return norms, out


def near_stream(d, levels, natural, rng):
    """Entries whose p_i lies at r_i 2^-32 + (-2..2) 2^-32 and one float32 ulp either side, in
    buckets of max |x_i| = 1 (x_0 = +-1 starts each bucket): standard dithering's
    t_i = |x_i| s has fractional part there (s a power of two, so t_i is exact), natural
    dithering's |x_i| 2^(s-1) is there (entries below 2^(1-s)); a third are ordinary values."""
    r = stream32(SEED, d).astype(np.float64)
    frac = (r + rng.integers(-2, 3, d)) * 2.0 ** -32
    if natural:
        x = (frac * 2.0 ** (1 - levels)).astype(F32)
    else:
        x = ((rng.integers(0, min(levels, 2), d) + frac) / levels).astype(F32)
    x[1::3] = np.nextafter(x[1::3], F32(1))
    x[2::5] = np.nextafter(x[2::5], F32(0))
    x[::3] = rng.uniform(0, 1, x[::3].size).astype(F32)
    x *= np.where(rng.random(d) < 0.5, F32(-1), F32(1))
    return x


@pytest.mark.parametrize("levels", [1, 2, 4, 8, 64, 128, 256, 512])
@pytest.mark.parametrize("bucket", [4099, 777, 5, 1])
def test_standard_dithering_matches_rule(levels, bucket, level):
    rng = np.random.default_rng(levels * 7919 + bucket)
    for d in (4099, 33):
        x = near_stream(d, levels, False, rng)
        x[::bucket] = np.where(rng.random(x[::bucket].size) < 0.5, F32(-1), F32(1))
        norms, out = encode(x, SEED, levels, bucket, False)
        ref_norms, ref = reference(x, SEED, levels, bucket, False)
        assert np.array_equal(norms.view(np.uint32), ref_norms.view(np.uint32))
        assert np.array_equal(out, ref)


@pytest.mark.parametrize("levels", [1, 3, 7, 100, 255, 300])
def test_standard_dithering_any_levels(levels, level):
    """Levels that are not powers of two (t_i rounds), standard normal entries."""
    rng = np.random.default_rng(levels)
    x = rng.standard_normal(3001).astype(F32)
    for bucket in (3001, 250, 3):
        norms, out = encode(x, SEED, levels, bucket, False)
        ref_norms, ref = reference(x, SEED, levels, bucket, False)
        assert np.array_equal(norms.view(np.uint32), ref_norms.view(np.uint32))
        assert np.array_equal(out, ref)


@pytest.mark.parametrize("levels", [1, 2, 4, 8, 60, 105, 106, 126])
@pytest.mark.parametrize("bucket", [4099, 777, 5])
def test_natural_dithering_matches_rule(levels, bucket, level):
    rng = np.random.default_rng(levels * 104729 + bucket)
    for d in (4099, 33):
        x = near_stream(d, levels, True, rng)
        x[::bucket] = np.where(rng.random(x[::bucket].size) < 0.5, F32(-1), F32(1))
        norms, out = encode(x, SEED, levels, bucket, True)
        ref_norms, ref = reference(x, SEED, levels, bucket, True)
        assert np.array_equal(norms.view(np.uint32), ref_norms.view(np.uint32))
        assert np.array_equal(out, ref)


@pytest.mark.parametrize("levels", [2, 4, 60])
@pytest.mark.parametrize("bucket", [4099, 5])
def test_natural_dithering_mantissa_ties(levels, bucket, level):
    """Every entry at or above 2^(1-s) with its mantissa at r_i >> 9 + (-2..2): the AVX2 block
    decides those from r_i >> 16 against the mantissa >> 7 and must leave the equal ones to
    the scalar test (no entry below 2^(1-s) sends the group there instead)."""
    rng = np.random.default_rng(levels * 31 + bucket)
    d = 4099
    m = np.clip((stream32(SEED, d) >> np.uint32(9)).astype(np.int64) + rng.integers(-2, 3, d), 0, 2 ** 23 - 1)
    e = rng.integers(0, levels - 1, d)
    x = (np.exp2(-(e + 1.0)) * (1 + m * 2.0 ** -23)).astype(F32)
    x *= np.where(rng.random(d) < 0.5, F32(-1), F32(1))
    x[::bucket] = np.where(rng.random(x[::bucket].size) < 0.5, F32(-1), F32(1))
    norms, out = encode(x, SEED, levels, bucket, True)
    ref_norms, ref = reference(x, SEED, levels, bucket, True)
    assert np.array_equal(norms.view(np.uint32), ref_norms.view(np.uint32))
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("natural", [False, True])
@pytest.mark.parametrize("p", [2.0, 1.0, np.inf])
def test_dithering_special_values_same_at_every_level(natural, p):
    """inf, NaN, zeros, -0.0, subnormals and subnormal or huge norms (the division path): every
    level gives the scalar level's bytes."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(5000) * np.exp2(rng.integers(-30, 30, 5000))).astype(F32)
    x[100:110] = 0.0
    x[110:120] = -0.0
    x[200], x[300], x[400] = np.inf, -np.inf, np.nan
    x[1000:1100] = F32(1e-41)  # a bucket of subnormals
    x[2000:2100] = F32(3e38)
    x[3000:3100] = rng.standard_normal(100).astype(F32) * F32(1e-30)
    outs = []
    for cap in (0, 1, 2):
        compress_round.simd_level(cap)
        try:
            outs.append([encode(x, SEED, levels, 100, natural, p) for levels in (3, 4, 100, 126)])
        finally:
            compress_round.simd_level(2)
    for other in outs[1:]:
        for (n0, o0), (n1, o1) in zip(outs[0], other):
            assert np.array_equal(n0.view(np.uint32), n1.view(np.uint32))
            assert np.array_equal(o0, o1)


@pytest.mark.parametrize("m", [1e-37, 1e-33, 2.0 ** -100, 1e-30])
def test_ternary_small_maximum_same_at_every_level(m):
    """||x||_inf between the smallest normal float32 and 2^-100 (1 / m too large for the AVX2
    block's product 2^23 / m: the caller's buffered loop runs) and just above: same bytes."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(1000) * m).astype(F32)
    outs = []
    for cap in (0, 1, 2):
        compress_round.simd_level(cap)
        try:
            out = np.empty((2 * x.size + 7) // 8, np.uint8)
            outs.append((compress_round.ternary_encode(x, SEED, out), out))
        finally:
            compress_round.simd_level(2)
    for mx, out in outs[1:]:
        assert mx == outs[0][0]
        assert np.array_equal(out, outs[0][1])
