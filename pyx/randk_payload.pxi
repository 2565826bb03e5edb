# Rand-k's subset and payload in C (included, not a module): the subset of a seed as a bitmap, and
# the payload (the seed, then the kept values in index order) written and read. Included by
# compress_select.pyx (mpitrain.compress.rand_k's kernels) and compressed_steps.pyx (compressed SGD's
# steps in C), so both draw the same subsets and write the same bytes. Needs compress_common.pxi
# (mpt_splitmix64, real_t) and libc's memcpy and memset, and NAN.
from libc.math cimport NAN
from libc.string cimport memcpy, memset


cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil

cdef extern from *:
    """
    static inline uint64_t mpt_draw_below(uint64_t h, uint64_t d) {
        return (uint64_t)(((unsigned __int128)h * d) >> 64);
    }
    """
    uint64_t mpt_draw_below(uint64_t h, uint64_t d) nogil


cdef void randk_bitmap(uint64_t s, Py_ssize_t d, Py_ssize_t k, uint64_t *bm) noexcept nogil:
    """bm[0 .. ceil(d / 64)) (zeroed by the caller): bit v set for each of the first
    m = min(k, d - k) distinct draws v_j (see ``randk_indices``)."""
    cdef Py_ssize_t m = d - k if 2 * k > d else k, got = 0, j = 0
    cdef uint64_t v, bit
    while got < m:
        v = mpt_draw_below(mpt_splitmix64(s, <uint64_t>j), <uint64_t>d)
        j += 1
        bit = 1ULL << (v & 63)
        got += (bm[v >> 6] & bit) == 0
        bm[v >> 6] |= bit


cdef inline uint64_t randk_word(const uint64_t *bm, Py_ssize_t w, Py_ssize_t d, bint complement) noexcept nogil:
    """Word w of the subset's bitmap: the drawn bits, or their complement within [0, d)."""
    cdef uint64_t word = ~bm[w] if complement else bm[w]
    if complement and w == (d + 63) // 64 - 1 and d % 64:
        word &= (1ULL << (d % 64)) - 1ULL
    return word


cdef void randk_gather(const real_t *x, Py_ssize_t d, Py_ssize_t k, uint64_t s, const uint64_t *bm,
                       uint8_t *out, double *top, double *bottom) noexcept nogil:
    """out = the seed s (8 bytes), then x at the subset of ``bm``, in index order; the largest
    and smallest value kept (NaN for both when one is NaN)."""
    cdef Py_ssize_t nw = (d + 63) // 64, w, i = 0, at
    cdef bint complement = 2 * k > d, nan = False
    cdef real_t v, hi = 0, lo = 0
    cdef uint64_t word
    memcpy(out, &s, 8)  # little-endian host (compress_common.pxi)
    for w in range(nw):
        word = randk_word(bm, w, d, complement)
        while word:
            at = 64 * w + __builtin_ctzll(word)
            word &= word - 1
            v = x[at]
            memcpy(out + 8 + i * sizeof(real_t), &v, sizeof(real_t))
            if v != v:
                nan = True
            else:
                if i == 0 or v > hi:
                    hi = v
                if i == 0 or v < lo:
                    lo = v
            i += 1
    top[0] = hi
    bottom[0] = lo
    if nan:
        top[0] = bottom[0] = NAN


cdef void randk_scatter(const uint8_t *payload, Py_ssize_t k, double scale, const uint64_t *bm,
                        real_t *out, Py_ssize_t d) noexcept nogil:
    """out = zeros, and value_j * scale (rounded in real_t) at the j-th index of ``bm``'s subset."""
    cdef Py_ssize_t nw = (d + 63) // 64, w, i = 0, at
    cdef bint complement = 2 * k > d
    cdef real_t v, sc = <real_t>scale
    cdef uint64_t word
    memset(out, 0, d * sizeof(real_t))
    for w in range(nw):
        word = randk_word(bm, w, d, complement)
        while word:
            at = 64 * w + __builtin_ctzll(word)
            word &= word - 1
            memcpy(&v, payload + 8 + i * sizeof(real_t), sizeof(real_t))
            out[at] = v * sc
            i += 1
