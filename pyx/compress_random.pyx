"""Counter-based random stream shared by every compressor (SplitMix64 of (seed, index)).

The generator is documented in ``compress_common.pxi``: element i of the stream for
``seed`` is the i-th SplitMix64 output, so any rank (or a GPU thread) that knows
(seed, i) computes the same number without state.
"""
import numpy as np
cimport numpy as cnp
include "compress_common.pxi"

MASK64 = (1 << 64) - 1


def splitmix64(seed, Py_ssize_t start, Py_ssize_t count):
    """uint64[count]: outputs start .. start+count-1 of SplitMix64(seed)."""
    cdef uint64_t s = <uint64_t>(int(seed) & MASK64)
    out = np.empty(count, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(count):
            o[i] = mpt_splitmix64(s, <uint64_t>(start + i))
    return out


def uniforms(seed, Py_ssize_t count, int bits=64):
    """float64[count] in [0, 1): the u_i of the kernels' stream (``compress_common.pxi``).
    bits=64 (float64 kernels): u_i = (splitmix64(seed, i) >> 11) * 2^-53;
    bits=32 (float32 kernels): u_i = r_i * 2^-32, r_i = h_i 2^16 + l_i with h_i and l_i
    the 16-bit pieces i % 4 of splitmix64(seed, i // 4) and splitmix64(seed, 2^62 + i // 4)."""
    if bits not in (32, 64):
        raise ValueError(f"bits must be 32 or 64, got {bits}")
    cdef uint64_t s = <uint64_t>(int(seed) & MASK64)
    out = np.empty(count, dtype=np.float64)
    cdef double[::1] o = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(count):
            if bits == 64:
                o[i] = mpt_uniform(s, <uint64_t>i)
            else:
                o[i] = <double>mpt_r32(s, i) * 2.3283064365386963e-10
    return out


def derive_seed(seed, tag):
    """A new uint64 seed for a sub-stream: splitmix64(seed ^ 0xD1B54A32D192ED03, tag)."""
    return int(mpt_derive_seed(<uint64_t>(int(seed) & MASK64), <uint64_t>(int(tag) & MASK64)))
