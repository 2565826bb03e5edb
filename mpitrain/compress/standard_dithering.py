"""Standard dithering / QSGD (Alistarh et al. 2017), U(min(B/s^2, sqrt(B)/s))."""
import math

import numpy as np

from mpitrain.compress.dithering import Dithering


class StandardDithering(Dithering):
    """||x||_2 sign(x_i) xi_i, xi_i the unbiased rounding of |x_i| / ||x||_2 to
    {0, 1/s, ..., 1}, per bucket of B entries (B = d without buckets). Unbiased,
    omega = min(B / s^2, sqrt(B) / s) (docs/papers.md s.2; buckets are independent, so the
    bucket dimension B replaces d). s <= 255.
    """

    p = 2.0
    max_levels = 255  # codes of at most 9 bits

    def __init__(self, d, levels, bucket_size=None, dtype=np.float32):
        super().__init__(d, levels, bucket_size, dtype)

    @property
    def omega(self):
        b, s = self.bucket_size, self.levels
        return min(b / s**2, math.sqrt(b) / s)
