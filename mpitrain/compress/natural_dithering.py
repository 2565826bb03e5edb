"""Natural dithering (Horvath et al. 2019): levels {0, 2^(1-s), ..., 1/2, 1} on |x_i|/||x||_p."""

import numpy as np

from mpitrain.compress.dithering import Dithering


class NaturalDithering(Dithering):
    """Like QSGD but |x_i| / ||x||_p is rounded without bias to the levels
    {0, 2^(1-s), ..., 1/2, 1}, per bucket of B entries (B = d without buckets).
    Unbiased, omega = 1/8 + B^(1/r) 2^(1-s) min(1, B^(1/r) 2^(1-s)), r = min(p, 2)
    (docs/papers.md s.2). Payload bits: 32 + d (1 + ceil(log2(s + 1))) without buckets
    (<= the paper's 32 + d (2 + log2 s)). s <= 126 keeps every level a float32 normal.
    """

    natural = True
    max_levels = 126

    def __init__(self, d, levels, p=2.0, bucket_size=None, dtype=np.float32):
        p = float(p)
        if not p >= 1.0:
            raise ValueError(f"p (the norm) must be >= 1 or inf, got {p!r}")
        self.p = p
        super().__init__(d, levels, bucket_size, dtype)

    @property
    def omega(self):
        r = min(self.p, 2.0)
        t = self.bucket_size ** (1.0 / r) * 2.0 ** (1 - self.levels)
        return 1.0 / 8.0 + t * min(1.0, t)
