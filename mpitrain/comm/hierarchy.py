"""Two-level averaging for clusters whose network between nodes is the bottleneck.

:class:`NodeHierarchy` splits a communicator into ``node`` (the ranks of one node, from
``comm.Split_type(MPI.COMM_TYPE_SHARED)``, or blocks of ``ranks_per_node`` consecutive ranks
to fake nodes on one machine) and ``leaders`` (local rank 0 of every node; COMM_NULL
elsewhere). :class:`HierarchicalAverager` averages

- inside a node:  one Allreduce on ``node``, weights w_k / W_node (W_node = sum of the node's w_k);
- over all ranks: Reduce to the node leader, Allreduce among leaders, Bcast inside the node,
  weights w_k = n_k / N; the same value as a flat weighted Allreduce (up to summation order).

Accounting: every collective a rank takes part in is one round; the bytes are the payload
the rank contributes (the Bcast root contributes the buffer, the others nothing).

Device arrays go to MPI through mpitrain.comm.device_buffers (synchronised, and staged through
host buffers unless MPI is CUDA-aware); host arrays go straight to MPI.
"""
from __future__ import annotations

from time import perf_counter

import numpy as np
from mpi4py import MPI

from ..runtime import JobError
from .accounting import CommStats
from .device_buffers import MPIBuffers, default_buffers


class _HostBuffers:
    """MPIBuffers' interface for host arrays: every buffer is the array itself."""

    def send(self, x):
        return x

    def inplace(self, x):
        return _Same(x)

    receive = inplace


class _Same:
    def __init__(self, x):
        self.x = x

    def __enter__(self):
        return self.x

    def __exit__(self, *exc):
        return False


def buffers_for(buf) -> MPIBuffers | _HostBuffers:
    return _HOST if type(buf) is np.ndarray else default_buffers()


_HOST = _HostBuffers()


class NodeHierarchy:
    """The node and leader communicators of ``comm`` (collective to build; ``free()`` after use)."""

    def __init__(self, comm, ranks_per_node: int = 0, field: str = "ranks_per_node"):
        rank, size = comm.Get_rank(), comm.Get_size()
        if ranks_per_node > 0:
            if size % ranks_per_node != 0:
                raise JobError(f"config field '{field}': {ranks_per_node} ranks per node does not divide "
                               f"the {size} ranks of the job")
            self.node = comm.Split(rank // ranks_per_node, rank)
        else:
            self.node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
        is_leader = self.node.Get_rank() == 0
        self.leaders = comm.Split(0 if is_leader else MPI.UNDEFINED, rank)
        self.is_leader = is_leader
        self.n_nodes = comm.allreduce(1 if is_leader else 0)

    def free(self):
        for c in (self.node, self.leaders):
            if c != MPI.COMM_NULL:
                c.Free()


class HierarchicalAverager:
    """``average_node(buf)`` and ``average_global(buf)``, in place, for rank weight ``weight``.

    Timed with plain counters (``CommStats.record``); host arrays go to MPI as they are, device
    arrays through ``default_buffers()``, picked per call by the array's type."""

    def __init__(self, hierarchy: NodeHierarchy, weight: float, stats: CommStats | None = None):
        self.hierarchy = hierarchy
        self.weight = float(weight)
        self.node_weight = hierarchy.node.allreduce(self.weight)  # W_node
        self.node_share = self.weight / self.node_weight  # w_k / W_node
        self.node_size = hierarchy.node.Get_size()
        self.stats = stats if stats is not None else CommStats()

    def average_node(self, buf: np.ndarray) -> np.ndarray:
        """buf <- sum_{j in node} (w_j / W_node) buf_j."""
        if self.node_size == 1:
            return buf
        buf *= buf.dtype.type(self.node_share)
        started = perf_counter()
        with buffers_for(buf).inplace(buf) as mpi_buf:
            self.hierarchy.node.Allreduce(MPI.IN_PLACE, mpi_buf, op=MPI.SUM)
        self.stats.record(perf_counter() - started, buf.nbytes)
        return buf

    def average_global(self, buf: np.ndarray) -> np.ndarray:
        """buf <- sum_k w_k buf_k over all ranks: node Reduce, leader Allreduce, node Bcast."""
        h, stats, nbytes = self.hierarchy, self.stats, buf.nbytes
        buffers = buffers_for(buf)
        if self.weight != 1.0:
            buf *= buf.dtype.type(self.weight)
        if self.node_size > 1:
            started = perf_counter()
            if h.is_leader:
                with buffers.inplace(buf) as mpi_buf:
                    h.node.Reduce(MPI.IN_PLACE, mpi_buf, op=MPI.SUM, root=0)
            else:
                h.node.Reduce(buffers.send(buf), None, op=MPI.SUM, root=0)
            stats.record(perf_counter() - started, nbytes)
        if h.is_leader and h.leaders.Get_size() > 1:
            started = perf_counter()
            with buffers.inplace(buf) as mpi_buf:
                h.leaders.Allreduce(MPI.IN_PLACE, mpi_buf, op=MPI.SUM)
            stats.record(perf_counter() - started, nbytes)
        if self.node_size > 1:
            started = perf_counter()
            if h.is_leader:
                h.node.Bcast(buffers.send(buf), root=0)
            else:
                with buffers.receive(buf) as mpi_buf:
                    h.node.Bcast(mpi_buf, root=0)
            stats.record(perf_counter() - started, nbytes if h.is_leader else 0)
        return buf
