"""Weighted averaging of a flat vector over a communicator with one in-place Allreduce.

Rank k holds n_k of the N samples; the global objective is F = (1/N) sum_i f_i, so the
average that keeps gradients unbiased for F weighs rank k by n_k / N (1/K when shards are
balanced). :class:`Averager` pre-scales its buffer by that weight and sums in place.
"""
from __future__ import annotations

import numpy as np

from .accounting import CommStats


class Averager:
    """``average(buf)``: buf <- sum_k w_k buf_k over ``comm``, in place (one Allreduce)."""

    def __init__(self, comm, weight: float, stats: CommStats | None = None):
        if not (0.0 < weight <= 1.0):
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.comm = comm
        self.weight = float(weight)
        self.stats = stats if stats is not None else CommStats()

    def average(self, buf: np.ndarray) -> np.ndarray:
        from mpi4py import MPI

        if self.comm.Get_size() == 1:
            return buf
        if self.weight != 1.0:
            buf *= buf.dtype.type(self.weight)
        with self.stats.communicate(buf.nbytes):
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return buf
