# Shared inline helpers for the compression kernels (included, not a module).
#
# Random stream. Element i of the stream for a uint64 ``seed`` is the i-th output of
# SplitMix64 seeded with ``seed`` (Steele, Lea, Flood 2014), computed without state:
#
#     z = seed + (i + 1) * 0x9E3779B97F4A7C15          (mod 2^64)
#     z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9         (mod 2^64)
#     z = (z ^ (z >> 27)) * 0x94D049BB133111EB         (mod 2^64)
#     z =  z ^ (z >> 31)
#     u_i = (z >> 11) * 2^-53                          (a double in [0, 1))
#
# A stochastic rounding of element i goes up iff u_i < p_i, p_i computed in the input
# dtype. When p_i = m / 2^23 (a float32 mantissa m) this is the integer test
# (z >> 41) < m, and for float64 (p_i = m / 2^52) it is (z >> 12) < m; the kernels use
# these exact integer forms. A CUDA kernel reproduces the stream bit for bit with the
# same four lines on unsigned long long.
#
# Bit streams. Codes of b bits (0 <= b <= 32) are written LSB first: code j occupies bits
# [j b, (j + 1) b) of the buffer, bit t of the buffer being bit (t mod 8) of byte t div 8.
# The buffer has exactly ceil(n b / 8) bytes; unused high bits of the last byte are 0.
# (Words are moved with memcpy of uint32, so the host must be little-endian.)
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    static inline uint64_t mpt_splitmix64(uint64_t seed, uint64_t i) {
        uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    static inline double mpt_uniform(uint64_t seed, uint64_t i) {
        return (double)(mpt_splitmix64(seed, i) >> 11) * 0x1.0p-53;
    }
    typedef struct { uint8_t *buf; int64_t pos; uint64_t acc; int nacc; } mpt_writer;
    static inline void mpt_writer_init(mpt_writer *w, uint8_t *buf) {
        w->buf = buf; w->pos = 0; w->acc = 0; w->nacc = 0;
    }
    static inline void mpt_put(mpt_writer *w, uint64_t code, int b) {
        w->acc |= code << w->nacc;
        w->nacc += b;
        if (w->nacc >= 32) {
            uint32_t lo = (uint32_t)w->acc;
            memcpy(w->buf + w->pos, &lo, 4);
            w->pos += 4; w->acc >>= 32; w->nacc -= 32;
        }
    }
    static inline void mpt_flush(mpt_writer *w) {
        while (w->nacc > 0) {
            w->buf[w->pos++] = (uint8_t)w->acc;
            w->acc >>= 8; w->nacc -= 8;
        }
        w->acc = 0; w->nacc = 0;
    }
    typedef struct { const uint8_t *buf; int64_t pos; int64_t n; uint64_t acc; int nacc; } mpt_reader;
    static inline void mpt_reader_init(mpt_reader *r, const uint8_t *buf, int64_t n) {
        r->buf = buf; r->pos = 0; r->n = n; r->acc = 0; r->nacc = 0;
    }
    static inline uint64_t mpt_get(mpt_reader *r, int b) {
        if (r->nacc < b) {
            if (r->pos + 4 <= r->n) {
                uint32_t v; memcpy(&v, r->buf + r->pos, 4);
                r->acc |= (uint64_t)v << r->nacc; r->nacc += 32; r->pos += 4;
            } else {
                while (r->nacc < b && r->pos < r->n) {
                    r->acc |= (uint64_t)r->buf[r->pos++] << r->nacc; r->nacc += 8;
                }
            }
        }
        uint64_t v = r->acc & ((1ULL << b) - 1ULL);
        r->acc >>= b; r->nacc -= b;
        return v;
    }
    """
    uint64_t mpt_splitmix64(uint64_t seed, uint64_t i) nogil
    double mpt_uniform(uint64_t seed, uint64_t i) nogil
    ctypedef struct mpt_writer:
        int64_t pos
    ctypedef struct mpt_reader:
        int64_t pos
    void mpt_writer_init(mpt_writer *w, uint8_t *buf) nogil
    void mpt_put(mpt_writer *w, uint64_t code, int b) nogil
    void mpt_flush(mpt_writer *w) nogil
    void mpt_reader_init(mpt_reader *r, const uint8_t *buf, int64_t n) nogil
    uint64_t mpt_get(mpt_reader *r, int b) nogil
