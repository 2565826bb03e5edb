"""Exact top-k selection by magnitude in O(d) and seeded Rand-k supports in O(k + d / 64), and
the Top-k and Rand-k payloads written and read in one call each (at the end of this file).

Radix select on 16-bit digits of an unsigned key, most significant digit first. For
Top-k the key of x_i is its IEEE bit pattern with the sign bit cleared (monotone in |x_i|
for non-NaN values; NaN ranks above inf). (The ``hashed`` key, splitmix64(seed, i), is
kept for hash-ranked selections; Rand-k now draws its subset in O(k), see
``randk_indices``.)

Fast path (one pass over x): a threshold t is read off a strided sample of 32768 keys
(a sample quantile with a safety margin, so that about 1.1 k + O(sqrt k) keys are >= t);
one pass collects the indices with key >= t, in ascending order; the exact top k of
those candidates is found by radix select. If fewer than k or too many candidates come
back (adversarial data), the exact radix select runs on all d keys instead, so the
result is always exact. Radix select: 16-bit digits, most significant first; each level
histograms the next digit of the keys sharing the prefix found so far; a last pass
writes indices in ascending order. Among equal keys the smaller index wins.
"""
import threading

import numpy as np
cimport numpy as cnp
from libc.string cimport memset, memcpy
from libc.math cimport sqrt, NAN
include "compress_common.pxi"
include "ndarray_args.pxi"
include "topk_payload.pxi"
include "randk_payload.pxi"

cdef extern from "compress_simd.h":
    int mpt_simd_level() nogil
    int mpt_simd_force(int cap) nogil
    int64_t mpt_collect32(const uint32_t *v, int64_t d, uint32_t t, uint32_t *idx,
                          uint32_t *key, int64_t cap, int64_t block) nogil


def simd_level(cap=None):
    """The SIMD level of this module's kernels (0 scalar, 1 AVX2, 2 AVX-512), after
    capping it at ``cap`` when given (tests run every level; results are identical)."""
    if cap is not None:
        return mpt_simd_force(int(cap))
    return mpt_simd_level()

cdef enum:
    BLOCK = 4096


cdef inline uint64_t key_of(const key_t *v, uint64_t absmask, bint hashed,
                            uint64_t seed, Py_ssize_t i) noexcept nogil:
    if hashed:
        return mpt_splitmix64(seed, <uint64_t>i)
    return (<uint64_t>v[i]) & absmask


cdef Py_ssize_t radix_select(const key_t *v, Py_ssize_t d, Py_ssize_t k, uint64_t absmask,
                             bint hashed, uint64_t seed, int nbits, int64_t *out,
                             int64_t *hist) noexcept nogil:
    """Write the k indices of largest key into out (ascending); returns k."""
    cdef uint64_t prefix = 0, pmask = 0, key
    cdef int shift = nbits - 16
    cdef Py_ssize_t i, need = k, j, digit
    cdef int64_t cum
    while True:
        memset(hist, 0, 65536 * sizeof(int64_t))
        if pmask == 0:
            for i in range(d):
                key = key_of(v, absmask, hashed, seed, i)
                hist[(key >> shift) & 0xFFFF] += 1
        else:
            for i in range(d):
                key = key_of(v, absmask, hashed, seed, i)
                if (key & pmask) == prefix:
                    hist[(key >> shift) & 0xFFFF] += 1
        cum = 0
        digit = 65535
        while digit > 0 and cum + hist[digit] < need:
            cum += hist[digit]
            digit -= 1
        need -= cum
        prefix |= (<uint64_t>digit) << shift
        pmask |= (<uint64_t>0xFFFF) << shift
        if shift == 0 or hist[digit] == need:
            break
        shift -= 16
    # Final pass: keys above the prefix, then the first `need` keys equal to it.
    j = 0
    cdef Py_ssize_t taken_eq = 0
    cdef uint64_t km
    for i in range(d):
        km = key_of(v, absmask, hashed, seed, i) & pmask
        if km > prefix:
            out[j] = i
            j += 1
        elif km == prefix and taken_eq < need:
            out[j] = i
            j += 1
            taken_eq += 1
        if j == k:
            break
    return j


