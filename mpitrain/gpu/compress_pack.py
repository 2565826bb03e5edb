"""GPU twin of ``mpitrain._native.compress_pack``: b-bit codes packed LSB first (cuda/compress_pack.cu)."""
import cupy
import numpy as np

from mpitrain.gpu import launch, raw_module

_MODULE = raw_module("compress_pack")
_PACK = {np.dtype(np.int64): "pack_i64", np.dtype(np.uint64): "pack_u64",
         np.dtype(np.uint32): "pack_u32", np.dtype(np.uint8): "pack_u8"}


def packed_nbytes(n, b):
    """Bytes holding n codes of b bits: ceil(n b / 8)."""
    return (int(n) * int(b) + 7) // 8


def _check_b(b):
    if not 0 <= b <= 32:
        raise ValueError(f"b must be in [0, 32], got {b}")


def pack_into(codes, b, out):
    """Write codes (each < 2^b) into out (uint8, ceil(n b / 8) bytes); returns out."""
    _check_b(b)
    codes = cupy.ascontiguousarray(codes)
    n = codes.shape[0]
    if out.shape[0] != packed_nbytes(n, b):
        raise ValueError(f"out has {out.shape[0]} bytes, need {packed_nbytes(n, b)}")
    if codes.dtype not in _PACK:
        codes = codes.astype(np.int64)
    if n * b:
        launch(_MODULE.get_function(_PACK[codes.dtype]), -(-n // 8),
               (codes, np.int64(n), np.int32(b), out, np.int64(out.shape[0])))
    return out


def pack_bits(codes, b):
    """uint8[ceil(n b / 8)] (CuPy): the codes packed at b bits each."""
    out = cupy.zeros(packed_nbytes(codes.shape[0], b), dtype=np.uint8)
    return pack_into(codes, b, out)


def unpack_bits(buf, n, b):
    """int64[n] (CuPy): the n codes of b bits stored in buf."""
    _check_b(b)
    if buf.shape[0] < packed_nbytes(n, b):
        raise ValueError(f"buffer has {buf.shape[0]} bytes, need {packed_nbytes(n, b)}")
    out = cupy.zeros(int(n), dtype=np.int64)
    if n * b:
        buf = cupy.ascontiguousarray(buf)
        launch(_MODULE.get_function("unpack_i64"), int(n),
               (buf, np.int64(buf.shape[0]), np.int64(n), np.int32(b), out))
    return out
