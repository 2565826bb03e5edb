"""An unbiased compressor scaled into a contractive one: C / (1 + omega) in B3(1 + omega).

Beznosikov et al. 2020 (docs/papers.md s.2): for C in U(omega), C / (1 + omega) satisfies
E||C(x)/(1+omega) - x||^2 <= (1 - 1/(1 + omega)) ||x||^2. Error feedback (EF, EF21) needs a
contractive compressor: with an unbiased C of omega >= 1 the error memory grows without
bound, so the compressed algorithms wrap such a C in :class:`ContractiveScaling` when they
run with error feedback (``scale_unbiased = true``, the default). The payload is C's own
(the scale is applied after decoding), so summable payloads stay summable.
"""
from __future__ import annotations


class ContractiveScaling:
    """C / (1 + omega) around an unbiased compressor C; every other attribute is C's."""

    unbiased = False

    def __init__(self, compressor):
        if not compressor.unbiased:
            raise ValueError(f"expected an unbiased compressor, got {compressor!r}")
        self.inner = compressor
        self.scale = compressor.dtype.type(1.0 / (1.0 + compressor.omega))

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __repr__(self):
        return f"ContractiveScaling({self.inner!r})"

    @property
    def omega(self):
        return None

    @property
    def delta(self):
        return 1.0 + self.inner.omega

    def encode(self, x, seed=None):
        return self.inner.encode(x, seed)

    def decode(self, payload):
        out = self.inner.decode(payload)
        out *= self.scale
        return out

    def __call__(self, x, seed=None):
        return self.decode(self.encode(x, seed))
