"""Scaled sign: (||x||_1 / d) sign(x), B3(d); docs/papers.md s.2."""
import numpy as np

from mpitrain._native import compress_pack
from mpitrain._native.compress_round import sign_decode_payload, sign_encode_payload
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

    def __init__(self, d, dtype=np.float32):
        super().__init__(d, dtype)
        self._nbytes = self.dtype.itemsize + compress_pack.packed_nbytes(self.d, 1)

    @property
    def delta(self):
        return float(self.d)

    def payload_bits(self):
        return self.width + self.d

    def payload_nbytes(self):
        return self._nbytes

    def encode(self, x, seed=None):
        x = self._input(x)
        if type(x) is np.ndarray:  # host: the header and the bits in one call, the same bytes
            return sign_encode_payload(x, np.empty(self._nbytes, dtype=np.uint8))
        payload = self._xp(x).empty(self._nbytes, dtype=np.uint8)
        cut = self.dtype.itemsize
        self._header(payload, 1)[0] = self._kernels(x, "compress_round").sign_encode(x, payload[cut:])
        return payload

    def decode(self, payload):
        payload = self._payload(payload)
        if type(payload) is np.ndarray:  # host: one call, the scale read from the header
            return sign_decode_payload(payload, np.empty(self.d, dtype=self.dtype))
        out = self._xp(payload).empty(self.d, dtype=self.dtype)
        self._kernels(payload, "compress_round").sign_decode(payload[self.dtype.itemsize:],
                                   self._header(payload, 1)[0], out)
        return out
