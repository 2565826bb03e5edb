"""The compressors ``bench compress`` times and the NumPy formulations of their rules they are
timed against: one list, shared by the CPU bench (mpitrain.bench.compress) and the GPU one
(mpitrain.bench.compress_gpu)."""
import numpy as np

from mpitrain.compress import make_compressor


def np_top_k(x, k):
    def encode():
        idx = np.argpartition(np.abs(x), -k)[-k:]
        return idx, x[idx]

    def decode(p):
        out = np.zeros_like(x)
        out[p[0]] = p[1]
        return out
    return encode, decode


def np_rand_k(x, k, seed):
    def encode():
        idx = np.random.default_rng(seed).choice(x.size, k, replace=False)
        return idx, x[idx]

    def decode(p):
        idx = np.random.default_rng(seed).choice(x.size, k, replace=False)
        out = np.zeros_like(x)
        out[idx] = p[1] * np.float32(x.size / k)
        return out
    return encode, decode


def np_natural(x, seed, deterministic=False):
    def encode():
        m, e = np.frexp(np.abs(x))  # |x| = m 2^e, m in [0.5, 1)
        p = 2 * m - 1
        if deterministic:
            up = p >= 0.5
        else:
            up = np.random.default_rng(seed).random(x.size, dtype=np.float32) < p
        e = np.where(m == 0, 0, e + up + 126)
        return (np.signbit(x).astype(np.uint16) << 8) | e.astype(np.uint16)

    def decode(codes):
        e = (codes & 0xFF).astype(np.int32)
        v = np.where(e == 0, np.float32(0), np.ldexp(np.float32(1), e - 127))
        return np.where(codes >> 8, -v, v).astype(np.float32)
    return encode, decode


def np_dithering(x, seed, s, natural):
    def encode():
        norm = np.float32(np.linalg.norm(x))
        r = np.abs(x) / norm
        u = np.random.default_rng(seed).random(x.size, dtype=np.float32)
        if natural:
            m, e = np.frexp(r)
            big = np.minimum(e - 1 + s + (u < 2 * m - 1), s)
            small = (u < r * np.float32(2.0 ** (s - 1))).astype(np.int64)
            level = np.where(r >= np.float32(2.0 ** (1 - s)), big, small)
        else:
            t = r * np.float32(s)
            level = np.floor(t)
            level = np.minimum(level + (u < t - level), s)
        codes = (level.astype(np.uint8) << 1) | (np.signbit(x) & (level > 0))
        return norm, codes

    def decode(p):
        norm, codes = p
        level = (codes >> 1).astype(np.float32)
        if natural:
            v = np.where(level == 0, np.float32(0), norm * np.exp2(level - s, dtype=np.float32))
        else:
            v = norm * level / np.float32(s)
        return np.where(codes & 1, -v, v)
    return encode, decode


def np_scaled_sign(x):
    def encode():
        return np.float32(np.abs(x).mean()), np.packbits(np.signbit(x), bitorder="little")

    def decode(p):
        bits = np.unpackbits(p[1], count=x.size, bitorder="little")
        return np.where(bits, -p[0], p[0])
    return encode, decode


def np_ternary(x, seed):
    def encode():
        a = np.abs(x)
        m = a.max()
        nz = np.random.default_rng(seed).random(x.size, dtype=np.float32) < a / m
        return m, nz.astype(np.uint8) | ((np.signbit(x) & nz).astype(np.uint8) << 1)

    def decode(p):
        m, codes = p
        return np.where(codes & 1, np.where(codes & 2, -m, m), np.float32(0))
    return encode, decode


def np_top_k_then(x, k, inner):
    """Top-k then a NumPy formulation ``inner(values)`` of the unbiased part."""
    def encode():
        idx = np.argpartition(np.abs(x), -k)[-k:]
        enc, _ = inner(x[idx])
        return idx, enc()

    def decode(p):
        idx, q = p
        _, dec = inner(np.empty(k, np.float32))
        out = np.zeros_like(x)
        out[idx] = dec(q)
        return out
    return encode, decode


def cases(d, ratio, levels, seed):
    """(name, compressor, numpy formulation factory) for the benchmark."""
    k = max(1, int(round(ratio * d)))
    return [
        ("top_k", make_compressor("top_k", d, k=k), lambda x: np_top_k(x, k)),
        ("rand_k", make_compressor("rand_k", d, k=k), lambda x: np_rand_k(x, k, seed)),
        ("natural_compression", make_compressor("natural_compression", d),
         lambda x: np_natural(x, seed)),
        ("biased_rounding", make_compressor("biased_rounding", d),
         lambda x: np_natural(x, seed, deterministic=True)),
        ("standard_dithering", make_compressor("standard_dithering", d, levels=levels),
         lambda x: np_dithering(x, seed, levels, False)),
        ("natural_dithering", make_compressor("natural_dithering", d, levels=levels),
         lambda x: np_dithering(x, seed, levels, True)),
        ("scaled_sign", make_compressor("scaled_sign", d), np_scaled_sign),
        ("ternary", make_compressor("ternary", d), lambda x: np_ternary(x, seed)),
        ("top_k_natural_dithering",
         make_compressor("top_k_natural_dithering", d, k=k, levels=levels),
         lambda x: np_top_k_then(x, k, lambda v: np_dithering(v, seed, levels, True))),
    ]
