"""Ternary quantisation (TernGrad, Wen et al. 2017): unbiased; docs/papers.md s.2."""
import math

import numpy as np

from mpitrain._native import compress_pack
from mpitrain.compress.base import Compressor


class Ternary(Compressor):
    """C(x)_i = ||x||_inf sign(x_i) b_i, b_i ~ Bernoulli(|x_i| / ||x||_inf) (the ratio is
    computed as |x_i| * (1 / ||x||_inf) in the dtype, or as |x_i| / ||x||_inf when
    1 / ||x||_inf is not a normal number: subnormal or huge ||x||_inf, compress_round.pyx).

    Unbiased, omega = (sqrt(d) - 1) / 2, the exact worst case (derived here; docs/papers.md,
    Beznosikov et al., "On biased compression for distributed learning", gives no
    constant for ternary quantisation). With m = ||x||_inf, E C(x)_i^2 = m |x_i|, so
    E||C(x) - x||^2 = ||x||_1 ||x||_inf - ||x||^2. The ratio to ||x||^2 is invariant under
    scaling and sign flips; with x = (1, y), y in [0, 1]^(d-1), it is
    (1 + S) / (1 + ||y||^2) - 1 with S = sum y, and ||y||^2 >= S^2 / (d - 1) (equality for
    equal entries), so the maximum is over y = (t, ..., t):
    (1 + n t) / (1 + n t^2) - 1, n = d - 1, maximised where n t^2 + 2 t - 1 = 0, i.e.
    t = 1 / (sqrt(d) + 1): n t = sqrt(d) - 1, n t^2 = (sqrt(d) - 1) / (sqrt(d) + 1), and the
    ratio is (sqrt(d) + 1) / 2 - 1 = (sqrt(d) - 1) / 2. (The earlier constant sqrt(d) - 1
    bounded ||x||_1 ||x||_inf by sqrt(d) ||x||^2 and dropped the -||x||^2 coupling: twice
    the worst case.) omega enters error feedback as C / (1 + omega)
    (mpitrain/algorithms/contractive_scaling.py) and compositions (composition.py).
    Payload: ||x||_inf (dtype) then 2 bits per entry: 32 + 2 d bits (float32).
    """

    unbiased = True
    random = True

    @property
    def omega(self):
        return (math.sqrt(self.d) - 1.0) / 2.0

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
