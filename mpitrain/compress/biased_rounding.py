"""General biased rounding, base 2, linear midpoint, deterministic: B3(9/8)."""
from mpitrain.compress.natural_compression import NaturalCompression


class BiasedRounding(NaturalCompression):
    """Round |x_i| in [2^a, 2^(a+1)] to the nearer end (to 2^(a+1) from the midpoint
    1.5 * 2^a up); keep the sign (Beznosikov et al. 2020, docs/papers.md s.2). Deterministic,
    biased, delta = 9/8 (the worst case is |x_i| = 1.5 * 2^a: error 1/9 of x_i^2).
    Payload: the natural compression format (9 d bits for float32). Input range: that of
    natural compression, except that only |x_i| >= 1.5 2^emax rounds up to inf and is
    refused (``NaturalCompression.check_range``).
    """

    unbiased = False
    random = False
    deterministic = True

    @property
    def omega(self):
        return None

    @property
    def delta(self):
        return 9.0 / 8.0
