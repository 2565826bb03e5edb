"""Shared part of standard and natural dithering: buckets, norms header, packed codes."""
import numpy as np

from mpitrain import backend
from mpitrain._native import compress_pack
from mpitrain.compress.base import Compressor, check_levels, check_positive_int


class Dithering(Compressor):
    """Random dithering of x bucket by bucket (docs/papers.md s.2).

    Payload: one norm per bucket (dtype; 32 bits for float32) then one code per entry of
    1 + ceil(log2(s + 1)) bits (sign and level in 0..s), packed LSB first:
    32 ceil(d / B) + d (1 + ceil(log2(s + 1))) bits. Subclasses set ``natural`` and ``p``.

    Range. Every finite x whose bucket norms are finite in the dtype is encoded without
    bias (Beznosikov et al., "On biased compression for distributed learning": E C(x) = x
    needs the probabilities |x_i| / ||x||_p): the kernels compute norms with scaling when
    the plain sum over- or underflows and divide by the norm when s / norm is not a normal
    number (subnormal inputs, norms near the dtype's maximum), and decode
    norm * (level / s) where (norm * level) / s would overflow (compress_round.pyx). A
    bucket of finite entries whose p-norm exceeds the dtype's maximum (float32: ~3.4e38,
    e.g. ||x||_1 of many entries near 1e37) has no header value, and ``encode`` raises
    ValueError naming it.
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
        self._cut = self.buckets * self.dtype.itemsize  # payload bytes of the norms header
        self._nbytes = self._cut + compress_pack.packed_nbytes(self.d, self.code_bits)  # payload_nbytes()

    def __repr__(self):
        return (f"{type(self).__name__}(d={self.d}, levels={self.levels}, "
                f"bucket_size={self.bucket_size}, p={self.p}, dtype={self.dtype.name})")

    def payload_bits(self):
        return self.buckets * self.width + self.d * self.code_bits

    def payload_nbytes(self):
        return self._nbytes

    def encode(self, x, seed=None):
        x = self._input(x)
        seed = self._seed(seed)
        payload = self._xp(x).empty(self._nbytes, dtype=np.uint8)
        cut = self._cut
        norms = payload[:cut].view(self.dtype)
        self._kernels(x, "compress_round").dither_encode(x, seed, self.levels, self.bucket_size, self.natural,
                                     float(self.p), norms, payload[cut:])
        if type(norms) is np.ndarray and not np.logical_or.reduce(np.isinf(norms)):
            return payload  # the common case of _check_norms, without its call
        self._check_norms(x, norms)
        return payload

    def _check_norms(self, x, norms):
        """ValueError when a bucket of finite entries has an infinite norm (the p-norm
        overflows the dtype); buckets holding inf or NaN keep their inf or NaN header as
        before. One O(buckets) test; the O(B) scan only for an infinite norm."""
        xp = self._xp(x)
        if not bool(xp.isinf(norms).any()):  # one host read on a GPU
            return
        for j in map(int, backend.to_host(xp.flatnonzero(xp.isinf(norms)))):
            bucket = x[j * self.bucket_size:(j + 1) * self.bucket_size]
            if bool(xp.isfinite(bucket).all()):
                big = float(xp.abs(bucket).max())
                raise ValueError(
                    f"{type(self).__name__} ({self.dtype.name}): the {self.p:g}-norm of bucket {j} "
                    f"(max|x_i| = {big:g}) exceeds the largest {self.dtype.name} "
                    f"{float(np.finfo(self.dtype).max):g}, so the header cannot hold it; scale x "
                    "down by a power of two 2^k and the result back up, or use float64")

    def decode(self, payload):
        payload = self._payload(payload)
        cut = self._cut
        out = self._xp(payload).empty(self.d, dtype=self.dtype)
        self._kernels(payload, "compress_round").dither_decode(payload[cut:], self.levels, self.bucket_size,
                                     self.natural, payload[:cut].view(self.dtype), out)
        return out
