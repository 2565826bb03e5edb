"""Top-k and Rand-k supports written against an array module ``xp`` (NumPy or CuPy).

The same selections as ``pyx/compress_select.pyx``, index for index, built from whole-array
operations (bincount, cumsum, flatnonzero, sort) so that they run on a GPU through CuPy and,
for the tests, on the CPU through NumPy.

Top-k: radix select on 16-bit digits of the key |x_i| (the IEEE bits with the sign cleared),
most significant first: each level histograms the next digit of the keys that share the
prefix found so far (one ``bincount``), and the digit holding the k-th largest key is read off
a cumulative sum. The result is every index whose key prefix is above the final prefix plus
the first (smallest-index) ``need`` indices equal to it, in ascending order: among equal
magnitudes the smaller index wins, as on the CPU.

Rand-k: the first m = min(k, d - k) distinct draws v_j = floor(splitmix64(seed, j) d / 2^64)
(the complement when k > d/2), found from a batch of draws by sorting (value, j) and keeping
each value's first j (keys v batch + j are unique, so any sort will do); the batch doubles until it holds m distinct values.
"""
from __future__ import annotations

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
LOW32 = 0xFFFFFFFF


def splitmix64(xp, seed: int, j):
    """uint64 array: splitmix64(seed, j) for a uint64 index array j (wrapping arithmetic)."""
    u = np.uint64
    z = u(seed) + (j + u(1)) * u(GOLDEN)
    z = (z ^ (z >> u(30))) * u(MIX1)
    z = (z ^ (z >> u(27))) * u(MIX2)
    return z ^ (z >> u(31))


def mulhi64(xp, a, b: int):
    """floor(a b / 2^64) for a uint64 array a and an integer 0 <= b < 2^64 (32-bit limbs)."""
    u = np.uint64
    a_lo, a_hi = a & u(LOW32), a >> u(32)
    b_lo, b_hi = u(b & LOW32), u(b >> 32)
    lo_lo = a_lo * b_lo
    mid1 = a_hi * b_lo + (lo_lo >> u(32))
    mid2 = a_lo * b_hi + (mid1 & u(LOW32))
    return a_hi * b_hi + (mid1 >> u(32)) + (mid2 >> u(32))


def topk_indices(xp, x, k: int):
    """int64[k], ascending: the k entries of largest magnitude (ties: smaller index)."""
    d = x.shape[0]
    if not 1 <= k <= d:
        raise ValueError(f"k must satisfy 1 <= k <= d = {d}, got k={k}")
    if x.dtype == np.float32:
        nbits, ukey = 32, np.uint32
    elif x.dtype == np.float64:
        nbits, ukey = 64, np.uint64
    else:
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    keys = x.view(ukey) & ukey((1 << (nbits - 1)) - 1)
    shift, need, prefix = nbits - 16, k, None  # prefix: the digits found so far (key >> shift)
    candidates = keys
    while True:
        digits = ((candidates >> ukey(shift)) & ukey(0xFFFF)).astype(np.int32)
        hist = xp.bincount(digits, minlength=65536)
        above = xp.cumsum(hist[::-1])  # above[t]: keys with digit >= 65535 - t
        t = int((above < need).sum())  # first t with above[t] >= need (above is nondecreasing)
        digit = 65535 - t
        need -= int(above[t - 1]) if t > 0 else 0
        prefix = digit if prefix is None else (prefix << 16) | digit
        if shift == 0 or int(hist[digit]) == need:
            break
        candidates = candidates[digits == digit]
        shift -= 16
    top = keys >> ukey(shift)
    greater = xp.flatnonzero(top > ukey(prefix))
    equal = xp.flatnonzero(top == ukey(prefix))[:need]
    return xp.sort(xp.concatenate([greater, equal])).astype(np.int64)


def randk_indices(xp, seed: int, d: int, k: int):
    """int64[k], ascending: the Rand-k subset of ``compress_select.randk_indices``."""
    if not 1 <= k <= d:
        raise ValueError(f"k must satisfy 1 <= k <= d = {d}, got k={k}")
    seed = int(seed) & ((1 << 64) - 1)
    complement = 2 * k > d
    m = d - k if complement else k
    chosen = xp.empty(0, dtype=np.int64)
    batch = m + m // 2 + 64
    while m > 0:
        j = xp.arange(batch, dtype=np.uint64)
        v = mulhi64(xp, splitmix64(xp, seed, j), d).astype(np.int64)
        key = xp.sort(v * batch + j.astype(np.int64))  # unique keys: (value, draw) order
        sv, sj = key // batch, key % batch
        fresh = xp.ones(batch, dtype=bool)
        fresh[1:] = sv[1:] != sv[:-1]  # the first draw of each value
        first_j = sj[fresh]
        if first_j.shape[0] >= m:
            cut = xp.sort(first_j)[m - 1]
            chosen = sv[fresh][first_j <= cut]
            break
        batch *= 2
    if complement:
        keep = xp.ones(d, dtype=bool)
        keep[chosen] = False
        return xp.flatnonzero(keep).astype(np.int64)
    return xp.sort(chosen).astype(np.int64)
