"""The float32 random stream of the compression kernels, restated in NumPy for the SIMD tests."""
import numpy as np


def splitmix64(seed, j):
    """splitmix64(seed, j) for a uint64 index array j (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (j + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def stream32(seed, d):
    """r_i of the float32 stream (compress_common.pxi): h_i 2^16 + l_i, the 16-bit pieces
    i % 4 of splitmix64(seed, i // 4) and of splitmix64(seed, 2^62 + i // 4)."""
    j = np.arange((d + 3) // 4, dtype=np.uint64)
    with np.errstate(over="ignore"):
        lead = splitmix64(seed, j).view(np.uint16)[:d]  # little-endian: piece 0 first
        tail = splitmix64(seed, j + np.uint64(1 << 62)).view(np.uint16)[:d]
    return (lead.astype(np.uint32) << np.uint32(16)) | tail
