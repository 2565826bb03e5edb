"""Sub-Weibull gradient noise for experiments (Erickson and Johansson 2026, docs/papers.md s.3).

The paper's noise model: a zero-mean xi is sub-Weibull with tail parameter theta and scale
sigma when P(||xi|| >= t) <= 2 exp(-(t / sigma)^(1 / theta)) for all t >= 0; theta = 1/2 is
sub-Gaussian, theta = 1 sub-exponential, theta > 1 heavier tails. It is sampled as
docs/papers.md says: direction u uniform on the unit sphere of R^d (a standard normal vector
over its norm), length R = sigma * E^theta with E ~ Exp(1), so that

    P(||xi|| >= t) = P(E >= (t / sigma)^(1 / theta)) = exp(-(t / sigma)^(1 / theta))

exactly (||xi|| is Weibull with shape 1 / theta and scale sigma): the bound holds with
constant 1 in place of 2. By symmetry of u, E xi = 0. Each stochastic gradient gets its own
xi; it is added before clipping, as a noisy oracle would return it.
"""
from __future__ import annotations

import numpy as np


class SubWeibullNoise:
    """Adds xi = sigma * E^theta * u to a gradient in place; seeded from (seed, rank).

    sigma: scale (>= 0; 0 adds nothing); theta: tail parameter (> 0). The stream is
    ``Generator(PCG64(SeedSequence([seed, rank, 0x6E6F])))``: d standard normals, then one
    exponential, per draw.
    """

    def __init__(self, sigma: float, theta: float, seed: int, rank: int):
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma!r}")
        if not theta > 0:
            raise ValueError(f"theta must be > 0, got {theta!r}")
        self.sigma = float(sigma)
        self.theta = float(theta)
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, rank, 0x6E6F])))
        self._buffer = np.empty(0)  # float64 work vector of perturb, reused while d stays the same

    def draw(self, d: int, out: np.ndarray | None = None) -> np.ndarray:
        """One noise vector, shape (d,), float64 (into ``out``, a float64 vector of length d, if given)."""
        u = self.rng.standard_normal(d) if out is None else self.rng.standard_normal(out=out)
        u /= np.linalg.norm(u)
        u *= self.sigma * self.rng.exponential() ** self.theta
        return u

    def perturb(self, g: np.ndarray) -> np.ndarray:
        """g += xi (in place, g's dtype); returns g. A no-op when sigma = 0. Allocates nothing
        after the first call for a float64 g of a given length."""
        if self.sigma > 0:
            if self._buffer.shape != (g.shape[0],):
                self._buffer = np.empty(g.shape[0])
            xi = self.draw(g.shape[0], out=self._buffer)
            g += xi if g.dtype == xi.dtype else xi.astype(g.dtype)
        return g

    def state(self) -> dict:
        """The stream's state, for a checkpoint."""
        return self.rng.bit_generator.state

    def load(self, state: dict) -> None:
        self.rng.bit_generator.state = state
