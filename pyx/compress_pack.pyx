"""Bit packing of b-bit codes (layout in ``compress_common.pxi``: LSB first, ceil(n b / 8) bytes)."""
import numpy as np
cimport numpy as cnp
include "compress_common.pxi"

ctypedef fused code_t:
    uint8_t
    uint32_t
    int64_t
    uint64_t


def packed_nbytes(Py_ssize_t n, int b):
    """Bytes holding n codes of b bits: ceil(n b / 8)."""
    return (n * b + 7) // 8


def pack_into(code_t[::1] codes, int b, uint8_t[::1] out):
    """Write codes (each < 2^b, 0 <= b <= 32) into out (length ceil(n b / 8)); returns out."""
    cdef Py_ssize_t n = codes.shape[0], i
    if b < 0 or b > 32:
        raise ValueError(f"b must be in [0, 32], got {b}")
    if out.shape[0] != (n * b + 7) // 8:
        raise ValueError(f"out has {out.shape[0]} bytes, need {(n * b + 7) // 8}")
    cdef mpt_writer w
    cdef uint64_t mask = (1ULL << b) - 1ULL
    if n * b == 0:
        return np.asarray(out)
    with nogil:
        mpt_writer_init(&w, &out[0])
        for i in range(n):
            mpt_put(&w, (<uint64_t>codes[i]) & mask, b)
        mpt_flush(&w)
    return np.asarray(out)


def pack_bits(codes, int b):
    """uint8[ceil(n b / 8)]: the codes (a 1-D integer array) packed at b bits each."""
    codes = np.ascontiguousarray(codes)
    out = np.zeros((codes.shape[0] * b + 7) // 8, dtype=np.uint8)
    return pack_into(codes, b, out)


def unpack_bits(const uint8_t[::1] buf, Py_ssize_t n, int b):
    """int64[n]: the n codes of b bits stored in buf by ``pack_bits``."""
    if b < 0 or b > 32:
        raise ValueError(f"b must be in [0, 32], got {b}")
    if buf.shape[0] < (n * b + 7) // 8:
        raise ValueError(f"buffer has {buf.shape[0]} bytes, need {(n * b + 7) // 8}")
    out = np.zeros(n, dtype=np.int64)
    cdef int64_t[::1] o = out
    cdef Py_ssize_t i
    cdef mpt_reader r
    if n * b == 0:
        return out
    with nogil:
        mpt_reader_init(&r, &buf[0], buf.shape[0])
        for i in range(n):
            o[i] = <int64_t>mpt_get(&r, b)
    return out
