"""The float32 decoders' SIMD blocks (ternary, natural compression, 4-bit dithering) against
NumPy references at every SIMD level, on arbitrary packed codes: every code value,
including ones the encoders never send (ternary code 2, dithering levels above s), and
lengths that end inside a vector step. The golden-bytes test pins the encoders' outputs;
this one pins the decoders on inputs the encoders cannot produce.
"""
import numpy as np
import pytest

from mpitrain._native import compress_round

SIZES = [1, 7, 8, 15, 16, 17, 31, 33, 100, 4096, 4099, 10_007]


@pytest.fixture(params=[0, 1, 2], ids=["scalar", "avx2", "avx512"])
def simd_cap(request):
    compress_round.simd_level(request.param)
    yield request.param
    compress_round.simd_level(2)


def pack(codes, b):
    """LSB-first bit stream of b-bit codes (the layout of compress_common.pxi)."""
    bits = ((codes[:, None].astype(np.uint64) >> np.arange(b, dtype=np.uint64)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel(), bitorder="little")


@pytest.mark.parametrize("d", SIZES)
def test_ternary_decode_every_code(d, simd_cap):
    codes = np.random.default_rng(d).integers(0, 4, d)
    scale = np.float32(0.75)
    out = np.empty(d, np.float32)
    compress_round.ternary_decode(pack(codes, 2), float(scale), out)
    want = np.where(codes == 1, scale, np.where(codes == 3, -scale, np.float32(0)))
    assert np.array_equal(out.view(np.uint32), want.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize("d", SIZES)
def test_natural_decode_every_code(d, simd_cap):
    codes = np.random.default_rng(d).integers(0, 512, d)
    codes[:2] = [0, 256][:d]  # +0.0 and -0.0
    out = np.empty(d, np.float32)
    compress_round.natural_decode(pack(codes, 9), out)
    want = (codes.astype(np.uint32) << 23).view(np.float32)  # sign << 31 | exponent << 23
    assert np.array_equal(out.view(np.uint32), want.view(np.uint32))


def test_natural_decode_short_buffer_is_an_error():
    with pytest.raises(ValueError, match="buf"):
        compress_round.natural_decode(np.zeros(8, np.uint8), np.empty(8, np.float32))


@pytest.mark.parametrize("d", [4096, 4099, 10_007])
@pytest.mark.parametrize("natural", [False, True])
def test_4bit_dither_decode_every_code(d, natural, simd_cap):
    levels = 5  # 4-bit codes: levels 6 and 7 are never sent and decode to 0
    codes = np.random.default_rng(d).integers(0, 16, d)
    norm = np.float32(3.0)
    out = np.empty(d, np.float32)
    compress_round.dither_decode(pack(codes, 4), levels, d, natural, np.array([norm]), out)
    level = codes >> 1
    if natural:
        v = norm * np.exp2(level.astype(np.float32) - levels, dtype=np.float32)
    else:
        v = (norm * level.astype(np.float32)) / np.float32(levels)
    v = np.where((level == 0) | (level > levels), np.float32(0), v).astype(np.float32)
    want = np.where(codes & 1, -v, v)
    assert np.array_equal(out.view(np.uint32), want.view(np.uint32))
