"""The one-call Top-k and Rand-k codecs (compress_select.topk_encode / topk_decode /
randk_encode / randk_decode) against their payloads built step by step from the selection
kernels, and the size checks of the kernels that write or read buffers without bounds."""
import numpy as np
import pytest

from mpitrain._native import compress_pack, compress_round, compress_select
from mpitrain.compress.base import index_bits

from test_compress_kernels import randk_reference

SHAPES = [(1, 1), (2, 1), (63, 5), (64, 32), (65, 33), (300, 15), (300, 64), (300, 65), (300, 300),
          (1024, 64), (1025, 10), (5000, 70), (70_000, 3000)]


def vector(d, dtype, seed):
    """Normal entries, a third of them zero, with -0.0 and +-inf where d allows."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(d) * (rng.random(d) < 2 / 3)).astype(dtype)
    if d > 5:
        x[3], x[4], x[d - 1] = -0.0, np.inf, -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d,k", SHAPES)
def test_topk_payload_is_values_then_packed_indices(d, k, dtype):
    x, b = vector(d, dtype, d + k), index_bits(d)
    idx = compress_select.topk_indices(x, k)
    expected = x[idx].tobytes() + compress_pack.pack_bits(idx, b).tobytes()
    payload = np.empty(len(expected), np.uint8)
    assert compress_select.topk_encode(x, k, b, payload) is not None
    assert payload.tobytes() == expected
    decoded = np.full(d, 7, dtype)  # every entry is written
    compress_select.topk_decode(payload, k, b, decoded)
    want = np.zeros(d, dtype)
    want[idx] = x[idx]
    assert decoded.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d,k", SHAPES)
def test_randk_payload_is_seed_then_values(d, k, dtype):
    x = vector(d, dtype, d * k)
    for seed in (0, 12345, (1 << 64) - 1):
        idx = randk_reference(seed, d, k)
        expected = np.array([seed], "<u8").tobytes() + x[idx].tobytes()
        payload = np.empty(len(expected), np.uint8)
        top, bottom = compress_select.randk_encode(x, seed, k, payload)
        assert payload.tobytes() == expected
        assert (top, bottom) == (float(x[idx].max()), float(x[idx].min()))
        scale = float(dtype(d / k))
        decoded = np.full(d, 7, dtype)
        compress_select.randk_decode(payload, k, scale, decoded)
        want = np.zeros(d, dtype)
        want[idx] = x[idx] * dtype(scale)  # rounded in the dtype
        assert decoded.tobytes() == want.tobytes()


def test_randk_encode_reports_nan_as_numpy_max_does():
    x = np.array([1.0, np.nan, -3.0, 2.0], np.float32)
    payload = np.empty(8 + 4 * 4, np.uint8)
    top, bottom = compress_select.randk_encode(x, 5, 4, payload)  # k = d: every entry
    assert np.isnan(top) and np.isnan(bottom)
    x[1] = 0.5
    assert compress_select.randk_encode(x, 5, 4, payload) == (2.0, -3.0)


def test_codecs_refuse_wrong_sizes_and_indices():
    x = np.ones(300, np.float32)
    with pytest.raises(ValueError, match="needs"):
        compress_select.topk_encode(x, 15, 9, np.empty(10, np.uint8))
    with pytest.raises(ValueError, match="bits cannot hold"):
        compress_select.topk_encode(x, 15, 8, np.empty(15 * 4 + 15, np.uint8))
    with pytest.raises(ValueError, match="needs"):
        compress_select.randk_encode(x, 1, 15, np.empty(8 + 15 * 8, np.uint8))
    with pytest.raises(ValueError, match="k must satisfy"):
        compress_select.randk_encode(x, 1, 301, np.empty(8 + 301 * 4, np.uint8))
    with pytest.raises(ValueError, match="needs"):
        compress_select.randk_decode(np.zeros(9, np.uint8), 15, 1.0, np.empty(300, np.float32))
    with pytest.raises(TypeError):
        compress_select.randk_decode(np.zeros(8 + 15 * 2, np.uint8), 15, 1.0, np.empty(300, np.float16))
    # an index beyond d (a payload made for a larger d) is refused, not written
    payload = np.zeros(4 + 2, np.uint8)
    payload[4:] = compress_pack.pack_bits(np.array([300]), 9)
    with pytest.raises(IndexError, match="300 is out of bounds"):
        compress_select.topk_decode(payload, 1, 9, np.empty(300, np.float32))


def test_unchecked_buffers_of_the_quantisers_are_checked_first():
    x = np.ones(300, np.float32)
    with pytest.raises(ValueError, match="too short"):
        compress_round.sign_encode(x, np.empty(37, np.uint8))
    with pytest.raises(ValueError, match="too short"):
        compress_round.sign_decode(np.empty(37, np.uint8), 1.0, np.empty(300, np.float32))
    norms = np.empty(1, np.float32)
    with pytest.raises(ValueError, match="too short"):  # 300 codes of 1 + 3 bits: 150 bytes
        compress_round.dither_encode(x, 0, 4, 300, False, 2.0, norms, np.empty(149, np.uint8))
    with pytest.raises(ValueError, match="norms has 1 entries"):
        compress_round.dither_encode(x, 0, 4, 100, False, 2.0, norms, np.empty(150, np.uint8))
    with pytest.raises(ValueError, match="levels must be in"):  # decode tables hold s <= 255
        compress_round.dither_decode(np.empty(300, np.uint8), 256, 300, False, norms, np.empty(300, np.float32))
    with pytest.raises(ValueError, match="bucket >= 1"):
        compress_round.dither_decode(np.empty(150, np.uint8), 4, 0, False, norms, np.empty(300, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 7, 300, 9000])  # 9000: Rand-k's bitmap off the stack, sign's byte table
def test_kernels_read_arrays_directly_and_other_buffers_alike(d, dtype):
    """NumPy arrays take the kernels' direct path (their data pointers); another buffer type
    (here a bytearray payload) the typed-memoryview path: the same bytes and values."""
    x = vector(d, dtype, 11)
    k, b = max(1, d // 20), index_bits(d)
    width = np.dtype(dtype).itemsize

    def encoded(encode, nbytes):
        """encode(x, out) into an array and into a bytearray: both payloads, both results."""
        array, other = np.zeros(nbytes, np.uint8), bytearray(nbytes)
        got_array, got_other = encode(x, array), encode(x.copy(), other)
        assert array.tobytes() == bytes(other)
        return array, got_array, got_other

    def decoded(decode, payload):
        """decode(payload, out) from an array and from a bytearray: the same values."""
        array, other = np.full(d, 7, dtype), np.full(d, 7, dtype)
        decode(payload, array), decode(bytearray(payload.tobytes()), other)
        assert array.tobytes() == other.tobytes()

    payload, _, _ = encoded(lambda v, out: compress_select.topk_encode(v, k, b, out), k * width + (k * b + 7) // 8)
    decoded(lambda p, out: compress_select.topk_decode(p, k, b, out), payload)
    payload, top, other_top = encoded(lambda v, out: compress_select.randk_encode(v, 99, k, out), 8 + k * width)
    assert np.array_equal(top, other_top, equal_nan=True)
    decoded(lambda p, out: compress_select.randk_decode(p, k, 0.5, out), payload)
    payload, scale, other_scale = encoded(lambda v, out: compress_round.sign_encode(v, out), (d + 7) // 8)
    assert scale == other_scale
    decoded(lambda p, out: compress_round.sign_decode(p, 0.75, out), payload)
    codes, m, other_m = encoded(lambda v, out: compress_round.ternary_encode(v, 5, out), (2 * d + 7) // 8)
    assert m == other_m
    decoded(lambda p, out: compress_round.ternary_decode(p, 0.75, out), codes)
    x = np.concatenate([x[:-1], [np.nan]]).astype(dtype)  # the rescan for the largest finite entry too
    for deterministic in (False, True):
        codes, stats, other_stats = encoded(lambda v, out: compress_round.natural_encode(v, 5, deterministic, out),
                                            (d * (9 if width == 4 else 12) + 7) // 8)
        assert stats == other_stats
        decoded(lambda p, out: compress_round.natural_decode(p, out), codes)
    x = np.nan_to_num(x, nan=0.5, posinf=1.0, neginf=-1.0).astype(dtype)
    for natural, levels, bucket in ((True, 4, 128), (False, 7, 5000)):
        nbytes = (d * (1 + levels.bit_length()) + 7) // 8
        buckets = -(-d // bucket)
        norms, other_norms = np.zeros(buckets, dtype), np.zeros(buckets, dtype)
        codes, _, _ = encoded(lambda v, out: compress_round.dither_encode(
            v, 5, levels, bucket, natural, 2.0, norms if isinstance(out, np.ndarray) else other_norms, out), nbytes)
        assert norms.tobytes() == other_norms.tobytes()
        decoded(lambda p, out: compress_round.dither_decode(p, levels, bucket, natural, norms, out), codes)


def test_kernels_refuse_wrong_buffers_with_the_same_errors():
    x = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="a Top-k payload needs"):
        compress_select.topk_encode(x, 2, 4, np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="a Rand-k payload needs"):
        compress_select.randk_encode(x, 1, 2, np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="too short"):
        compress_round.sign_encode(x, np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match="too short"):
        compress_round.sign_decode(np.zeros(1, np.uint8), 1.0, x)
    with pytest.raises(TypeError, match="float32 or float64"):
        compress_select.randk_encode(np.ones(10, np.int64), 1, 2, np.zeros(24, np.uint8))
    read_only = np.zeros(10, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        compress_round.sign_decode(np.zeros(2, np.uint8), 1.0, read_only)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_natural_and_ternary_decoders_refuse_a_short_buffer_in_either_dtype(dtype):
    """(Before, float64 ternary read past a short buffer and float64 natural decoded zeros past its end.)"""
    for short in (np.zeros(3, np.uint8), bytearray(3)):
        with pytest.raises(ValueError, match="too short"):
            compress_round.ternary_decode(short, 1.0, np.zeros(100, dtype))
        with pytest.raises(ValueError, match="too short"):
            compress_round.natural_decode(short, np.zeros(100, dtype))


def test_byte_swapped_input_is_refused_not_read_as_native():
    """A byte-swapped float vector has the native type number; the kernels' array path checks its
    byte order and leaves it to the general path, which refuses it, as before."""
    x = np.arange(1.0, 301.0, dtype=np.float32)
    swapped = x.astype(x.dtype.newbyteorder())
    out = np.zeros(4 * 15 + 8 * 15, dtype=np.uint8)
    with pytest.raises((TypeError, ValueError)):
        compress_select.topk_encode(swapped, 15, index_bits(300), out)
    with pytest.raises((TypeError, ValueError)):
        compress_select.randk_encode(swapped, 7, 15, np.zeros(8 + 4 * 15, dtype=np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 7, 8, 31, 33, 300, 1001])
def test_scaled_sign_payload_kernels_equal_the_header_view_and_sign_kernels(dtype, d):
    """sign_encode_payload / sign_decode_payload (ScaledSign's host path) write and read the
    bytes of the scale written into the header's view plus sign_encode on the rest."""
    rng = np.random.default_rng(d)
    x = (rng.standard_normal(d) * 10.0 ** rng.integers(-30, 30, d)).astype(dtype)
    x[0] = -0.0
    cut, nbytes = np.dtype(dtype).itemsize, np.dtype(dtype).itemsize + (d + 7) // 8
    expected = np.zeros(nbytes, dtype=np.uint8)
    expected[:cut].view(dtype)[0] = compress_round.sign_encode(x, expected[cut:])
    got = compress_round.sign_encode_payload(x, np.full(nbytes, 0xAB, dtype=np.uint8))
    assert got.tobytes() == expected.tobytes()
    decoded = np.empty(d, dtype=dtype)
    compress_round.sign_decode(expected[cut:], expected[:cut].view(dtype)[0], decoded)
    assert compress_round.sign_decode_payload(got, np.empty(d, dtype=dtype)).tobytes() == decoded.tobytes()
    for wrong in (nbytes - 1, nbytes + 1):
        with pytest.raises(ValueError):
            compress_round.sign_encode_payload(x, np.zeros(wrong, dtype=np.uint8))
        with pytest.raises(ValueError):
            compress_round.sign_decode_payload(np.zeros(wrong, dtype=np.uint8), np.empty(d, dtype=dtype))
    with pytest.raises(ValueError):
        compress_round.sign_decode_payload(got, np.empty(d, dtype=np.float64 if dtype == np.float32 else np.float32))
