"""Per-rank mini-batch sampling, seeded from (seed, rank).

Each step draws ``batch_size`` local row indices uniformly with replacement (the sampling
the convergence theorems assume). The stream of rank r is ``numpy.random.Generator(PCG64)``
seeded with ``SeedSequence([seed, r])``: independent across ranks, reproducible, and
restorable from a checkpoint (``state`` / ``load``).

A draw is ``Generator.integers(0, n_rows, size=batch_size)``, taken by the C function that
reproduces it (``mpitrain._native.objectives.bounded_integers``: the same numbers, the same
generator state after it); kernels that take many steps in one call (``Objective.sgd_steps``)
draw from ``bit_generator`` the same way, so both continue one stream.
"""
from __future__ import annotations

import numpy as np

from ._native.objectives import bounded_integers


class BatchSampler:
    def __init__(self, n_rows: int, batch_size: int, seed: int, rank: int):
        if n_rows < 1:
            raise ValueError(f"rank {rank} holds no samples: use fewer ranks or another sharding")
        self.n_rows = int(n_rows)
        self.batch_size = int(batch_size)
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, rank])))
        self._rows = np.empty(self.batch_size, dtype=np.int64)

    @property
    def bit_generator(self):
        """The numpy BitGenerator every draw comes from (PCG64)."""
        return self.rng.bit_generator

    def draw(self) -> np.ndarray:
        """The next mini-batch of local row indices (int64, a reused buffer)."""
        bounded_integers(self.rng.bit_generator, self.n_rows, self._rows)
        return self._rows

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def load(self, state: dict):
        self.rng.bit_generator.state = state
