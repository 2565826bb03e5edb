"""The fused updates: x <- beta (x + alpha g) equals the NumPy steps bit for bit, the copy of a
gradient fused into it equals the copy and then the update, and a weighted term added in one
pass equals NumPy's multiply and add."""
import numpy as np
import pytest

from mpitrain._native.vector import (add_weighted, cast_copy, copy_and_update, scaled_copy, scaled_copy_from,
                                     scaled_update)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [1.0, 0.25, 1 / 3])
def test_scaled_update_matches_numpy_bitwise(dtype, beta):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1001).astype(dtype)
    g = rng.standard_normal(1001).astype(dtype)
    eta = 0.37
    expected = x.copy()
    step = g * dtype(eta)
    expected -= step
    if beta != 1.0:
        expected *= dtype(beta)
    scaled_update(x, g, -eta, beta)
    assert np.array_equal(x, expected)


def test_scaled_update_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="g has 3 entries, x has 4"):
        scaled_update(np.zeros(4), np.zeros(3), 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_and_update_is_a_copy_then_the_update(dtype):
    """Every length and start (the vector loop's head, body and tail; g written past the cache)."""
    rng = np.random.default_rng(1)
    x, src = rng.standard_normal(1031).astype(dtype), rng.standard_normal(1031).astype(dtype)
    for start in range(4):
        for stop in (start, start + 1, start + 3, 517, 1031 - start):
            for beta in (1.0, 0.3):
                x1, x2 = x.copy(), x.copy()
                g1, g2 = np.zeros_like(x), np.zeros_like(x)
                copy_and_update(x1[start:stop], g1[start:stop], src[start:stop], -0.7, beta)
                g2[start:stop] = src[start:stop]
                scaled_update(x2[start:stop], g2[start:stop], -0.7, beta)
                assert x1.tobytes() == x2.tobytes() and g1.tobytes() == g2.tobytes(), (start, stop, beta)
    with pytest.raises(ValueError, match="one length"):
        copy_and_update(x, np.zeros_like(x), src[:-1], 1.0)


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("src_dtype", [np.float32, np.float64])
def test_add_weighted_matches_numpy_multiply_then_add_bitwise(out_dtype, src_dtype):
    rng = np.random.default_rng(4)
    for n in (0, 1, 7, 300, 1001):
        out = rng.standard_normal(n).astype(out_dtype)
        src = (rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)).astype(src_dtype)
        if n > 7:
            src[:4] = [np.inf, -0.0, np.nan, 1e300 if src_dtype == np.float64 else 3e38]
        for weight in (0.25, 1 / 3, 0.1234567891234):
            expected = out.copy()
            with np.errstate(over="ignore", invalid="ignore"):  # float64 values cast to float32
                expected += np.multiply(src, out_dtype(weight), dtype=out_dtype)
                add_weighted(out, src, weight)
            assert out.tobytes() == expected.tobytes(), (n, weight)


def test_add_weighted_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="src has 3 entries, out has 4"):
        add_weighted(np.zeros(4), np.zeros(3), 1.0)


@pytest.mark.parametrize("n", [0, 1, 300, 5000])  # 5000: the path that releases the GIL
def test_arrays_and_other_buffers_take_the_same_arithmetic(n):
    """NumPy arrays go straight to the loops; strided views and other buffers go through typed
    memoryviews: the same bits either way, whatever the length."""
    rng = np.random.default_rng(5)
    x, g = rng.standard_normal(2 * n), rng.standard_normal(2 * n)
    fast, general = x[:n].copy(), memoryview(x[:n].copy())
    scaled_update(fast, g[:n], -0.3, 0.7)
    scaled_update(general, memoryview(g[:n].copy()), -0.3, 0.7)
    assert fast.tobytes() == np.asarray(general).tobytes()
    out, out_general = x[:n].copy(), memoryview(x[:n].copy())
    add_weighted(out, g[:n].astype(np.float32), 1 / 3)
    add_weighted(out_general, memoryview(g[:n].astype(np.float32)), 1 / 3)
    assert out.tobytes() == np.asarray(out_general).tobytes()


def test_strided_read_only_and_mixed_arrays_fail_as_before():
    x = np.zeros(8)
    with pytest.raises(ValueError, match="contiguous"):
        scaled_update(x[::2], np.zeros(4), 1.0)
    with pytest.raises(ValueError, match="contiguous"):
        add_weighted(x[::2], np.zeros(4), 1.0)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        scaled_update(x, np.zeros(8), 1.0)
    with pytest.raises(ValueError, match="read-only"):
        add_weighted(x, np.zeros(8), 1.0)
    with pytest.raises(ValueError, match="dtype mismatch"):  # float64 x, float32 g: nothing cast silently
        scaled_update(np.zeros(3), np.zeros(3, np.float32), 1.0)
    with pytest.raises(ValueError, match="src has 2 entries, out has 3"):
        add_weighted(np.zeros(3), np.zeros(2, np.float32), 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaled_copy_matches_numpy_multiply_bitwise(dtype):
    rng = np.random.default_rng(6)
    for n in (0, 1, 7, 300, 5000):
        src = (rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)).astype(dtype)
        if n > 7:
            src[:4] = [np.inf, -0.0, np.nan, 1e300 if dtype == np.float64 else 3e38]
        for weight in (0.25, 1 / 3, -0.1234567891234):
            out, expected = np.empty_like(src), np.empty_like(src)
            with np.errstate(over="ignore", invalid="ignore"):
                np.multiply(src, dtype(weight), out=expected)
                scaled_copy(out, src, weight)
            assert out.tobytes() == expected.tobytes(), (n, weight)


