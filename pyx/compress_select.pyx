"""Exact top-k selection by magnitude in O(d) and seeded Rand-k supports in O(k + d / 64).

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
from libc.string cimport memset
from libc.math cimport sqrt
include "compress_common.pxi"

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

cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil

cdef enum:
    BLOCK = 4096
    SMALL_K = 64  # k up to which a small x (d <= SORT_MAX_D) takes topk_small, not a sort

ctypedef fused key_t:
    uint32_t
    uint64_t


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
#: up to this d, ``topk_indices`` keeps the best k in a heap (``topk_small``, k <= SMALL_K) or
#: sorts the keys (``_topk_sorted``, larger k): a radix pass zeroes a
#: 65536-bucket histogram (512 KiB), 50-100 us at d = 300; the sort takes a few us there and
#: is slower than the radix select above about d = 2000 (measured 2026-12-01)
SORT_MAX_D = 1024


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


cdef inline bint worse(uint64_t key_a, int64_t index_a, uint64_t key_b, int64_t index_b) noexcept nogil:
    """Whether entry a ranks below entry b: a smaller key, or an equal key at a larger index."""
    return key_a < key_b or (key_a == key_b and index_a > index_b)


cdef void topk_small(const key_t *v, Py_ssize_t d, Py_ssize_t k, uint64_t absmask, int64_t *out,
                     uint64_t *heap) noexcept nogil:
    """out[:k] = the top k of d keys (v_i & absmask), ascending, with ties to the smaller
    index (the selection of ``_topk_sorted``). One pass keeps the best k so far in a heap
    whose root is the worst of them (``heap`` the keys, ``out`` the indices); a later entry
    replaces the root only with a strictly larger key, since on a tie the root's smaller
    index wins. O(d log k), whatever the order of the keys."""
    cdef Py_ssize_t i, j, child
    cdef uint64_t key
    cdef int64_t index
    for i in range(d):
        key = (<uint64_t>v[i]) & absmask
        if i < k:  # sift the new entry up
            j = i
            while j > 0 and worse(key, i, heap[(j - 1) // 2], out[(j - 1) // 2]):
                heap[j] = heap[(j - 1) // 2]
                out[j] = out[(j - 1) // 2]
                j = (j - 1) // 2
        elif key > heap[0]:  # replace the root and sift down
            j = 0
            while True:
                child = 2 * j + 1
                if child >= k:
                    break
                if child + 1 < k and worse(heap[child + 1], out[child + 1], heap[child], out[child]):
                    child += 1
                if not worse(heap[child], out[child], key, i):
                    break
                heap[j] = heap[child]
                out[j] = out[child]
                j = child
        else:
            continue
        heap[j] = key
        out[j] = i
    for i in range(1, k):  # indices ascending (insertion sort: k <= SMALL_K)
        index = out[i]
        j = i
        while j > 0 and out[j - 1] > index:
            out[j] = out[j - 1]
            j -= 1
        out[j] = index


def _topk_small(x, Py_ssize_t k):
    """``_topk_sorted``'s result by :func:`topk_small` (d <= SORT_MAX_D, k <= SMALL_K)."""
    cdef Py_ssize_t d = x.shape[0]
    out = np.empty(k, dtype=np.int64)
    cdef int64_t[::1] o = out
    cdef uint64_t heap[SMALL_K]
    cdef const uint32_t[::1] v32
    cdef const uint64_t[::1] v64
    if x.dtype == np.float32:
        v32 = x.view(np.uint32)
        with nogil:
            topk_small(&v32[0], d, k, 0x7FFFFFFFULL, &o[0], heap)
    else:
        v64 = x.view(np.uint64)
        with nogil:
            topk_small(&v64[0], d, k, 0x7FFFFFFFFFFFFFFFULL, &o[0], heap)
    return out


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


cdef extern from *:
    """
    static inline uint64_t mpt_draw_below(uint64_t h, uint64_t d) {
        return (uint64_t)(((unsigned __int128)h * d) >> 64);
    }
    """
    uint64_t mpt_draw_below(uint64_t h, uint64_t d) nogil


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
    cdef Py_ssize_t m = d - k if complement else k, got = 0, nw = (d + 63) // 64, w, j = 0
    cdef uint64_t v, bit, word
    bitmap = np.zeros(nw, dtype=np.uint64)
    out = np.empty(k, dtype=np.int64)
    cdef uint64_t[::1] bm = bitmap
    cdef int64_t[::1] o = out
    with nogil:
        while got < m:
            v = mpt_draw_below(mpt_splitmix64(s, <uint64_t>j), <uint64_t>d)
            j += 1
            bit = 1ULL << (v & 63)
            got += (bm[v >> 6] & bit) == 0
            bm[v >> 6] |= bit
        j = 0
        for w in range(nw):
            word = ~bm[w] if complement else bm[w]
            if complement and w == nw - 1 and d % 64:
                word &= (1ULL << (d % 64)) - 1ULL
            while word:
                o[j] = 64 * w + __builtin_ctzll(word)
                j += 1
                word &= word - 1
    return out
