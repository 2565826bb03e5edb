"""Sub-Weibull gradient noise for experiments (Erickson and Johansson 2026, docs/papers.md s.3).

A noise vector with tail parameter theta has P(||xi|| >= t) <= 2 exp(-(t / sigma)^(1 / theta)):
theta = 1/2 is sub-Gaussian, theta = 1 sub-exponential, theta > 1 heavier tails. It is
sampled as docs/papers.md says: direction u uniform on the unit sphere of R^d, length
sigma * E^theta with E ~ Exp(1), so P(||xi|| >= t) = exp(-(t / sigma)^(1 / theta)) exactly.
"""
from __future__ import annotations

import numpy as np


class SubWeibullNoise:
    """Adds xi = sigma * E^theta * u to a gradient in place; seeded from (seed, rank).

    sigma: scale (>= 0; 0 adds nothing); theta: tail parameter (> 0).
    """

    def __init__(self, sigma: float, theta: float, seed: int, rank: int):
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma!r}")
        if not theta > 0:
            raise ValueError(f"theta must be > 0, got {theta!r}")
        self.sigma = float(sigma)
        self.theta = float(theta)
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, rank, 0x6E6F])))

    def draw(self, d: int) -> np.ndarray:
        """One noise vector, shape (d,), float64."""
        u = self.rng.standard_normal(d)
        u /= np.linalg.norm(u)
        return self.sigma * self.rng.exponential() ** self.theta * u

    def perturb(self, g: np.ndarray) -> np.ndarray:
        """g += xi (in place, g's dtype); returns g. A no-op when sigma = 0."""
        if self.sigma > 0:
            g += self.draw(g.shape[0]).astype(g.dtype, copy=False)
        return g