def test_scaled_copy_of_unaligned_or_other_buffers_is_the_same_and_checked():
    raw = np.zeros(4 * 300 + 1, np.uint8)
    unaligned = raw[1:].view(np.float32)  # a payload section at an odd offset
    unaligned[...] = np.arange(300, dtype=np.float32) / 7
    out, expected = np.empty(300, np.float32), np.arange(300, dtype=np.float32) / 7 * np.float32(0.3)
    scaled_copy(out, unaligned, 0.3)
    assert out.tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match="src has 2 entries, out has 3"):
        scaled_copy(np.zeros(3), np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="dtype mismatch"):
        scaled_copy(np.zeros(3), np.zeros(3, np.float32), 1.0)


def test_byte_swapped_arrays_are_never_read_as_native():
    """A byte-swapped float array has the native type number; the kernels' array path checks
    the byte order too, so such an array goes where it went before that path existed (an error,
    or NumPy's conversion), never read as if native."""
    x, g = np.zeros(4), np.arange(4.0)
    swapped = g.astype(g.dtype.newbyteorder())
    for call in (lambda: scaled_update(x, swapped, 1.0), lambda: add_weighted(x, swapped, 1.0),
                 lambda: scaled_copy(x, swapped, 1.0)):
        with pytest.raises(ValueError):
            call()
    assert np.array_equal(x, np.zeros(4))
    out = np.zeros(4, dtype=np.float32)
    cast_copy(out, swapped)
    assert np.array_equal(out, np.arange(4.0, dtype=np.float32))


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("src_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 300, 5000])  # 5000: NumPy's own assignment
def test_cast_copy_equals_numpy_assignment_bitwise(out_dtype, src_dtype, n):
    rng = np.random.default_rng(n)
    out = np.full(n, 7.0, dtype=out_dtype)
    expected = np.empty(n, dtype=out_dtype)
    with np.errstate(over="ignore"):  # values beyond float32's range become infinities
        src = (rng.standard_normal(n) * np.exp(rng.uniform(-100, 100, n))).astype(src_dtype)
        src[: min(n, 4)] = [np.inf, -np.nan, -0.0, 1e-45][: min(n, 4)]
        expected[...] = src
        cast_copy(out, src)
    assert out.tobytes() == expected.tobytes()


def test_cast_copy_of_overlapping_strided_or_read_only_arrays_is_numpys():
    base = np.arange(8, dtype=np.float64)
    expected = base.astype(np.float32)
    cast_copy(base.view(np.float32)[:8], base)  # out overlaps src: NumPy buffers it
    assert np.array_equal(base.view(np.float32)[:8], expected)
    out = np.zeros(5)
    cast_copy(out, np.arange(10.0)[::2])
    assert np.array_equal(out, np.arange(0.0, 10.0, 2.0))
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        cast_copy(frozen, np.ones(3))
    with pytest.raises(ValueError):
        cast_copy(np.zeros(3), np.ones(4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0, 3, 8])  # 3: values not aligned to their dtype in the payload
def test_scaled_copy_from_a_payload_equals_scaled_copy_of_its_view(dtype, offset):
    rng = np.random.default_rng(offset)
    values = (rng.standard_normal(15) * 10.0 ** rng.integers(-20, 20, 15)).astype(dtype)
    payload = np.zeros(offset + values.nbytes, dtype=np.uint8)
    payload[offset:] = values.view(np.uint8)
    expected = np.empty(15, dtype=dtype)
    scaled_copy(expected, values, 0.3)
    out = np.empty(15, dtype=dtype)
    scaled_copy_from(out, payload, offset, 0.3)
    assert out.tobytes() == expected.tobytes()
    for bad_offset in (offset - 1, offset + 1):  # the values must end where the payload does
        with pytest.raises(ValueError):
            scaled_copy_from(out, payload, bad_offset, 0.3)
    with pytest.raises(ValueError):
        scaled_copy_from(out[::2], payload, offset, 0.3)
    with pytest.raises(ValueError):  # a uint8 out
        scaled_copy_from(payload[:0], payload, offset, 0.3)
    shared = np.zeros(8 + 16, dtype=np.uint8)
    with pytest.raises(ValueError, match="overlaps"):  # out is the payload's own values
        scaled_copy_from(shared[8:].view(np.float32), shared, 8, 0.3)
