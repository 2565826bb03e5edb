"""Compressed payloads over a communicator: Allgatherv of byte strings, Allreduce of values.

A payload (mpitrain.compress) is a 1-D ``numpy.uint8`` array. Payloads that cannot be summed
(Top-k values + indices, dithering codes) travel by one Allgatherv and every rank decodes
all of them (Beznosikov et al. 2020, docs/papers.md s.2); payloads that can (Rand-k with a shared
seed, the identity) have their ``values()`` section summed by one in-place Allreduce.
Bytes are counted as this rank's contribution (mpitrain.comm.accounting).

Host payloads (NumPy arrays) take a short path: the layout of a given ``counts`` (displacements,
total, the views into the receive buffer) is computed once and MPI gets the arrays themselves,
timed by a pair of clock reads; device payloads go through mpitrain.comm.device_buffers.
"""
from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from .. import backend
from .accounting import CommStats
from .device_buffers import default_buffers


class PayloadExchange:
    """``allgather(payload, counts)`` and ``allreduce(values)`` over ``comm``, counted in ``stats``."""

    def __init__(self, comm, stats: CommStats | None = None):
        self.comm = comm
        self.stats = stats if stats is not None else CommStats()
        self._buffer = np.empty(0, dtype=np.uint8)
        self._layout = None  # (tuple(counts), [counts, displacements, MPI.BYTE], views): host path
        self._rank = comm.Get_rank()
        # a communicator whose ranks share this process computes a function of a collective's
        # result once for all of them (mpitrain.comm.inprocess); None elsewhere
        self._gather_apply = getattr(comm, "Allgatherv_apply", None)
        self._reduce_apply = getattr(comm, "Allreduce_apply", None)

    def allgather(self, payload: np.ndarray, counts=None) -> list:
        """Every rank's payload, in rank order (views into one reused buffer).

        ``counts``: the payload length of every rank when all ranks know them (one round);
        None exchanges the lengths first (an Allgather of one int, a second round).
        """
        if counts is not None and type(payload) is np.ndarray and payload.dtype == np.uint8 \
                and payload.flags.c_contiguous:
            return self._allgather_host(payload, counts)
        xp = backend.array_module(payload)  # NumPy, or CuPy for payloads on a GPU
        payload = xp.ascontiguousarray(payload, dtype=np.uint8)
        if counts is None:
            with self.stats.communicate(8):
                counts = self.comm.allgather(int(payload.size))
        counts = np.asarray(counts, dtype=np.int64)
        if counts[self.comm.Get_rank()] != payload.size:
            raise ValueError(f"payload has {payload.size} bytes, counts say {counts[self.comm.Get_rank()]}")
        displacements = np.concatenate(([0], np.cumsum(counts)[:-1]))
        total = int(counts.sum())
        if self._buffer.size != total or backend.array_module(self._buffer) is not xp:
            self._buffer = xp.empty(total, dtype=np.uint8)
        buffers = default_buffers()
        with self.stats.communicate(payload.nbytes), buffers.receive(self._buffer) as received:
            self.comm.Allgatherv(buffers.send(payload),
                                 [received, counts.tolist(), displacements.tolist(), MPI.BYTE])
        return [self._buffer[s:s + c] for s, c in zip(displacements, counts)]

    def _allgather_host(self, payload: np.ndarray, counts) -> list:
        """``allgather`` of a contiguous NumPy payload with known counts (the same round)."""
        key = tuple(counts)
        layout = self._layout
        if layout is None or layout[0] != key or type(self._buffer) is not np.ndarray:
            layout = self._layout = self._host_layout(key)
        if key[self._rank] != payload.size:
            raise ValueError(f"payload has {payload.size} bytes, counts say {key[self._rank]}")
        started = time.perf_counter()
        self.comm.Allgatherv(payload, layout[1])
        self.stats.record(time.perf_counter() - started, payload.nbytes)
        return list(layout[2])

    def _host_layout(self, key: tuple) -> tuple:
        """The receive buffer, its MPI description and the per-rank views for counts ``key``."""
        counts = [int(c) for c in key]
        displacements = [0]
        for c in counts[:-1]:
            displacements.append(displacements[-1] + c)
        total = sum(counts)
        if self._buffer.size != total or type(self._buffer) is not np.ndarray:
            self._buffer = np.empty(total, dtype=np.uint8)
        views = [self._buffer[s:s + c] for s, c in zip(displacements, counts)]
        return key, [self._buffer, counts, displacements, MPI.BYTE], views

    # -- a collective, then a function of its result that every rank computes alike -------------
    # ``function(result, out=None)`` writes into ``out`` (or, without one, returns a new array).
    # On MPI each rank calls it on its own bytes, into ``out``. A communicator whose ranks share
    # this process (mpitrain.comm.inprocess: ``Allgatherv_apply`` / ``Allreduce_apply``) calls it,
    # as ``function(result)``, once for all of them, and each rank copies the one result into its
    # ``out``: the same bits, since every rank would compute it from the same bytes.
    def allgather_apply(self, payload: np.ndarray, counts, function, out: np.ndarray) -> np.ndarray:
        """``function(every rank's payload in rank order, out)``; ``counts`` as for :meth:`allgather`."""
        apply = self._gather_apply
        if apply is None or type(payload) is not np.ndarray or type(out) is not np.ndarray:
            return function(self.allgather(payload, counts), out)
        started = time.perf_counter()
        result = apply(payload, counts, function)
        self.stats.record(time.perf_counter() - started, payload.nbytes)  # one collective
        out[...] = result  # (np.copyto's dispatch costs more than the copy at small d)
        return out

    def allreduce_apply(self, values: np.ndarray, function, out: np.ndarray) -> np.ndarray:
        """``function(values summed over ranks, out)``; ``values`` holds the sum afterwards, as
        after :meth:`allreduce`."""
        apply = self._reduce_apply
        if apply is None or type(values) is not np.ndarray or type(out) is not np.ndarray:
            return function(self.allreduce(values), out)
        started = time.perf_counter()
        result = apply(values, function)
        self.stats.record(time.perf_counter() - started, values.nbytes)  # one collective
        out[...] = result
        return out

    def allreduce(self, values: np.ndarray) -> np.ndarray:
        """values <- sum over ranks (in place, one Allreduce)."""
        if type(values) is np.ndarray:
            started = time.perf_counter()
            self.comm.Allreduce(MPI.IN_PLACE, values, op=MPI.SUM)
            self.stats.record(time.perf_counter() - started, values.nbytes)
            return values
        with self.stats.communicate(values.nbytes), default_buffers().inplace(values) as mpi_values:
            self.comm.Allreduce(MPI.IN_PLACE, mpi_values, op=MPI.SUM)
        return values
