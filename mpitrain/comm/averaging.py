"""Weighted averaging of a flat vector over a communicator with one in-place Allreduce.

Rank k holds n_k of the N samples; the global objective is F = (1/N) sum_i f_i, so the
average that keeps gradients unbiased for F weighs rank k by n_k / N (1/K when shards are
balanced). :class:`Averager` sums in place; the weight is applied either by the caller, fused
into the pass that produced the buffer (``prescaled=True``: the average is then one bare
Allreduce), or by the Averager itself in a pass of its own.
"""
from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from .accounting import CommStats
from .device_buffers import default_buffers


class Averager:
    """``average(buf)``: buf <- sum_k w_k buf_k over ``comm``, in place (one Allreduce)."""

    def __init__(self, comm, weight: float, stats: CommStats | None = None):
        if not (0.0 < weight <= 1.0):
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.comm = comm
        self.size = comm.Get_size()
        self.weight = float(weight)
        self.stats = stats if stats is not None else CommStats()

    def average(self, buf: np.ndarray, prescaled: bool = False) -> np.ndarray:
        """sum_k w_k buf_k into buf; ``prescaled``: buf already holds w_k buf_k."""
        if self.size == 1:
            return buf
        if self.weight != 1.0 and not prescaled:
            buf *= buf.dtype.type(self.weight)
        start = time.perf_counter()
        if type(buf) is np.ndarray:  # host memory: straight to MPI (no per-call overhead at small d)
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        else:
            with default_buffers().inplace(buf) as mpi_buf:  # GPU arrays: sync, maybe stage
                self.comm.Allreduce(MPI.IN_PLACE, mpi_buf, op=MPI.SUM)
        self.stats.record(time.perf_counter() - start, buf.nbytes)
        return buf
