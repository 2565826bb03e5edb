# Row draws (included by pyx/objectives.pyx and pyx/sgd_steps.pyx): the stream of
# numpy.random.Generator.integers(0, n, size, dtype=int64), step for step.

from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdint cimport UINT32_MAX, UINT64_MAX, int64_t, uint32_t, uint64_t
from numpy.random cimport bitgen_t

# Generator.integers(0, n, size=b) (int64) calls numpy's random_bounded_uint64_fill(bitgen, off=0,
# rng=n - 1, b, use_masked=False, out) (numpy/random/src/distributions/distributions.c): rng = 0 gives
# zeros and draws nothing; rng = 2^32 - 1 takes next_uint32; a smaller rng takes Lemire's method on
# 32-bit draws, a larger one Lemire's method on 64-bit draws (arXiv 1805.10941). The functions below
# are those of numpy, step for step, on the BitGenerator's own bitgen_t (its state, and PCG64's
# buffered half word, advance exactly as they do in numpy). rng = 2^64 - 1 cannot occur: n <= 2^63 - 1.

cdef extern from *:
    """
    static inline uint64_t mpitrain_mul_hi_lo(uint64_t a, uint64_t b, uint64_t *lo) {
        __uint128_t m = (__uint128_t)a * b;
        *lo = (uint64_t)m;
        return (uint64_t)(m >> 64);
    }
    """
    uint64_t mul_hi_lo "mpitrain_mul_hi_lo"(uint64_t a, uint64_t b, uint64_t* lo) noexcept nogil


cdef inline uint32_t lemire_uint32(bitgen_t* bitgen, uint32_t rng) noexcept nogil:
    """Uniform on [0, rng], rng < 2^32 - 1: numpy's buffered_bounded_lemire_uint32."""
    cdef uint32_t rng_excl = rng + 1
    cdef uint64_t m = <uint64_t>bitgen.next_uint32(bitgen.state) * rng_excl
    cdef uint32_t leftover = <uint32_t>m
    cdef uint32_t threshold
    if leftover < rng_excl:
        threshold = (UINT32_MAX - rng) % rng_excl
        while leftover < threshold:
            m = <uint64_t>bitgen.next_uint32(bitgen.state) * rng_excl
            leftover = <uint32_t>m
    return <uint32_t>(m >> 32)


cdef inline uint64_t lemire_uint64(bitgen_t* bitgen, uint64_t rng) noexcept nogil:
    """Uniform on [0, rng], 2^32 - 1 < rng < 2^64 - 1: numpy's bounded_lemire_uint64."""
    cdef uint64_t rng_excl = rng + 1
    cdef uint64_t leftover, threshold
    cdef uint64_t high = mul_hi_lo(bitgen.next_uint64(bitgen.state), rng_excl, &leftover)
    if leftover < rng_excl:
        threshold = (UINT64_MAX - rng) % rng_excl
        while leftover < threshold:
            high = mul_hi_lo(bitgen.next_uint64(bitgen.state), rng_excl, &leftover)
    return high


cdef inline void draw_rows(bitgen_t* bitgen, uint64_t rng, Py_ssize_t count, int64_t* out) noexcept nogil:
    """out[0 .. count) uniform on [0, rng]: numpy's random_bounded_uint64_fill with off = 0."""
    cdef Py_ssize_t i
    if rng == 0:
        for i in range(count):
            out[i] = 0
    elif rng == UINT32_MAX:
        for i in range(count):
            out[i] = <int64_t>bitgen.next_uint32(bitgen.state)
    elif rng < UINT32_MAX:
        for i in range(count):
            out[i] = <int64_t>lemire_uint32(bitgen, <uint32_t>rng)
    else:
        for i in range(count):
            out[i] = <int64_t>lemire_uint64(bitgen, rng)


cdef bitgen_t* bitgen_of(object bit_generator) except NULL:
    """The bitgen_t of a numpy BitGenerator (its "BitGenerator" capsule)."""
    capsule = bit_generator.capsule
    if not PyCapsule_IsValid(capsule, b"BitGenerator"):
        raise ValueError("bit_generator must be a numpy.random.BitGenerator")
    return <bitgen_t*>PyCapsule_GetPointer(capsule, b"BitGenerator")
