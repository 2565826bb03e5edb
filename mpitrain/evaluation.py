"""Evaluation of the global objective F(x) = (1/N) sum_i f_i(x) + (l2/2) ||x||^2 over all ranks.

One Allreduce of a packed [loss sum, gradient sum] buffer gives both F(x) and ||grad F(x)||.
Evaluation traffic is not training traffic: it is not counted in the CommStats.
"""
from __future__ import annotations

import math

import numpy as np


class Evaluator:
    def __init__(self, comm, objective, n_global: int, f_star: float | None):
        self.comm = comm
        self.objective = objective
        self.n_global = int(n_global)
        self.f_star = f_star
        d = objective.n_features
        self._packed = np.zeros(d + 1, dtype=np.float64)
        self._grad = np.empty(d, dtype=objective.dtype)

    def evaluate(self, x: np.ndarray) -> dict:
        """{'loss', 'suboptimality', 'grad_norm'} at x (collective)."""
        from mpi4py import MPI

        obj = self.objective
        packed = self._packed
        packed[0] = obj.loss_sum(x)
        obj.gradient_sum(x, self._grad)
        packed[1:] = self._grad
        if self.comm.Get_size() > 1:
            self.comm.Allreduce(MPI.IN_PLACE, packed, op=MPI.SUM)
        x64 = x.astype(np.float64, copy=False)
        loss = packed[0] / self.n_global + 0.5 * obj.l2 * float(x64 @ x64)
        grad = packed[1:] / self.n_global + obj.l2 * x64
        out = {"loss": float(loss), "grad_norm": float(np.sqrt(grad @ grad))}
        out["suboptimality"] = None if self.f_star is None else float(loss - self.f_star)
        return out


def is_finite_record(record: dict) -> bool:
    return all(math.isfinite(record[k]) for k in ("loss", "grad_norm"))
