"""The loss sum of a linear objective whose rows repeat: each distinct row scored once.

A data set may hold the same row (features and label) many times: LIBSVM w8a has 34,780
distinct rows among its 49,749. A row's loss f_i(x) depends on its features, its label and x
alone, so :class:`DistinctLossSum` finds the distinct rows once and, for each x, computes
each distinct row's loss once and adds the n losses in row order
(``mpitrain._native.objectives.csr_loss_sum_repeated``): the same additions of the same
doubles as ``objective.loss_sum(x)``, so the same bits, with the transcendental work (an exp
and a log1p per row for the logistic loss) only for the distinct rows. The experiments score
every checked model this way (mpitrain.experiments.workers.Problem.suboptimality).

Rows are the same when their column indices, stored values (bit for bit: -0.0 and 0.0
differ, and so do NaNs of different payloads) and labels are. Objectives on a GPU or with
dense features keep their own ``loss_sum``.
"""
from __future__ import annotations

import numpy as np

from mpitrain._native import objectives as kernels


def distinct_rows(data, indices, indptr, labels):
    """(first, row_of): the index of the first occurrence of each distinct row, ascending, and
    for every row the position of its distinct row in ``first`` (int64 arrays)."""
    index_bytes, value_bytes, label_bytes = indices.tobytes(), data.tobytes(), labels.tobytes()
    wi, wv, wl = indices.itemsize, data.itemsize, labels.itemsize
    seen, first = {}, []
    row_of = np.empty(indptr.shape[0] - 1, dtype=np.int64)
    for row, (start, end) in enumerate(zip(indptr[:-1].tolist(), indptr[1:].tolist())):
        key = (index_bytes[wi * start:wi * end], value_bytes[wv * start:wv * end],
               label_bytes[wl * row:wl * (row + 1)])
        position = seen.get(key)
        if position is None:
            position = seen[key] = len(first)
            first.append(row)
        row_of[row] = position
    return np.asarray(first, dtype=np.int64), row_of


class DistinctLossSum:
    """``objective.loss_sum(x)`` (a float, the same bits) with each distinct row's loss
    computed once; falls back to ``objective.loss_sum`` for GPU and dense objectives. Safe to
    call from several threads at once (each call has its own buffer of losses)."""

    def __init__(self, objective):
        self.objective = objective
        self.kernel = None
        if objective.xp is not np or not objective.is_sparse:
            return
        data, indices, indptr = objective._matrix
        first, self.row_of = distinct_rows(data, indices, indptr, objective.labels)
        starts, ends = indptr[first].astype(np.int64), indptr[first + 1].astype(np.int64)
        lengths = ends - starts
        offsets = np.zeros(first.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        take = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        self.data = np.ascontiguousarray(data[take])
        self.indices = np.ascontiguousarray(indices[take])
        self.indptr = offsets.astype(indptr.dtype)
        self.labels = np.ascontiguousarray(objective.labels[first])
        name = "float" if objective.dtype == np.float32 else "double"
        self.kernel = kernels.csr_loss_sum_repeated[name]

    @property
    def distinct(self) -> int:
        """How many distinct rows (all rows when the objective keeps its own loss_sum)."""
        return self.objective.n_samples if self.kernel is None else self.labels.shape[0]

    def __call__(self, x) -> float:
        if self.kernel is None:
            return self.objective.loss_sum(x)
        self.objective._check(x, "x")
        work = np.empty(self.labels.shape[0], dtype=np.float64)  # per call: scorers call it from two threads
        return self.kernel(self.objective.kind, self.data, self.indices, self.indptr, self.labels, x,
                           self.row_of, work)
