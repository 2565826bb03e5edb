"""Synchronous mini-batch parallel SGD.

Every step, each of the K workers takes a gradient on b local samples; one in-place
Allreduce averages them (weighted by shard size, so the average is an unbiased gradient of
F = (1/N) sum_i f_i); every worker takes the same step

    x_{t+1} = x_t - eta_t * sum_k (n_k / N) g_k(x_t).

With balanced shards this is mini-batch SGD with batch K b (Local SGD with H = 1, Stich 2019).

Steps in blocks: ``run_steps`` takes its steps in one C call per block without the GIL
(``Objective.sgd_steps`` with ``average_gradients``: draw, gradient with the weight n_k / N folded
in, MPI_Allreduce of the gradient called from C, update); the iterates, the row stream and the
metrics, comm rounds and bytes included, are those of ``step`` called for each step, bit for bit
(the same MPI_Allreduce on the same buffer). The seconds inside MPI_Allreduce, timed in the
kernel, count as communication, the rest of the call as compute. Objectives without such a
kernel (networks, parameters on a GPU), communicators other than mpi4py's (mpitrain.comm.inprocess)
and an MPI library whose MPI_Allreduce C code cannot reach through mpi4py
(mpitrain._native.inplace_allreduce; a warning says so) take ``step`` per step.
"""
from __future__ import annotations

import time
import warnings

from mpi4py import MPI

from .. import backend
from .._native.inplace_allreduce import InPlaceAllreduce
from .base import Algorithm, run_kernel_blocks, step_size_filler, update


class SyncSGD(Algorithm):
    name = "sync_sgd"

    def __init__(self, worker, options=None):
        super().__init__(worker, options)
        self.averager = worker.averager()
        host = not backend.is_device_array(self.x)  # the fused C kernel takes host arrays only
        kernel = worker.objective.sgd_steps(self.x, self.grad, worker.sampler) if host else None
        self.sgd_steps = None if kernel is None else averaging(kernel, worker)
        self.fill_step_sizes = step_size_filler(worker.step_size)

    def step(self, t: int) -> None:
        w = self.worker
        started = time.perf_counter()  # compute time, with plain counters (cheaper than stats.compute())
        w.objective.batch_gradient(self.x, w.sampler.draw(), self.grad, weight=w.weight)  # weight n_k / N folded in
        w.stats.compute_seconds += time.perf_counter() - started
        self.averager.average(self.grad, prescaled=True)
        started = time.perf_counter()
        update(self.x, self.grad, -w.step_size(t))
        w.stats.compute_seconds += time.perf_counter() - started

    def run_steps(self, t: int, count: int) -> int:
        """Steps t .. t + count - 1 (within the step budget), up to the kernel's capacity per C call."""
        kernel = self.sgd_steps
        if kernel is None:
            return super().run_steps(t, count)
        stats, nbytes = self.worker.stats, self.grad.nbytes

        def communicated(n, seconds):  # n Allreduces of the gradient, as n calls of Averager.average record them
            stats.record(seconds, n * nbytes, rounds=n)
        end = min(t + count, max(t, self.worker.steps))
        return run_kernel_blocks(kernel, self.fill_step_sizes, stats, t, end,
                                 communicated if self.averager.size > 1 else None)


def averaging(kernel, worker):
    """``kernel`` (an SGDSteps over x) set to take sync SGD's steps: the gradient weighted by
    ``worker.weight`` and summed over ``worker.comm`` by MPI_Allreduce from C (no sum on one rank,
    where the Averager does nothing and counts nothing); None where C cannot reach the Allreduce."""
    allreduce = None
    if worker.size > 1:
        if not isinstance(worker.comm, MPI.Comm):
            return None
        try:
            allreduce = InPlaceAllreduce(worker.comm, kernel.dtype)
        except RuntimeError as exc:  # the same MPI library on every rank: rank 0 says it for all
            if worker.rank == 0:
                warnings.warn(f"sync_sgd steps one Python call a step: {exc}", RuntimeWarning, stacklevel=2)
            return None
    kernel.average_gradients(worker.weight, allreduce)
    return kernel
