"""Many SGD steps of a PyTorch model in one call: what ``TorchObjective.sgd_steps`` returns.

The linear models take a block of SGD steps in one C call (mpitrain._native.sgd_steps.SGDSteps);
a model through the bridge cannot (autograd runs each step), but it can take the same block
through the same interface, so that synchronous SGD and Local SGD (mpitrain.algorithms.sync_sgd,
local_sgd) step it in blocks too. Step t of a block (Stich 2019, Algorithm 1, the local step):

    rows = sampler.draw()
    g    = weight * ((1/b) sum_{i in rows} grad f_i(x)) + weight * l2 x      (batch_gradient)
    g    = sum over the ranks of g                                        (average_gradients only)
    x   <- x - eta_t g,  and on the last step of a block  x <- beta (x - eta_t g)

with Stich's weighted sum first (``output_total += w_t x``) when ``output_total`` is given. Every
bit equals the algorithms' own one-step code (``batch_gradient``, the Allreduce, ``update``). What
a block gains: where no sum over the ranks comes between the gradient and the update (one rank,
or Local SGD's local steps) and l2 = 0, each parameter's new gradient is copied into g and x
is stepped in one pass (``TorchObjective.batch_step``), which reads the gradient once instead of
copying it and then reading g again; the bridge's step then costs little more than plain PyTorch's.
"""
from __future__ import annotations

import time

import numpy as np

from mpitrain._native.vector import scaled_update
from mpitrain.objectives.base import STEP_BLOCK


class TorchSGDSteps:
    """The interface of ``SGDSteps`` (capacity, step_sizes, output_weights, sum_seconds, dtype,
    average_gradients, run) over a TorchObjective's parameters x and gradient grad (its dtype,
    shape (n_params,)), drawing rows from ``sampler``."""

    def __init__(self, objective, x, grad, sampler, capacity=None, output_total=None):
        capacity = STEP_BLOCK if capacity is None else int(capacity)
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        for name, array in (("x", x), ("grad", grad)):
            if not isinstance(array, np.ndarray) or array.dtype != objective.dtype or array.shape != (objective.n_params,):
                raise ValueError(f"{name} must be a {objective.dtype.name} array of shape ({objective.n_params},)")
        if output_total is not None and (output_total.dtype != np.float64 or output_total.shape != x.shape):
            raise ValueError(f"output_total must be a float64 array of shape {x.shape}")
        self.objective, self.x, self.grad, self.sampler = objective, x, grad, sampler
        self.capacity = capacity
        self.step_sizes = np.zeros(capacity, dtype=np.float64)  # eta of the next call's steps
        self.output_total = output_total
        self.output_weights = None if output_total is None else np.zeros(capacity, dtype=np.float64)
        self.sum_seconds = 0.0  # seconds the last call spent in the sums over the ranks
        self.weight, self.allreduce = 1.0, None

    @property
    def dtype(self):
        return self.objective.dtype

    def average_gradients(self, weight: float, allreduce=None) -> None:
        """Synchronous SGD from the next call on: each step's gradient is ``weight`` times the
        mini-batch gradient, then summed over the ranks in place by ``allreduce(grad)`` (an
        ``mpitrain._native.inplace_allreduce.InPlaceAllreduce``; None: one rank, no sum)."""
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.weight, self.allreduce = float(weight), allreduce

    def run(self, count: int, beta: float = 1.0, weight_sum: float = 0.0) -> float:
        """Take ``count`` steps (0 <= count <= capacity) with eta = step_sizes[:count] (and output
        weights output_weights[:count]); the last one is scaled by ``beta``. Returns weight_sum plus
        the block's output weights, added in order."""
        if not 0 <= count <= self.capacity:
            raise ValueError(f"count must be in [0, {self.capacity}], got {count}")
        objective, x, grad, draw = self.objective, self.x, self.grad, self.sampler.draw
        total, allreduce, weight = self.output_total, self.allreduce, self.weight
        fused = allreduce is None and weight == 1.0
        self.sum_seconds = 0.0
        for i in range(count):
            if total is not None:  # as WeightedIterateAverage.add: total += w x, with w a Python float
                w = float(self.output_weights[i])
                total += w * x
                weight_sum += w
            eta = float(self.step_sizes[i])
            last = beta if i == count - 1 else 1.0
            if fused:
                objective.batch_step(x, draw(), grad, eta, last)
                continue
            objective.batch_gradient(x, draw(), grad, weight=weight)
            if allreduce is not None:
                started = time.perf_counter()
                allreduce(grad)
                self.sum_seconds += time.perf_counter() - started
            scaled_update(x, grad, -eta, last)
        return weight_sum
