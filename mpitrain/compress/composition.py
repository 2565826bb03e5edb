"""A biased compressor followed by an unbiased one, scaled by 1/(1 + omega).

Beznosikov et al. 2020 (docs/papers.md s.2): for C1 in B3(delta) and C2 in U(omega),
C2(C1(x)) / (1 + omega) is in B3((1 + omega) delta). Top-k then natural dithering is the
paper's new compressor.
"""
import numpy as np

from mpitrain._native.compress_random import derive_seed
from mpitrain.compress.base import Compressor


class Composition(Compressor):
    """C(x) = U(B(x)) / (1 + omega_U), biased with delta = (1 + omega_U) delta_B.

    ``biased``: a B3 compressor of dimension d. ``make_unbiased(n)``: builds the U
    compressor for dimension n. When ``biased`` selects a support (Top-k, unscaled
    Rand-k: it has ``select``), U runs on the k kept values only (n = k) and the
    payload is U's payload then the support (packed indices, or the Rand-k seed);
    otherwise U runs on the decoded B(x) (n = d) and the payload is U's payload.
    U draws its randomness from derive_seed(seed, 1).
    """

    random = True

    def __init__(self, biased, make_unbiased):
        if biased.unbiased:
            raise ValueError(f"biased must be a B3 compressor, got {biased!r}")
        super().__init__(biased.d, biased.dtype)
        self.biased = biased
        self.sparse = hasattr(biased, "select")
        self.unbiased_part = make_unbiased(biased.k if self.sparse else biased.d)
        if not self.unbiased_part.unbiased:
            raise ValueError(f"make_unbiased must build a U compressor, got {self.unbiased_part!r}")
        if self.unbiased_part.dtype != self.dtype:
            raise ValueError("biased and unbiased compressors must share a dtype")
        self.scale = self.dtype.type(1.0 / (1.0 + self.unbiased_part.omega))
        self._cut = self.unbiased_part.payload_nbytes()  # payload bytes of U's part
        self._nbytes = self._cut + (self.biased.support_nbytes() if self.sparse else 0)  # payload_nbytes()

    def __repr__(self):
        return f"Composition({self.biased!r}, {self.unbiased_part!r})"

    @property
    def delta(self):
        return (1.0 + self.unbiased_part.omega) * self.biased.delta

    def payload_bits(self):
        support = self.biased.support_bits() if self.sparse else 0
        return self.unbiased_part.payload_bits() + support

    def payload_nbytes(self):
        return self._nbytes

    def encode(self, x, seed=None):
        x = self._input(x)
        seed = self._seed(seed)
        sub = derive_seed(seed, 1)
        if not self.sparse:
            return self.unbiased_part.encode(self.biased(x, seed), sub)
        indices = self.biased.select(x, seed)
        head = self.unbiased_part.encode(x[indices], sub)
        payload = self._xp(x).empty(self._nbytes, dtype=np.uint8)
        cut = self._cut  # == head.shape[0]
        payload[:cut] = head
        self.biased.write_support(indices, seed, payload[cut:])
        return payload

    def decode(self, payload):
        payload = self._payload(payload)
        if not self.sparse:
            return self.unbiased_part.decode(payload) * self.scale
        cut = self._cut
        out = self._xp(payload).zeros(self.d, dtype=self.dtype)
        out[self.biased.read_support(payload[cut:])] = (
            self.unbiased_part.decode(payload[:cut]) * self.scale)
        return out
