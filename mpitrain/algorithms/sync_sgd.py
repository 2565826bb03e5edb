"""Synchronous mini-batch parallel SGD.

Every step, each of the K workers takes a gradient on b local samples; one in-place
Allreduce averages them (weighted by shard size, so the average is an unbiased gradient of
F = (1/N) sum_i f_i); every worker takes the same step

    x_{t+1} = x_t - eta_t * sum_k (n_k / N) g_k(x_t).

With balanced shards this is mini-batch SGD with batch K b (Local SGD with H = 1, Stich 2019).
"""
from __future__ import annotations

import time

from .._native.vector import scaled_update
from .base import Algorithm


class SyncSGD(Algorithm):
    name = "sync_sgd"

    def __init__(self, worker, options=None):
        super().__init__(worker, options)
        self.averager = worker.averager()

    def step(self, t: int) -> None:
        w = self.worker
        started = time.perf_counter()  # compute time, with plain counters (cheaper than stats.compute())
        w.objective.batch_gradient(self.x, w.sampler.draw(), self.grad, weight=w.weight)  # weight n_k / N folded in
        w.stats.compute_seconds += time.perf_counter() - started
        self.averager.average(self.grad, prescaled=True)
        started = time.perf_counter()
        scaled_update(self.x, self.grad, -w.step_size(t))
        w.stats.compute_seconds += time.perf_counter() - started
