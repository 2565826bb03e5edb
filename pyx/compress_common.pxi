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
# Kernels draw their random bits in one of two widths (both counter-based: element i's
# bits depend only on (seed, i)):
#
#     float64 kernels: r_i = splitmix64(seed, i)                  (64 bits per element)
#     float32 kernels: r_i = h_i 2^16 + l_i                        (32 bits per element)
#         h_i = bits [16 (i mod 4), 16 (i mod 4) + 16) of splitmix64(seed, floor(i / 4))
#         l_i = the same bits of splitmix64(seed, 2^62 + floor(i / 4))
#
# and u_i = r_i 2^-32 (float32) or u_i = (r_i >> 11) 2^-53 (float64). A random rounding
# goes up iff u_i < p_i, compared exactly (p_i is a float of the input dtype). When
# p_i = m / 2^M (an IEEE mantissa m of M bits) this is the integer test
# (r_i >> 9) < m for float32 and (r_i >> 12) < m for float64; otherwise float32 kernels
# compare (double) r_i < p_i 2^32, both sides exact in double. A CUDA thread reproduces
# element i from (seed, i) alone with the four lines above on unsigned long long.
#
# Why the float32 stream is split in two: the test u_i < p_i is decided by h_i alone unless
# h_i = floor(p_i 2^16), one value in 2^16, so a SIMD encoder makes one SplitMix64 word per
# 4 entries (the "lead" words, 2^62 apart from the "tail" words, so no word serves twice
# while d < 2^64) and the tail words only for the rare undecided groups; the whole r_i is
# still a 32-bit uniform, every bit of it a SplitMix64 output bit. (Until 2026-12 the
# float32 stream was the 32-bit halves of splitmix64(seed, floor(i / 2)): one word per 2
# entries; AVX2, which has no 64-bit multiply, spent most of the ternary and dithering
# encoders' time making them. Float32 payloads of the random quantisers changed then;
# float64 payloads did not.)
#
# Bit streams. Codes of b bits (0 <= b <= 32) are written LSB first: code j occupies bits
# [j b, (j + 1) b) of the buffer, bit t of the buffer being bit (t mod 8) of byte t div 8.
# The buffer has exactly ceil(n b / 8) bytes; unused high bits of the last byte are 0.
# (Words are moved with memcpy of uint32, so the host must be little-endian.)
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    /* mpt_fill64 (w[j] = splitmix64(seed, first + j)) in baseline, AVX2 and AVX-512
       versions, picked by the module's SIMD level (capped by mpt_simd_force like the other
       kernels); the baseline build stays portable (no -march flags). */
    #include "compress_simd.h"
    static inline uint64_t mpt_splitmix64(uint64_t seed, uint64_t i) {
        return mpt_sm64(seed, i);
    }
    /* A sub-stream's seed: splitmix64(seed ^ 0xD1B54A32D192ED03, tag) (compress_random.derive_seed). */
    static inline uint64_t mpt_derive_seed(uint64_t seed, uint64_t tag) {
        return mpt_sm64(seed ^ 0xD1B54A32D192ED03ULL, tag);
    }
    /* r[0..n): the float64 stream words splitmix64(seed, start + j). */
    static inline void mpt_random64(uint64_t seed, int64_t start, int64_t n, uint64_t *r) {
        mpt_fill64(seed, start, n, r);
    }
    /* Pack n codes (n a multiple of 8) of B bits (1 <= B <= 16) at byte pos of buf (cap
       bytes, pos byte-aligned): 8 codes make exactly B bytes. Returns the new pos. */
    #define MPT_PACK8(B) \
        for (int64_t g = 0; g < n; g += 8) { \
            const uint16_t *q = c + g; \
            if (B <= 8) { \
                uint64_t v = 0; \
                for (int j = 0; j < 8; j++) v |= (uint64_t)q[j] << (j * (B)); \
                if (pos + 8 <= cap) memcpy(buf + pos, &v, 8); else memcpy(buf + pos, &v, B); \
            } else { \
                unsigned __int128 v = 0; \
                for (int j = 0; j < 8; j++) v |= (unsigned __int128)q[j] << (j * (B)); \
                if (pos + 16 <= cap) memcpy(buf + pos, &v, 16); else memcpy(buf + pos, &v, B); \
            } \
            pos += B; \
        } \
        break;
    static inline int64_t mpt_pack_codes(const uint16_t *c, int64_t n, int b, uint8_t *buf,
                                         int64_t pos, int64_t cap) {
        switch (b) {
            case 1: MPT_PACK8(1) case 2: MPT_PACK8(2) case 3: MPT_PACK8(3) case 4: MPT_PACK8(4)
            case 5: MPT_PACK8(5) case 6: MPT_PACK8(6) case 7: MPT_PACK8(7) case 8: MPT_PACK8(8)
            case 9: MPT_PACK8(9) case 10: MPT_PACK8(10) case 11: MPT_PACK8(11)
            case 12: MPT_PACK8(12) case 13: MPT_PACK8(13) case 14: MPT_PACK8(14)
            case 15: MPT_PACK8(15) case 16: MPT_PACK8(16)
        }
        return pos;
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
    uint32_t mpt_r32(uint64_t seed, int64_t i) nogil
    uint64_t mpt_derive_seed(uint64_t seed, uint64_t tag) nogil
    double mpt_uniform(uint64_t seed, uint64_t i) nogil
    void mpt_random32_at(uint64_t seed, int64_t first, int64_t n, uint32_t *r) nogil
    void mpt_random64(uint64_t seed, int64_t start, int64_t n, uint64_t *r) nogil
    int64_t mpt_pack_codes(const uint16_t *c, int64_t n, int b, uint8_t *buf, int64_t pos,
                           int64_t cap) nogil
    ctypedef struct mpt_writer:
        uint8_t *buf
        int64_t pos
        uint64_t acc
        int nacc
    ctypedef struct mpt_reader:
        int64_t pos
        uint64_t acc
        int nacc
    void mpt_writer_init(mpt_writer *w, uint8_t *buf) nogil
    void mpt_put(mpt_writer *w, uint64_t code, int b) nogil
    void mpt_flush(mpt_writer *w) nogil
    void mpt_reader_init(mpt_reader *r, const uint8_t *buf, int64_t n) nogil
    uint64_t mpt_get(mpt_reader *r, int b) nogil