cdef Py_ssize_t collect_at_least(const key_t *v, Py_ssize_t d, uint64_t absmask, bint hashed,
                                 uint64_t seed, uint64_t t, int64_t *cand, key_t *ckeys,
                                 Py_ssize_t cap) noexcept nogil:
    """Indices i (ascending) with key_i >= t into cand, their keys into ckeys (room for
    cap + BLOCK entries each);
    returns their count, or -1 once more than cap were found. Branch-free compaction:
    every index is written, the count only moves past the kept ones."""
    cdef Py_ssize_t i, j, start, stop, n = 0
    cdef int hit
    cdef uint64_t key
    start = 0
    while start < d:
        stop = start + BLOCK
        if stop > d:
            stop = d
        if hashed:
            for i in range(start, stop):
                key = mpt_splitmix64(seed, <uint64_t>i)
                cand[n] = i
                ckeys[n] = <key_t>key
                n += <Py_ssize_t>(key >= t)
        else:
            # 16 keys at a time: one vectorisable test, the rare hits handled one by one
            i = start
            while i + 16 <= stop:
                hit = 0
                for j in range(16):
                    hit |= <int>(((<uint64_t>v[i + j]) & absmask) >= t)
                if hit:
                    for j in range(16):
                        key = (<uint64_t>v[i + j]) & absmask
                        cand[n] = i + j
                        ckeys[n] = <key_t>key
                        n += <Py_ssize_t>(key >= t)
                i += 16
            for i in range(i, stop):
                key = (<uint64_t>v[i]) & absmask
                cand[n] = i
                ckeys[n] = <key_t>key
                n += <Py_ssize_t>(key >= t)
        if n > cap:
            return -1
        start = stop
    return n


cdef void hash_keys(uint64_t seed, const int64_t *idx, Py_ssize_t n, uint64_t *keys) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        keys[i] = mpt_splitmix64(seed, <uint64_t>idx[i])


SAMPLE = 32768
#: up to this d, ``topk_indices`` selects by quickselect (``topk_small`` of topk_payload.pxi,
#: k <= SMALL_K) or sorts the keys (``_topk_sorted``, larger k): a radix pass zeroes a
#: 65536-bucket histogram (512 KiB), 50-100 us at d = 300; the sort takes a few us there and
#: is slower than the radix select above about d = 2000 (measured 2026-12-01)
SORT_MAX_D = SMALL_D  # 1024


def _margin(Py_ssize_t k, Py_ssize_t d, Py_ssize_t s):
    """How many of s sampled keys lie above the threshold: 1.1 k s / d + 4 sqrt(.) + 8."""
    m = float(k) * s / d
    return min(s, int(1.1 * m + 4.0 * m ** 0.5 + 8))


def _exact_among(keys, cand, Py_ssize_t k, int nbits):
    """cand[positions of the k largest keys] (keys: uint32/uint64 contiguous, no mask)."""
    cdef Py_ssize_t n = keys.shape[0]
    pos = np.empty(k, dtype=np.int64)
    hist = np.empty(65536, dtype=np.int64)
    cdef int64_t[::1] p = pos
    cdef int64_t[::1] h = hist
    cdef const uint32_t[::1] k32
    cdef const uint64_t[::1] k64
    if nbits == 32:
        k32 = keys
        with nogil:
            radix_select(&k32[0], n, k, 0xFFFFFFFFULL, False, 0, 32, &p[0], &h[0])
    else:
        k64 = keys
        with nogil:
            radix_select(&k64[0], n, k, ~0ULL, False, 0, 64, &p[0], &h[0])
    return cand[pos]


