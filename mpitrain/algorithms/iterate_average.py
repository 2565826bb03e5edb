"""Stich's weighted output x_hat_T, kept as a running weighted sum (no stored iterates).

Stich 2019 (arXiv 1805.09767), Theorem 2.2: with w_t = (a + t)^2 and S_T = sum_{t<T} w_t,

    x_hat_T = (1 / (K S_T)) sum_{k=1}^K sum_{t=0}^{T-1} w_t x_t^k.

Each rank keeps s^k = sum_t w_t x_t^k (shape (d,), the parameters' dtype accumulated in
float64, in the parameters' array module: on the device for a GPU run) and S_T; the average over workers is one weighted Allreduce of s^k at evaluation
time (the rank weight n_k / N replaces 1/K; they agree for balanced shards).
"""
from __future__ import annotations

import numpy as np

from .. import backend


class WeightedIterateAverage:
    """Running sum of w_t x_t with w_t = (a + t)^2; ``value()`` is sum w_t x_t / sum w_t."""

    def __init__(self, n_features: int, shift: float, xp=np):
        if not shift > 0:
            raise ValueError(f"shift a must be > 0, got {shift}")
        self.shift = float(shift)
        self.total = xp.zeros(n_features, dtype=np.float64)  # sum_t w_t x_t (xp: the parameters' module)
        self.weight_sum = 0.0  # S = sum_t w_t

    def weight(self, t: int) -> float:
        return (self.shift + t) ** 2

    def add(self, t: int, x: np.ndarray) -> None:
        """Add iterate x_t (the point where step t takes its gradient)."""
        w = self.weight(t)
        self.total += w * x
        self.weight_sum += w

    def value(self) -> np.ndarray | None:
        """sum w_t x_t / S (float64), or None before the first ``add``."""
        if self.weight_sum == 0.0:
            return None
        return self.total / self.weight_sum

    def state_dict(self) -> dict:
        return {"total": self.total.copy(), "weight_sum": self.weight_sum}

    def load_state_dict(self, state: dict) -> None:
        backend.assign(self.total, state["total"])
        self.weight_sum = float(state["weight_sum"])
