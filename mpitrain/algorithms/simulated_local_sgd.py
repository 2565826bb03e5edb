"""Local SGD with K workers simulated in one process (for experiments on machines with few cores).

A faithful single-process copy of :class:`mpitrain.algorithms.local_sgd.LocalSGD` run on K
MPI ranks: the same shards (``mpitrain.data.shard(full, k, K, ...)``), the same per-rank
sampling streams (``BatchSampler(n_k, b, seed, k)``), the same Objective kernels
(``batch_gradient``), the same local step (``g *= eta_t; x -= g``) and the same average
(each model pre-scaled by w_k = n_k / N in its dtype, then summed). Only the summation order
of the average may differ from MPI's (for K = 2 it cannot: a + b == b + a), so iterates agree
with a real run to float rounding. Models are stored as rows of one (K, d) array.
"""
from __future__ import annotations

import numpy as np

from ..sampling import BatchSampler
from .iterate_average import WeightedIterateAverage


class SimulatedLocalSGD:
    """K Local SGD workers; ``run(steps)`` advances all of them, ``average()`` is sum_k w_k x^k."""

    def __init__(self, objectives, weights, batch_size: int, seed: int, step_size, period, x0, weight_shift=None):
        self.objectives = list(objectives)  # one Objective per simulated rank (its shard)
        self.K = len(self.objectives)
        self.dtype = np.dtype(x0.dtype)
        self.weights = [self.dtype.type(w) for w in weights]  # n_k / N
        self.samplers = [BatchSampler(obj.n_samples, batch_size, seed, k) for k, obj in enumerate(self.objectives)]
        self.step_size = step_size  # eta_t
        self.period = period  # an object of mpitrain.algorithms.periods
        self.X = np.tile(x0, (self.K, 1))  # (K, d): row k is x^k
        self.G = np.empty_like(self.X)
        self.t = 0  # steps taken by every worker
        self.syncs = 0
        self.output = None if weight_shift is None else [WeightedIterateAverage(x0.size, weight_shift)
                                                         for _ in range(self.K)]

    def step(self) -> None:
        t, eta = self.t, self.dtype.type(self.step_size(self.t))
        for k, (obj, sampler) in enumerate(zip(self.objectives, self.samplers)):
            x, g = self.X[k], self.G[k]
            if self.output is not None:
                self.output[k].add(t, x)
            obj.batch_gradient(x, sampler.draw(), g)
            g *= eta
            x -= g
        if self.period.syncs_after(t):
            self.synchronise()
        self.t += 1

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    def _weighted_sum(self, rows: np.ndarray) -> np.ndarray:
        """sum_k w_k rows[k], pre-scaling each row as the Averager does."""
        if self.K == 1:
            return rows[0].copy()
        total = rows[0] * self.weights[0] if self.weights[0] != 1 else rows[0].copy()
        for k in range(1, self.K):
            total += rows[k] * self.weights[k]
        return total

    def synchronise(self) -> None:
        self.X[:] = self._weighted_sum(self.X)
        self.syncs += 1

    def average(self) -> np.ndarray:
        """The evaluation point: sum_k w_k x^k, or Stich's x_hat when ``weight_shift`` was given."""
        if self.output is not None and self.output[0].weight_sum > 0:
            rows = np.stack([o.value() for o in self.output])
            return self._weighted_sum(rows).astype(self.dtype, copy=False)
        return self._weighted_sum(self.X)