def topk_exact(x, Py_ssize_t k):
    """Same result as ``topk_indices`` by full radix select (no sampling); for tests."""
    x = np.ascontiguousarray(x)
    cdef Py_ssize_t d = x.shape[0]
    if not 1 <= k <= d:
        raise ValueError(f"k must satisfy 1 <= k <= d = {d}, got k={k}")
    out = np.empty(k, dtype=np.int64)
    hist = np.empty(65536, dtype=np.int64)
    cdef int64_t[::1] o = out
    cdef int64_t[::1] h = hist
    cdef const uint32_t[::1] v32
    cdef const uint64_t[::1] v64
    if x.dtype == np.float32:
        v32 = x.view(np.uint32)
        with nogil:
            radix_select(&v32[0], d, k, 0x7FFFFFFFULL, False, 0, 32, &o[0], &h[0])
    elif x.dtype == np.float64:
        v64 = x.view(np.uint64)
        with nogil:
            radix_select(&v64[0], d, k, 0x7FFFFFFFFFFFFFFFULL, False, 0, 64, &o[0], &h[0])
    else:
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    return out


def _topk_small(x, Py_ssize_t k):
    """``_topk_sorted``'s result by :func:`topk_small` (d <= SORT_MAX_D, k <= SMALL_K)."""
    cdef Py_ssize_t d = x.shape[0]
    out = np.empty(k + 1, dtype=np.int64)  # topk_small stores one past the last kept index
    cdef int64_t[::1] o = out
    cdef uint64_t keys[2 * SMALL_D]
    cdef const uint32_t[::1] v32
    cdef const uint64_t[::1] v64
    if x.dtype == np.float32:
        v32 = x.view(np.uint32)
        with nogil:
            topk_small(&v32[0], d, k, 0x7FFFFFFFULL, &o[0], <uint32_t *>keys)
    else:
        v64 = x.view(np.uint64)
        with nogil:
            topk_small(&v64[0], d, k, 0x7FFFFFFFFFFFFFFFULL, &o[0], keys)
    return out[:k]


def _topk_sorted(x, Py_ssize_t k):
    """``topk_exact``'s result by a stable sort of the magnitude keys, descending (ties keep
    index order, so the smaller index wins); for small d."""
    ukey = np.uint32 if x.dtype == np.float32 else np.uint64
    absmask = ukey(0x7FFFFFFF if x.dtype == np.float32 else 0x7FFFFFFFFFFFFFFF)
    order = (absmask - (x.view(ukey) & absmask)).argsort(kind="stable")[:k]
    order.sort()
    return order.astype(np.int64, copy=False)


_scratch = threading.local()


def _scratch_arrays(Py_ssize_t n):
    """This thread's reusable buffers: candidate indices and keys (uint32, >= n each) and
    the radix histogram. Reused across calls: fresh pages would cost a page fault per
    4 KiB, as much as the candidate pass itself."""
    got = getattr(_scratch, "arrays", None)
    if got is None or got[0].shape[0] < n:
        got = (np.empty(n, np.uint32), np.empty(n, np.uint32), np.empty(65536, np.int64))
        _scratch.arrays = got
    return got


def _topk32_candidates(keys, Py_ssize_t d, Py_ssize_t k, uint32_t t, Py_ssize_t cap, x):
    """Float32 fast path: SIMD candidate pass (compress_simd.h) on keys >= t, then the
    exact top k of the candidates by radix select; int64[k] ascending."""
    cidx, ckeys, hist = _scratch_arrays(cap + BLOCK + 16)
    out = np.empty(k, dtype=np.int64)
    cdef const uint32_t[::1] v = keys
    cdef uint32_t[::1] ci = cidx
    cdef uint32_t[::1] ck = ckeys
    cdef int64_t[::1] h = hist
    cdef int64_t[::1] o = out
    cdef Py_ssize_t n, j
    with nogil:
        n = mpt_collect32(&v[0], d, t, &ci[0], &ck[0], cap, BLOCK)
        if n >= k:
            radix_select(&ck[0], n, k, 0xFFFFFFFFULL, False, 0, 32, &o[0], &h[0])
            for j in range(k):  # candidate positions -> indices of x (both ascending)
                o[j] = ci[o[j]]
    if n < k:
        return topk_exact(x, k)
    return out


