"""Ternary quantisation (TernGrad, Wen et al. 2017): unbiased; PAPERS.md s.2."""
import math

import numpy as np

from mpitrain._native import compress_pack
from mpitrain.compress.base import Compressor


class Ternary(Compressor):
    """C(x)_i = ||x||_inf sign(x_i) b_i, b_i ~ Bernoulli(|x_i| / ||x||_inf) (the ratio is
    computed as |x_i| * (1 / ||x||_inf) in the dtype).

    Unbiased. omega = sqrt(d) - 1 (derived here, PAPERS.md gives no constant):
    E||C(x) - x||^2 = ||x||_1 ||x||_inf - ||x||^2 <= (sqrt(d) - 1) ||x||^2.
    Payload: ||x||_inf (dtype) then 2 bits per entry: 32 + 2 d bits (float32).
    """

    unbiased = True
    random = True

    @property
    def omega(self):
        return math.sqrt(self.d) - 1.0

    def payload_bits(self):
        return self.width + 2 * self.d

    def payload_nbytes(self):
        return self.dtype.itemsize + compress_pack.packed_nbytes(self.d, 2)

    def encode(self, x, seed=None):
        x = self._input(x)
        seed = self._seed(seed)
        payload = self._xp(x).empty(self.payload_nbytes(), dtype=np.uint8)
        cut = self.dtype.itemsize
        self._header(payload, 1)[0] = self._kernels(x, "compress_round").ternary_encode(x, seed, payload[cut:])
        return payload

    def decode(self, payload):
        payload = self._payload(payload)
        out = self._xp(payload).empty(self.d, dtype=self.dtype)
        self._kernels(payload, "compress_round").ternary_decode(payload[self.dtype.itemsize:],
                                      self._header(payload, 1)[0], out)
        return out
