"""Scaled sign: (||x||_1 / d) sign(x), B3(d); docs/papers.md s.2."""
import numpy as np

from mpitrain._native import compress_pack
from mpitrain.compress.base import Compressor


class ScaledSign(Compressor):
    """C(x) = (||x||_1 / d) sign(x), with sign(0) = +1 (one bit per entry; -0.0 is -1).
    Biased, delta = d: ||C(x) - x||^2 = ||x||^2 - ||x||_1^2 / d <= (1 - 1/d) ||x||^2.
    Payload: the scale (dtype) then d sign bits (1 = negative): 32 + d bits (float32).
    The scale is the mean of |x_i| accumulated in double, with the entries scaled by 2^-64
    when that sum overflows (float64 near its maximum; compress_round.pyx), so it is finite
    for every finite x (Beznosikov et al., "On biased compression for distributed
    learning": the contraction needs the exact scale ||x||_1 / d, not inf).
    """

    @property
    def delta(self):
        return float(self.d)

    def payload_bits(self):
        return self.width + self.d

    def payload_nbytes(self):
        return self.dtype.itemsize + compress_pack.packed_nbytes(self.d, 1)

    def encode(self, x, seed=None):
        x = self._input(x)
        payload = self._xp(x).empty(self.payload_nbytes(), dtype=np.uint8)
        cut = self.dtype.itemsize
        self._header(payload, 1)[0] = self._kernels(x, "compress_round").sign_encode(x, payload[cut:])
        return payload

    def decode(self, payload):
        payload = self._payload(payload)
        out = self._xp(payload).empty(self.d, dtype=self.dtype)
        self._kernels(payload, "compress_round").sign_decode(payload[self.dtype.itemsize:],
                                   self._header(payload, 1)[0], out)
        return out
