"""Kernels of the compressors: random stream, bit packing, top-k and Rand-k selection."""
import numpy as np
import pytest

from mpitrain._native import compress_pack, compress_random, compress_select

M64 = (1 << 64) - 1


def splitmix64_reference(seed, i):
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def test_stream_is_splitmix64():
    # SplitMix64 seeded with 0: first output 0xE220A8397B1DCDAF (public test vector).
    assert int(compress_random.splitmix64(0, 0, 1)[0]) == 0xE220A8397B1DCDAF
    for seed in (0, 1, 12345, M64):
        got = compress_random.splitmix64(seed, 7, 5)
        assert [int(v) for v in got] == [splitmix64_reference(seed, i) for i in range(7, 12)]
        u = compress_random.uniforms(seed, 12)
        assert np.array_equal(u, np.array([(splitmix64_reference(seed, i) >> 11) * 2.0**-53
                                           for i in range(12)]))


def test_float32_stream_is_two_pieces_of_splitmix64():
    """r_i = (piece i % 4 of word i // 4) 2^16 + (piece i % 4 of word 2^62 + i // 4), written
    out with Python integers (the NumPy model of the SIMD tests restates it too)."""
    for seed in (0, 1, 12345, M64):
        u = compress_random.uniforms(seed, 9, 32)
        want = []
        for i in range(9):
            shift = 16 * (i % 4)
            lead = (splitmix64_reference(seed, i // 4) >> shift) & 0xFFFF
            tail = (splitmix64_reference(seed, (1 << 62) + i // 4) >> shift) & 0xFFFF
            want.append(((lead << 16) | tail) * 2.0**-32)
        assert np.array_equal(u, np.array(want))


def test_float32_stream_bits_are_balanced():
    """Each of r_i's 32 bits is 1 half the time and the two pieces are uncorrelated, over 2^18
    entries (bounds at 6 standard deviations: a wrong layout, a piece reused or a shift off by
    a byte fails them; SplitMix64 itself passes BigCrush)."""
    n = 1 << 18
    r = (compress_random.uniforms(0xBADC0FFEE, n, 32) * 2.0**32).astype(np.uint32)
    bits = np.unpackbits(r.view(np.uint8), bitorder="little").reshape(n, 32)
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 6 * 0.5 / np.sqrt(n))
    lead, tail = (r >> 16).astype(np.float64), (r & 0xFFFF).astype(np.float64)
    assert abs(np.corrcoef(lead, tail)[0, 1]) < 6 / np.sqrt(n)
    assert abs(np.corrcoef(lead[:-4], lead[4:])[0, 1]) < 6 / np.sqrt(n)  # next word's piece


@pytest.mark.parametrize("b", [0, 1, 2, 3, 7, 9, 12, 17, 31, 32])
def test_pack_round_trip(b):
    rng = np.random.default_rng(b)
    for n in (0, 1, 5, 31, 32, 33, 1000):
        codes = rng.integers(0, 2**b, n, dtype=np.uint64) if b else np.zeros(n, np.uint64)
        buf = compress_pack.pack_bits(codes, b)
        assert buf.shape == ((n * b + 7) // 8,)
        assert np.array_equal(compress_pack.unpack_bits(buf, n, b), codes.astype(np.int64))


def test_pack_layout_lsb_first():
    buf = compress_pack.pack_bits(np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], np.uint8), 1)
    assert list(buf) == [0b00001101, 1]
    buf = compress_pack.pack_bits(np.array([0x1FF, 0], np.uint32), 9)
    assert list(buf) == [0xFF, 0x01, 0x00]


def topk_reference(x, k):
    order = np.lexsort((np.arange(x.size), -np.abs(x.astype(np.float64))))
    return np.sort(order[:k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_matches_reference(dtype):
    rng = np.random.default_rng(1)
    cases = [
        rng.standard_normal(1000),
        rng.standard_normal(200_000),  # fast path (sample threshold)
        np.ones(200_000),  # all ties: smallest indices win
        rng.integers(-3, 4, 200_000).astype(float),  # few distinct values
        np.sort(rng.standard_normal(200_000)),  # sorted
        np.tile(np.arange(1000.0), 200),  # periodic, defeats a strided sample
        np.where(np.arange(200_000) % 997 == 0, 5.0, 0.0),
    ]
    for x in cases:
        x = x.astype(dtype)
        for k in sorted({min(k, x.size) for k in (1, 7, 100, 2000, x.size // 3, x.size)}):
            got = compress_select.topk_indices(x, k)
            assert got.dtype == np.int64
            assert np.array_equal(got, topk_reference(x, k)), (x[:5], k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_of_a_small_vector_is_the_sorted_selection_whatever_the_order(dtype):
    # d <= SORT_MAX_D and k <= 64 take topk_small (a heap up to k = 12, quickselect above); larger k the sort
    rng = np.random.default_rng(3)
    cases = []
    for d in (1, 2, 15, 33, 64, 65, 300, 1024):
        x = rng.standard_normal(d)
        organ = np.abs(np.arange(d) - d / 2.0)  # the median-of-samples' worst shapes
        cases += [x, np.sort(np.abs(x)), np.sort(np.abs(x))[::-1].copy(), np.round(3 * x) / 3, np.zeros(d),
                  np.where(np.arange(d) % 7 == 0, -2.0, 2.0), organ, np.tile([1.0, 3.0], d)[:d],
                  np.where(np.arange(d) < d - 3, 1.0, 5.0), rng.integers(0, 4, d) * 1.0]
    special = rng.standard_normal(300)
    special[::11], special[3::13], special[5::17], special[7::19] = np.inf, -np.inf, -0.0, np.nan
    cases.append(special)
    for x in cases:
        x = x.astype(dtype)
        for k in sorted({min(k, x.size) for k in (1, 2, 12, 13, 15, 30, 63, 64, 65, x.size)}):
            got = compress_select.topk_indices(x, k)
            assert got.dtype == np.int64
            assert np.array_equal(got, compress_select._topk_sorted(x, k)), (x.size, k)
            if not np.isnan(x).any():
                assert np.array_equal(got, topk_reference(x, k)), (x.size, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_topk_selection_agrees_with_the_sort_on_random_shapes(dtype):
    """topk_small's quickselect (k > 12) and heap (k <= 12) against the stable sort: random sizes,
    k, value sets with many ties at the threshold, and vectors made of a few distinct values."""
    rng = np.random.default_rng(11)
    for trial in range(3000):
        d = int(rng.integers(1, 1025))
        k = int(rng.integers(1, min(d, 64) + 1))
        kind = trial % 4
        if kind == 0:
            x = rng.standard_normal(d)
        elif kind == 1:
            x = rng.integers(-3, 4, d) * 0.5  # a handful of magnitudes: ties everywhere
        elif kind == 2:
            x = np.sort(rng.standard_exponential(d))[:: 1 if trial % 8 == 2 else -1].copy()
        else:
            x = np.where(rng.random(d) < 0.9, 1.0, rng.standard_normal(d))  # one value for 90%
        x = x.astype(dtype)
        assert np.array_equal(compress_select._topk_small(x, k), compress_select._topk_sorted(x, k)), (d, k, kind)


def test_topk_ties_deterministic():
    x = np.array([3.0, -3.0, 1.0, 3.0, -3.0], np.float32)
    assert list(compress_select.topk_indices(x, 2)) == [0, 1]
    assert list(compress_select.topk_indices(x, 3)) == [0, 1, 3]
    assert list(compress_select.topk_indices(np.zeros(10, np.float32), 4)) == [0, 1, 2, 3]


def test_topk_rejects_bad_k():
    with pytest.raises(ValueError, match="k must"):
        compress_select.topk_indices(np.ones(5, np.float32), 0)
    with pytest.raises(ValueError, match="k must"):
        compress_select.topk_indices(np.ones(5, np.float32), 6)


def randk_reference(seed, d, k):
    """First min(k, d - k) distinct draws floor(splitmix64(seed, j) d / 2^64), or their
    complement when k > d / 2, ascending (the documented Rand-k stream)."""
    m = min(k, d - k)
    seen, j = set(), 0
    while len(seen) < m:
        seen.add((splitmix64_reference(seed, j) * d) >> 64)
        j += 1
    chosen = seen if 2 * k <= d else set(range(d)) - seen
    return np.array(sorted(chosen), dtype=np.int64)


@pytest.mark.parametrize("d,k", [(10, 3), (10, 7), (1000, 1000), (1000, 999), (300_000, 50),
                                 (300_000, 3000), (70, 40)])
def test_randk_matches_documented_draws(d, k):
    for seed in (0, 99):
        got = compress_select.randk_indices(seed, d, k)
        assert got.dtype == np.int64 and got.shape == (k,)
        assert np.array_equal(got, randk_reference(seed, d, k))


def test_randk_is_uniform():
    # every index is kept with probability k / d: counts over many seeds
    d, k, seeds = 50, 10, 4000
    counts = np.zeros(d)
    for seed in range(seeds):
        counts[compress_select.randk_indices(seed, d, k)] += 1
    p = k / d
    assert np.all(np.abs(counts - seeds * p) < 5 * np.sqrt(seeds * p * (1 - p)))


@pytest.fixture
def restore_simd_level():
    yield
    compress_select.simd_level(2)  # back to the widest level the CPU has


@pytest.mark.parametrize("cap", [0, 1, 2])
def test_topk_same_result_at_every_simd_level(cap, restore_simd_level):
    # the float32 candidate pass has scalar, AVX2 and AVX-512 versions picked at run time
    level = compress_select.simd_level(cap)
    assert level <= cap
    rng = np.random.default_rng(7)
    x = rng.standard_normal(200_003).astype(np.float32)
    x[::1001] = np.inf
    x[5::999] = -0.0
    cases = [x, np.repeat(rng.standard_normal(1000), 200).astype(np.float32),
             np.abs(x[::-1]).copy(), np.ones(131_075, np.float32)]
    for y in cases:
        for k in (1, 15, 16, 17, 2000, y.size // 5):
            assert np.array_equal(compress_select.topk_indices(y, k), topk_reference(y, k)), k
