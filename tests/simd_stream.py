"""The float32 random stream of the compression kernels, restated in NumPy for the SIMD tests."""
import numpy as np


def stream32(seed, d):
    """r_i of the float32 stream (compress_common.pxi): halves of splitmix64(seed, i // 2)."""
    with np.errstate(over="ignore"):
        j = np.arange((d + 1) // 2, dtype=np.uint64)
        z = np.uint64(seed) + (j + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z.view(np.uint32)[:d]  # little-endian: low half first
