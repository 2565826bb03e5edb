"""Which device a rank computes on: the CPU, or one GPU picked from its rank on the node.

``select_device(comm, device)`` is called once per rank before the problem's arrays are
made. For ``device = "gpu"`` the ranks that share a node (a ``Split_type(COMM_TYPE_SHARED)``
communicator) take GPUs round robin: GPU index = local rank mod the number of GPUs this
process sees, so one rank per GPU when a job starts as many ranks per node as the node has
GPUs (and with CUDA_VISIBLE_DEVICES set per rank by the launcher, every rank sees one GPU and
takes index 0).
"""
from __future__ import annotations

from mpi4py import MPI

from . import backend
from .fields import ConfigError


DEVICES = ("cpu", "gpu")


def local_rank(comm) -> int:
    """This rank's index among the ranks of its node (shared-memory communicator)."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        return node.Get_rank()
    finally:
        node.Free()


def gpu_index(rank_on_node: int, count: int) -> int:
    """The GPU of the rank with this local rank when ``count`` GPUs are visible."""
    if count < 1:
        raise ValueError(f"count must be >= 1 GPU, got {count}")
    if rank_on_node < 0:
        raise ValueError(f"rank_on_node must be >= 0, got {rank_on_node}")
    return rank_on_node % count


def select_device(comm, device: str = "cpu", count: int | None = None, activate: bool = True,
                  cuda_aware_mpi="auto"):
    """None for "cpu"; for "gpu" the index of this rank's GPU, made current when ``activate``.

    ``cuda_aware_mpi`` (the config field ``train.cuda_aware_mpi``) is handed to the
    communication code (mpitrain.comm.device_buffers.configure).
    ``count``: the visible GPU count (default: asked from CuPy; tests pass a number and
    ``activate=False``). A "gpu" request without CuPy or without a GPU is a ConfigError
    naming the field ``train.device``.
    """
    if device not in DEVICES:
        raise ConfigError("train.device", f"must be one of {', '.join(map(repr, DEVICES))}; got {device!r}")
    if device == "cpu":
        return None
    from .comm.device_buffers import configure

    configure(cuda_aware_mpi)
    if count is None:
        reason = backend.gpu_unavailable_reason()
        if reason is not None:
            raise ConfigError("train.device", f"'gpu' cannot run on this machine: {reason}")
        count = backend.gpu_count()
    index = gpu_index(local_rank(comm), count)
    if activate:
        backend.activate(index)
    return index


def select_for_config(comm, config):
    """select_device with the config's ``train.device`` and ``train.cuda_aware_mpi``."""
    return select_device(comm, config.train.device, cuda_aware_mpi=config.train.cuda_aware_mpi)
