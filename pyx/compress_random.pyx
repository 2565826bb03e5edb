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


def uniforms(seed, Py_ssize_t count):
    """float64[count] in [0, 1): u_i = (splitmix64(seed, i) >> 11) * 2^-53."""
    cdef uint64_t s = <uint64_t>(int(seed) & MASK64)
    out = np.empty(count, dtype=np.float64)
    cdef double[::1] o = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(count):
            o[i] = mpt_uniform(s, <uint64_t>i)
    return out


def derive_seed(seed, tag):
    """A new uint64 seed for a sub-stream: splitmix64(seed ^ 0xD1B54A32D192ED03, tag)."""
    cdef uint64_t s = <uint64_t>((int(seed) ^ 0xD1B54A32D192ED03) & MASK64)
    return int(mpt_splitmix64(s, <uint64_t>(int(tag) & MASK64)))
