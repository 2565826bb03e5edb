"""Shared part of standard and natural dithering: buckets, norms header, packed codes."""
import numpy as np

from mpitrain._native import compress_pack
from mpitrain.compress.base import Compressor, check_levels, check_positive_int


class Dithering(Compressor):
    """Random dithering of x bucket by bucket (PAPERS.md s.2).

    Payload: one norm per bucket (dtype; 32 bits for float32) then one code per entry of
    1 + ceil(log2(s + 1)) bits (sign and level in 0..s), packed LSB first:
    32 ceil(d / B) + d (1 + ceil(log2(s + 1))) bits. Subclasses set ``natural`` and ``p``.
    """

    unbiased = True
    random = True
    natural = False
    max_levels = None

    def __init__(self, d, levels, bucket_size=None, dtype=np.float32):
        super().__init__(d, dtype)
        self.levels = check_levels(levels, self.max_levels)
        bucket = self.d if bucket_size is None else check_positive_int("bucket_size", bucket_size)
        self.bucket_size = min(bucket, self.d)
        self.buckets = -(-self.d // self.bucket_size)
        self.code_bits = 1 + self.levels.bit_length()

    def __repr__(self):
        return (f"{type(self).__name__}(d={self.d}, levels={self.levels}, "
                f"bucket_size={self.bucket_size}, p={self.p}, dtype={self.dtype.name})")

    def payload_bits(self):
        return self.buckets * self.width + self.d * self.code_bits

    def payload_nbytes(self):
        return (self.buckets * self.dtype.itemsize
                + compress_pack.packed_nbytes(self.d, self.code_bits))

    def encode(self, x, seed=None):
        x = self._input(x)
        seed = self._seed(seed)
        payload = self._xp(x).empty(self.payload_nbytes(), dtype=np.uint8)
        cut = self.buckets * self.dtype.itemsize
        self._kernels(x, "compress_round").dither_encode(x, seed, self.levels, self.bucket_size, self.natural,
                                     float(self.p), payload[:cut].view(self.dtype),
                                     payload[cut:])
        return payload

    def decode(self, payload):
        payload = self._payload(payload)
        cut = self.buckets * self.dtype.itemsize
        out = self._xp(payload).empty(self.d, dtype=self.dtype)
        self._kernels(payload, "compress_round").dither_decode(payload[cut:], self.levels, self.bucket_size,
                                     self.natural, payload[:cut].view(self.dtype), out)
        return out