def topk_indices(x, Py_ssize_t k):
    """int64[k], ascending: indices of the k entries of x (float32/float64, 1-D) of
    largest magnitude; among equal magnitudes the smaller index wins. O(d)."""
    x = np.ascontiguousarray(x)
    cdef Py_ssize_t d = x.shape[0]
    if not 1 <= k <= d:
        raise ValueError(f"k must satisfy 1 <= k <= d = {d}, got k={k}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    if d <= SORT_MAX_D:
        return _topk_small(x, k) if k <= SMALL_K else _topk_sorted(x, k)
    if d < 4 * SAMPLE or 4 * k > d:
        return topk_exact(x, k)
    nbits = 32 if x.dtype == np.float32 else 64
    ukey = np.uint32 if nbits == 32 else np.uint64
    absmask = (1 << (nbits - 1)) - 1
    keys = x.view(ukey)
    sample = keys[:: d // SAMPLE][:SAMPLE] & ukey(absmask)
    q = _margin(k, d, SAMPLE)
    t = int(np.partition(sample, SAMPLE - q)[SAMPLE - q])
    cdef Py_ssize_t cap = 2 * k + 4096
    cdef Py_ssize_t n
    cdef uint64_t tt = t, am = absmask
    cdef const uint32_t[::1] v32
    cdef const uint64_t[::1] v64
    cdef uint32_t[::1] i32
    cdef uint32_t[::1] c32
    cdef int64_t[::1] c
    cdef uint64_t[::1] c64
    if nbits == 32 and d < 2 ** 32:
        return _topk32_candidates(keys, d, k, <uint32_t>tt, cap, x)
    cand = np.empty(cap + BLOCK, dtype=np.int64)
    ckeys = np.empty(cap + BLOCK, dtype=ukey)
    c = cand
    if nbits == 32:
        v32 = keys
        c32 = ckeys
        with nogil:
            n = collect_at_least(&v32[0], d, am, False, 0, tt, &c[0], &c32[0], cap)
    else:
        v64 = keys
        c64 = ckeys
        with nogil:
            n = collect_at_least(&v64[0], d, am, False, 0, tt, &c[0], &c64[0], cap)
    if n < k:
        return topk_exact(x, k)
    return _exact_among(ckeys[:n], cand[:n], k, nbits)


def randk_indices(seed, Py_ssize_t d, Py_ssize_t k):
    """int64[k], ascending: a uniformly random k-subset of [0, d) fixed by seed, in
    O(k + d / 64) time (a bitmap of d bits).

    Draw j is v_j = floor(splitmix64(seed, j) d / 2^64) (j = 0, 1, ...; bias <= d / 2^64).
    With m = min(k, d - k), the first m distinct draws are taken (sampling without
    replacement by rejection, expected draws <= 1.39 m); the subset is those m indices
    when k <= d / 2, else their complement. Any rank or GPU that knows (seed, d, k)
    regenerates it."""
    if not 1 <= k <= d:
        raise ValueError(f"k must satisfy 1 <= k <= d = {d}, got k={k}")
    cdef uint64_t s = <uint64_t>(int(seed) & ((1 << 64) - 1))
    cdef bint complement = 2 * k > d
    cdef Py_ssize_t nw = (d + 63) // 64, w, j = 0
    cdef uint64_t word
    bitmap = np.zeros(nw, dtype=np.uint64)
    out = np.empty(k, dtype=np.int64)
    cdef uint64_t[::1] bm = bitmap
    cdef int64_t[::1] o = out
    with nogil:
        randk_bitmap(s, d, k, &bm[0])
        for w in range(nw):
            word = randk_word(&bm[0], w, d, complement)
            while word:
                o[j] = 64 * w + __builtin_ctzll(word)
                j += 1
                word &= word - 1
    return out


# -- Top-k and Rand-k payloads in one call each (mpitrain.compress.top_k / rand_k) ------------
# At the d of the papers' experiments (d = 300) the selection is the smallest part of an
# encode: the Python around it (an index array, a gather, a packing call, a range check)
# cost 3 to 5 times as much. These write and read the same payloads as the compressors'
# step-by-step form (values then packed indices for Top-k; the seed then the values for
# Rand-k), from the same selections (``topk_small`` / ``topk_indices``, ``randk_bitmap``).
# Top-k's C parts (topk_small, gather_pack, topk_encode_into, topk_scatter) are in
# topk_payload.pxi, which compressed SGD's fused exchange (compressed_steps.pyx) includes too.

cdef extern from "stdlib.h":
    void *calloc(size_t n, size_t size) nogil
    void free(void *p) nogil


def topk_encode(x, Py_ssize_t k, int b, out):
    """Top-k's payload of x (float32 or float64, contiguous) into ``out``: the k values of
    ``topk_indices(x, k)`` in index order, then those indices packed at b bits (LSB first).
    Returns out (as an array)."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(x, &d, False)
    cdef uint8_t *o = byte_data(out, &n, True)
    cdef const int64_t[::1] indices
    cdef const int64_t *idx = NULL  # NULL: topk_encode_into selects (small d and k)
    cdef Py_ssize_t width = 4 if kind == cnp.NPY_FLOAT else 8
    if kind < 0 or o == NULL or not 1 <= k <= d or not 0 <= b <= 32 or (<int64_t>1 << b) < d \
            or n != k * width + (k * b + 7) // 8:
        return _topk_encode_buffers(x, k, b, out)  # the general path: its checks and errors
    if d > SORT_MAX_D or k > SMALL_K:
        indices = topk_indices(x, k)
        idx = &indices[0]
    if kind == cnp.NPY_FLOAT:
        topk_encode_into(<const float*>vector_data(x), d, k, b, idx, o)
    else:
        topk_encode_into(<const double*>vector_data(x), d, k, b, idx, o)
    return out


def _topk_encode_buffers(x, Py_ssize_t k, int b, uint8_t[::1] out):
    """``topk_encode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = x.shape[0]
    if not 1 <= k <= d:
        raise ValueError(f"k must satisfy 1 <= k <= d = {d}, got k={k}")
    if not 0 <= b <= 32 or (1 << b) < d:
        raise ValueError(f"b = {b} bits cannot hold an index below d = {d}")
    if x.dtype != np.float32 and x.dtype != np.float64:
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    if out.shape[0] != k * x.itemsize + (k * b + 7) // 8:
        raise ValueError(f"out has {out.shape[0]} bytes, a Top-k payload needs {k * x.itemsize + (k * b + 7) // 8}")
    cdef const float[::1] x32
    cdef const double[::1] x64
    cdef const int64_t[::1] indices
    cdef const int64_t *idx = NULL  # NULL: topk_encode_into selects (small d and k)
    if d > SORT_MAX_D or k > SMALL_K:
        indices = topk_indices(x, k)
        idx = &indices[0]
    if x.dtype == np.float32:
        x32 = x
        with nogil:
            topk_encode_into(&x32[0], d, k, b, idx, &out[0])
    else:
        x64 = x
        with nogil:
            topk_encode_into(&x64[0], d, k, b, idx, &out[0])
    return np.asarray(out)


def topk_decode(payload, Py_ssize_t k, int b, out):
    """out (float32 or float64, contiguous) = the vector a Top-k payload holds: zeros but at
    its k indices; IndexError when an index is not below d = out's size (a payload for
    another d, or corrupt). Returns out."""
    cdef Py_ssize_t d = 0, n = 0, bad = -1
    cdef int kind = vector_type(out, &d, True)
    cdef const uint8_t *p = byte_data(payload, &n, False)
    cdef Py_ssize_t width = 4 if kind == cnp.NPY_FLOAT else 8
    if kind < 0 or p == NULL or d < 1 or not 0 <= b <= 32 or n != k * width + (k * b + 7) // 8:
        return _topk_decode_buffers(payload, k, b, out)  # the general path: its checks and errors
    if kind == cnp.NPY_FLOAT:
        bad = topk_scatter(p, n, k, b, <float*>vector_data(out), d)
    else:
        bad = topk_scatter(p, n, k, b, <double*>vector_data(out), d)
    if bad >= 0:
        raise IndexError(f"index {bad} is out of bounds for axis 0 with size {d}")
    return out


def _topk_decode_buffers(const uint8_t[::1] payload, Py_ssize_t k, int b, out):
    """``topk_decode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = out.shape[0], bad, n = payload.shape[0]
    cdef Py_ssize_t width = out.itemsize
    if n != k * width + (k * b + 7) // 8 or not 0 <= b <= 32 or d < 1:
        raise ValueError(f"payload has {n} bytes, a Top-k payload of k = {k} at {b} bits needs "
                         f"{k * width + (k * b + 7) // 8}")
    cdef float[::1] o32
    cdef double[::1] o64
    if out.dtype == np.float32:
        o32 = out
        with nogil:
            bad = topk_scatter(&payload[0], n, k, b, &o32[0], d)
    elif out.dtype == np.float64:
        o64 = out
        with nogil:
            bad = topk_scatter(&payload[0], n, k, b, &o64[0], d)
    else:
        raise TypeError(f"out must be float32 or float64, got {out.dtype}")
    if bad >= 0:
        raise IndexError(f"index {bad} is out of bounds for axis 0 with size {d}")
    return out


cdef uint64_t* subset_bitmap(uint64_t s, Py_ssize_t d, Py_ssize_t k, uint64_t* words) except NULL:
    """The bitmap of Rand-k's subset for seed s (``randk_bitmap``): in ``words`` (64 of them, on the
    caller's stack) up to d = 4096, else allocated (the caller frees it when it is not ``words``)."""
    cdef uint64_t *bm = words
    if d > 64 * 64:
        bm = <uint64_t *>calloc((d + 63) // 64, sizeof(uint64_t))
        if bm == NULL:
            raise MemoryError()
    else:
        memset(words, 0, ((d + 63) // 64) * sizeof(uint64_t))
    randk_bitmap(s, d, k, bm)
    return bm


def randk_encode(x, seed, Py_ssize_t k, out):
    """Rand-k's payload of x (float32 or float64, contiguous) into ``out``: the uint64 seed
    (8 bytes, little endian), then x at ``randk_indices(seed, d, k)`` in index order.
    Returns (largest, smallest) kept value (NaN for both when one is NaN, as NumPy's max
    and min), for the range check."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(x, &d, False)
    cdef uint8_t *o = byte_data(out, &n, True)
    cdef Py_ssize_t width = 4 if kind == cnp.NPY_FLOAT else 8
    cdef uint64_t s
    cdef double top = 0, bottom = 0
    cdef uint64_t words[64]  # the subset's bitmap, on the stack up to d = 4096
    cdef uint64_t *bm = words
    if kind < 0 or o == NULL or not 1 <= k <= d or n != 8 + k * width:
        return _randk_encode_buffers(x, seed, k, out)  # the general path: its checks and errors
    s = <uint64_t>(int(seed) & 0xFFFFFFFFFFFFFFFF)
    bm = subset_bitmap(s, d, k, words)
    if kind == cnp.NPY_FLOAT:
        randk_gather(<const float*>vector_data(x), d, k, s, bm, o, &top, &bottom)
    else:
        randk_gather(<const double*>vector_data(x), d, k, s, bm, o, &top, &bottom)
    if bm != words:
        free(bm)
    return top, bottom


def _randk_encode_buffers(x, seed, Py_ssize_t k, uint8_t[::1] out):
    """``randk_encode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = x.shape[0], width = x.itemsize
    if not 1 <= k <= d:
        raise ValueError(f"k must satisfy 1 <= k <= d = {d}, got k={k}")
    if out.shape[0] != 8 + k * width:
        raise ValueError(f"out has {out.shape[0]} bytes, a Rand-k payload needs {8 + k * width}")
    cdef uint64_t s = <uint64_t>(int(seed) & 0xFFFFFFFFFFFFFFFF)
    cdef double top = 0, bottom = 0
    cdef const float[::1] x32
    cdef const double[::1] x64
    if x.dtype == np.float32:
        x32 = x
    elif x.dtype == np.float64:
        x64 = x
    else:
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    cdef uint64_t *bm = <uint64_t *>calloc((d + 63) // 64, sizeof(uint64_t))
    if bm == NULL:
        raise MemoryError()
    with nogil:
        randk_bitmap(s, d, k, bm)
        if width == 4:
            randk_gather(&x32[0], d, k, s, bm, &out[0], &top, &bottom)
        else:
            randk_gather(&x64[0], d, k, s, bm, &out[0], &top, &bottom)
        free(bm)
    return top, bottom


def randk_decode(payload, Py_ssize_t k, double scale, out):
    """out (float32 or float64, contiguous, size d) = the vector a Rand-k payload holds: zeros,
    and value_j * scale (rounded in the dtype; ``scale`` must be a number of the dtype) at
    the j-th index of the subset of [0, d) that the payload's seed draws. Returns out."""
    cdef Py_ssize_t d = 0, n = 0
    cdef int kind = vector_type(out, &d, True)
    cdef const uint8_t *p = byte_data(payload, &n, False)
    cdef Py_ssize_t width = 4 if kind == cnp.NPY_FLOAT else 8
    cdef uint64_t s
    cdef uint64_t words[64]  # the subset's bitmap, on the stack up to d = 4096
    cdef uint64_t *bm = words
    if kind < 0 or p == NULL or not 1 <= k <= d or n != 8 + k * width:
        return _randk_decode_buffers(payload, k, scale, out)  # the general path: its checks and errors
    memcpy(&s, p, 8)
    bm = subset_bitmap(s, d, k, words)
    if kind == cnp.NPY_FLOAT:
        randk_scatter(p, k, scale, bm, <float*>vector_data(out), d)
    else:
        randk_scatter(p, k, scale, bm, <double*>vector_data(out), d)
    if bm != words:
        free(bm)
    return out


def _randk_decode_buffers(const uint8_t[::1] payload, Py_ssize_t k, double scale, out):
    """``randk_decode`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t d = out.shape[0], width = out.itemsize
    if not 1 <= k <= d:
        raise ValueError(f"k must satisfy 1 <= k <= d = {d}, got k={k}")
    if payload.shape[0] != 8 + k * width:
        raise ValueError(f"payload has {payload.shape[0]} bytes, a Rand-k payload needs {8 + k * width}")
    cdef float[::1] o32
    cdef double[::1] o64
    if out.dtype == np.float32:
        o32 = out
    elif out.dtype == np.float64:
        o64 = out
    else:
        raise TypeError(f"out must be float32 or float64, got {out.dtype}")
    cdef uint64_t s
    cdef uint64_t *bm = <uint64_t *>calloc((d + 63) // 64, sizeof(uint64_t))
    if bm == NULL:
        raise MemoryError()
    with nogil:
        memcpy(&s, &payload[0], 8)
        randk_bitmap(s, d, k, bm)
        if width == 4:
            randk_scatter(&payload[0], k, scale, bm, &o32[0], d)
        else:
            randk_scatter(&payload[0], k, scale, bm, &o64[0], d)
        free(bm)
    return out
