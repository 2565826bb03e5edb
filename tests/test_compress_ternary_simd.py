"""The float32 ternary encoder (TernGrad, docs/papers.md s.2) against a NumPy statement of its
rule, at every SIMD level: the one-pass AVX-512 version (compress_simd.h) decides
u_i < q_i by an integer test and falls back to the double test of MPT_BELOW32 where that
could round (0 < q_i 2^32 < 4); both must give the bytes of the rule as written."""
import numpy as np
import pytest

from simd_stream import stream32

from mpitrain._native import compress_round

SEED = 0xC0FFEE1234


@pytest.fixture(params=[0, 1, 2])
def level(request):
    yield compress_round.simd_level(request.param)
    compress_round.simd_level(2)


def reference(x, seed):
    """(m, packed codes): nz = (double)(int32)(r ^ 2^31) < (double)q 2^32 - 2^31 with
    q = |x| * (1 / m) in float32, or q = |x| / m when 0 < m <= max and 1 / m is not a
    normal float32 (m subnormal, tiny or huge: compress_round.pyx ``divides``),
    code = nz | (nz & sign) << 1, 2 bits LSB first."""
    mag = x.view(np.int32) & 0x7FFFFFFF
    m = np.where(mag > 0x7F800000, 0, mag).max().astype(np.int32).view(np.float32)
    info = np.finfo(np.float32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        inv = np.float32(1) / m if m > 0 else np.float32(0)
        divide = 0 < m <= info.max and not info.smallest_normal <= inv <= info.max
        q = np.abs(x) / m if divide else np.abs(x) * inv
        r = (stream32(seed, x.size) ^ np.uint32(0x80000000)).view(np.int32)
        nz = r.astype(np.float64) < q.astype(np.float64) * 4294967296.0 - 2147483648.0
    codes = nz.astype(np.uint8) | ((nz & np.signbit(x)).astype(np.uint8) << 1)
    pad = np.zeros(-x.size % 4, np.uint8)
    quads = np.concatenate([codes, pad]).reshape(-1, 4)
    packed = quads[:, 0] | quads[:, 1] << 2 | quads[:, 2] << 4 | quads[:, 3] << 6
    return m, packed.astype(np.uint8)


def encode(x, seed):
    out = np.empty((2 * x.size + 7) // 8, np.uint8)
    m = compress_round.ternary_encode(x, seed, out)
    return np.float32(m), out


def hard_inputs(d, rng):
    """Inputs with max |x| = 1 (so q_i = |x_i|): magnitudes at r_i 2^-32 + (-1..1) 2^-32
    and one ulp either side (the integer test: every 16 lanes of them take it), then the
    same with tiny and subnormal ratios, zeros and -0.0 mixed in (the double fallback)."""
    r = stream32(SEED, d).astype(np.float64)
    x = ((r + rng.uniform(-1, 1, d)) * 2.0 ** -32).astype(np.float32)
    x[1::3] = np.nextafter(x[1::3], np.float32(2))
    x[2::5] = np.nextafter(x[2::5], np.float32(0))
    x *= np.where(rng.random(d) < 0.5, np.float32(-1), np.float32(1))
    x[0] = 1.0
    y = x.copy()
    y[3::7] = rng.uniform(0, 4 * 2.0 ** -32, y[3::7].size).astype(np.float32)
    y[4::11] = np.float32(1e-45)
    y[5::13] = 0.0
    y[6::17] = -0.0
    return x, y


@pytest.mark.parametrize("d", [1, 7, 15, 16, 17, 31, 32, 33, 47, 4099, 100_003])
def test_ternary_encode_matches_rule(d, level):
    rng = np.random.default_rng(d)
    for x in (*hard_inputs(d, rng), rng.standard_normal(d).astype(np.float32)):
        m_ref, ref = reference(x, SEED)
        m, out = encode(x, SEED)
        assert m.view(np.uint32) == m_ref.view(np.uint32)
        assert np.array_equal(out, ref)


def test_ternary_encode_special_values(level):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(1003).astype(np.float32)
    x[10], x[20], x[30] = np.inf, -np.inf, np.nan
    # m subnormal (1 / m overflowed: every entry was sent), tiny (1 / m near the top) and
    # huge (1 / m subnormal: probabilities off by up to 2^-21): q = |x| / m there
    unit = rng.standard_normal(1003) * np.exp(rng.uniform(-3, 3, 1003))
    unit /= np.abs(unit).max()
    extremes = [(unit * m).astype(np.float32) for m in (1e-42, 1e-40, 3e-39, 1e38, 3.4e38)]
    for y in (x, np.zeros(99, np.float32), np.full(65, np.nan, np.float32),
              np.full(40, 1e-40, np.float32), *extremes):
        m_ref, ref = reference(y, SEED)
        m, out = encode(y, SEED)
        assert m.view(np.uint32) == m_ref.view(np.uint32)
        assert np.array_equal(out, ref)


def test_ternary_encode_rejects_short_output():
    with pytest.raises(ValueError, match="too short"):
        compress_round.ternary_encode(np.ones(17, np.float32), SEED, np.empty(4, np.uint8))
