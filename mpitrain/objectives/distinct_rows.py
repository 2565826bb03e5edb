"""The loss sum of a linear objective whose rows repeat: each distinct row scored once.

A data set may hold the same row (features and label) many times: LIBSVM w8a has 34,780
distinct rows among its 49,749. A row's loss f_i(x) depends on its features, its label and x
alone, so :class:`DistinctLossSum` finds the distinct rows once and, for each x, computes
each distinct row's loss once and adds the n losses in row order
(``mpitrain._native.objectives.csr_loss_sum_repeated``): the same additions of the same
doubles as ``objective.loss_sum(x)``, so the same bits, with the transcendental work (an exp
and a log1p per row for the logistic loss) only for the distinct rows. The experiments score
every checked model this way (mpitrain.experiments.workers.Problem.suboptimality).

:meth:`DistinctLossSum.lower_bound` is a float no larger than that sum at about half its cost
(each distinct row once, weighted by how often it occurs, with a table in place of exp and
log1p: ``mpitrain._native.objectives.csr_logistic_loss_lower``). An experiment that only
asks whether a model is above a target uses it to skip the exact sum when the bound decides
(Problem.screened_suboptimality).

Rows are the same when their column indices, stored values (bit for bit: -0.0 and 0.0
differ, and so do NaNs of different payloads) and labels are. Objectives on a GPU or with
dense features keep their own ``loss_sum``.
"""
from __future__ import annotations

import functools

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


@functools.cache
def _softplus_table():
    """The bound's table (``kernels.softplus_table()``), made once."""
    return kernels.softplus_table()


class DistinctLossSum:
    """``objective.loss_sum(x)`` (a float, the same bits) with each distinct row's loss
    computed once; falls back to ``objective.loss_sum`` for GPU and dense objectives. Safe to
    call from several threads at once (each call has its own buffer of losses)."""

    def __init__(self, objective):
        self.objective = objective
        self.kernel = None
        if objective.xp is not np or not objective.is_sparse:
            return
        csr = objective.features  # a host CSR matrix (scipy), as the objective's kernels read it
        data, indices, indptr = csr.data, csr.indices, csr.indptr
        first, row_of = distinct_rows(data, indices, indptr, objective.labels)
        # distinct rows shortest first (ties in order of first occurrence): which number a
        # distinct row has changes no sum of the exact kernel (it adds in the order of row_of),
        # and the bound's four rows at a time then have one length almost always
        order = np.argsort(np.diff(indptr)[first], kind="stable")
        first = first[order]
        renumber = np.empty_like(order)
        renumber[order] = np.arange(order.size)
        self.row_of = renumber[row_of]
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
        self.counts = np.bincount(self.row_of, minlength=first.size).astype(np.float64)  # of each distinct row
        self._lower = kernels.csr_logistic_loss_lower[name] if objective.kind == kernels.LOSS_KINDS["logistic"] else None

    @property
    def distinct(self) -> int:
        """How many distinct rows (all rows when the objective keeps its own loss_sum)."""
        return self.objective.n_samples if self.kernel is None else self.labels.shape[0]

    def lower_bound(self, x):
        """A float no larger than ``self(x)``, within about 7.6e-6 per row of it (see the
        kernel); None where there is none: another loss than the logistic, a GPU or dense
        objective, or a margin that is not finite or beyond 1e6 in size."""
        if self.kernel is None or self._lower is None:
            return None
        self.objective.check_point(x)
        work = np.empty(self.labels.shape[0], dtype=np.float64)  # per call: scorers call it from two threads
        value = self._lower(self.data, self.indices, self.indptr, self.labels, x, self.counts, _softplus_table(), work)
        return None if value != value else value

    def __call__(self, x) -> float:
        if self.kernel is None:
            return self.objective.loss_sum(x)
        self.objective.check_point(x)
        work = np.empty(self.labels.shape[0], dtype=np.float64)  # per call: scorers call it from two threads
        return self.kernel(self.objective.kind, self.data, self.indices, self.indptr, self.labels, x,
                           self.row_of, work)
