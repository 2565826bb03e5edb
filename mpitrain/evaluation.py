"""Evaluation of the global objective F(x) = (1/N) sum_i f_i(x) + (l2/2) ||x||^2 over all ranks.

One Allreduce of a packed [loss sum, correct count, gradient sum] buffer gives F(x),
||grad F(x)|| and, for a classifier (``objective.is_classifier``), the training accuracy: the
share of all N rows the model at x classifies right (argmax for softmax, sign for -1/+1).
Evaluation traffic is not training traffic: it is not counted in the CommStats.

Memory: the packed buffer (d + 2 float64) is the only d-sized array the Evaluator holds, and
an evaluation allocates no d-sized temporary for a float64 model: the gradient sum is
written straight into the buffer and turned into grad F(x) = sum / N + l2 x there, in place.
(A float32 model needs a float32 gradient buffer and a float64 copy of x per evaluation.)

Device arrays: the objective's sums run where its features are (on the GPU); the gradient sum
and x are copied to the host once per evaluation, and the rest (the Allreduce included) runs
on the host. Training never copies to the host for evaluation between evaluations.
"""
from __future__ import annotations

import math

import numpy as np
from mpi4py import MPI

from . import backend
from ._native.vector import scaled_update


class Evaluator:
    def __init__(self, comm, objective, n_global: int, f_star: float | None):
        self.comm = comm
        self.objective = objective
        self.n_global = int(n_global)
        self.f_star = f_star
        self.is_classifier = bool(getattr(objective, "is_classifier", False))
        d = objective.n_params
        self._packed = np.zeros(d + 2, dtype=np.float64)
        xp = getattr(objective, "xp", np)  # the gradient sum is formed where the features are
        same = np.dtype(objective.dtype) == np.float64 and xp is np
        self._grad = self._packed[2:] if same else xp.empty(d, dtype=objective.dtype)

    def evaluate(self, x: np.ndarray) -> dict:
        """{'loss', 'suboptimality', 'grad_norm', 'accuracy'} at x (collective); accuracy is None
        for a model that is not a classifier, suboptimality None without f*."""
        obj = self.objective
        packed = self._packed
        packed[0] = obj.loss_sum(x)
        packed[1] = obj.correct_sum(x) if self.is_classifier else 0.0
        obj.gradient_sum(x, self._grad)
        if self._grad.base is not packed:
            packed[2:] = backend.to_host(self._grad)
        if self.comm.Get_size() > 1:
            self.comm.Allreduce(MPI.IN_PLACE, packed, op=MPI.SUM)
        x64 = backend.to_host(x).astype(np.float64, copy=False)
        loss = packed[0] / self.n_global + 0.5 * obj.l2 * float(x64 @ x64)
        grad = packed[2:]
        grad /= self.n_global
        scaled_update(grad, x64, obj.l2)  # grad += l2 x, rounded as grad + l2 * x
        out = {"loss": float(loss), "grad_norm": float(np.sqrt(grad @ grad))}
        out["suboptimality"] = None if self.f_star is None else float(loss - self.f_star)
        out["accuracy"] = float(packed[1] / self.n_global) if self.is_classifier else None
        return out


def is_finite_record(record: dict) -> bool:
    return all(math.isfinite(record[k]) for k in ("loss", "grad_norm"))
