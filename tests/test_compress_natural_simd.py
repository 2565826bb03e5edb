"""The float32 random natural compression encoder (Beznosikov et al., C_nat; docs/papers.md s.2)
against a NumPy statement of its rule, at every SIMD level. The AVX2 and AVX-512 blocks
(compress_simd.h ``mpt_natural32r``) make the stream's lead words in registers and decide
(r_i >> 9) < m_i from r_i >> 16 against m_i >> 7, leaving the equal ones to the scalar rule on
the whole r_i; inputs put every mantissa at r_i >> 9 + (-2..2), so that most groups of 16 take
that fallback, next to ordinary values, where almost none do. The range statistics
(largest |x_i|, a nonzero subnormal seen) must not depend on the level either."""
import numpy as np
import pytest

from simd_stream import stream32

from mpitrain._native import compress_round

SEED = 0x0DDBA11CAFE


@pytest.fixture(params=[0, 1, 2], ids=["scalar", "avx2", "avx512"])
def level(request):
    yield compress_round.simd_level(request.param)
    compress_round.simd_level(2)


def reference(x, seed):
    """Packed 9-bit codes: sign << 8 | e, e = exponent + [(r_i >> 9) < mantissa], 256 -> 255."""
    b = x.view(np.uint32).astype(np.int64)
    up = (stream32(seed, x.size) >> np.uint32(9)).astype(np.int64) < (b & 0x7FFFFF)
    e = ((b >> 23) & 0xFF) + up
    e -= e >> 8
    codes = ((b >> 31) << 8) | e
    bits = ((codes[:, None] >> np.arange(9)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel(), bitorder="little")


def encode(x, seed):
    out = np.empty((9 * x.size + 7) // 8, np.uint8)
    stats = compress_round.natural_encode(x, seed, False, out)
    return stats, out


def near_stream(d, rng):
    """Mantissas at r_i >> 9 + (-2..2) over many binades (a few at the largest exponent, whose
    rounding up overflows to inf), random signs; the same with a third replaced by ordinary
    values and subnormals, zeros and -0.0."""
    m = np.clip((stream32(SEED, d) >> np.uint32(9)).astype(np.int64) + rng.integers(-2, 3, d), 0, 2 ** 23 - 1)
    e = rng.integers(1, 255, d)
    e[::97] = 254
    x = ((np.where(rng.random(d) < 0.5, 1, 0) << 31) | (e << 23) | m).astype(np.uint32).view(np.float32)
    y = x.copy()
    y[::3] = rng.standard_normal(y[::3].size).astype(np.float32)
    y[1::11] = np.float32(1e-41)
    y[2::13] = 0.0
    y[4::17] = -0.0
    return x, y


@pytest.mark.parametrize("d", [1, 3, 15, 16, 17, 33, 2047, 2048, 2049, 4099, 100_003])
def test_natural_compression_matches_rule(d, level):
    rng = np.random.default_rng(d)
    for x in (*near_stream(d, rng), rng.standard_normal(d).astype(np.float32)):
        _, out = encode(x, SEED)
        assert np.array_equal(out, reference(x, SEED))


def test_natural_compression_statistics_same_at_every_level():
    rng = np.random.default_rng(7)
    x = near_stream(5000, rng)[1]
    x[4000] = np.float32(3e38)
    got = []
    for cap in (0, 1, 2):
        compress_round.simd_level(cap)
        try:
            got.append(encode(x, SEED))
        finally:
            compress_round.simd_level(2)
    for stats, out in got[1:]:
        assert stats == got[0][0]
        assert np.array_equal(out, got[0][1])
