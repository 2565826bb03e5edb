"""Device selection, CUDA-aware MPI detection and staging through host buffers, on the CPU
(NumPy arrays stand in for device arrays; a fake GPU count stands in for the GPUs)."""
import numpy as np
import pytest

from mpitrain import backend
from mpitrain.comm.device_buffers import MPIBuffers, cuda_aware_mpi, environment_answer
from mpitrain.config import ConfigError, load_config
from mpitrain.device import gpu_index, select_device


class FakeComm:
    """Split_type gives a node communicator whose rank is ``local``."""

    def __init__(self, local):
        self.local = local

    def Get_rank(self):
        return 10 + self.local

    def Split_type(self, split_type, key=0):
        return FakeNode(self.local)


class FakeNode:
    def __init__(self, rank):
        self.rank = rank
        self.freed = False

    def Get_rank(self):
        return self.rank

    def Free(self):
        self.freed = True


def test_gpu_index_is_local_rank_modulo_count():
    assert [gpu_index(r, 4) for r in range(9)] == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert gpu_index(5, 1) == 0
    with pytest.raises(ValueError, match="count"):
        gpu_index(0, 0)


def test_select_device_uses_the_node_rank():
    pytest.importorskip("mpi4py")
    assert select_device(FakeComm(6), "gpu", count=4, activate=False) == 2
    assert select_device(FakeComm(6), "cpu") is None
    with pytest.raises(ConfigError, match="train.device"):
        select_device(FakeComm(0), "tpu")


@pytest.mark.skipif(backend.gpu_unavailable_reason() is None, reason="a GPU is visible here")
def test_gpu_without_gpu_names_the_field():
    with pytest.raises(ConfigError, match="train.device.*cannot run"):
        select_device(FakeComm(0), "gpu")


def test_config_fields():
    config = load_config(overrides=["train.device=gpu", "train.cuda_aware_mpi=false"])
    assert config.train.device == "gpu" and config.train.cuda_aware_mpi is False
    assert load_config().train.cuda_aware_mpi == "auto"
    with pytest.raises(ConfigError, match="train.device"):
        load_config(overrides=["train.device=tpu"])
    with pytest.raises(ConfigError, match="train.cuda_aware_mpi"):
        load_config(overrides=["train.cuda_aware_mpi=maybe"])


def test_cuda_aware_detection_order():
    never = lambda: (None, "no query")  # noqa: E731
    assert cuda_aware_mpi(True)[0] is True and cuda_aware_mpi(False)[0] is False
    assert cuda_aware_mpi("auto", environ={"MPIR_CVAR_ENABLE_GPU": "1"}, query=never)[0] is True
    assert cuda_aware_mpi("auto", environ={"OMPI_MCA_opal_cuda_support": "false"},
                          query=lambda: (True, "q"))[0] is False
    assert cuda_aware_mpi("auto", environ={}, query=lambda: (True, "q")) == (True, "q")
    aware, why = cuda_aware_mpi("auto", environ={}, query=never)
    assert aware is False and "staging" in why
    assert environment_answer({"MV2_USE_CUDA": "yes"})[0] is True
    with pytest.raises(ValueError, match="cuda_aware_mpi"):
        cuda_aware_mpi("sometimes")


class StandIn:
    """Device operations with NumPy: arrays flagged 'device' are the float64 ones."""

    def __init__(self):
        self.log = []

    def is_device(self, x):
        return x.dtype == np.float64

    def synchronize(self):
        self.log.append("sync")

    def pinned_empty(self, shape, dtype):
        self.log.append("pin")
        return np.empty(shape, dtype)

    def to_host(self, x, out):
        self.log.append("d2h")
        out[...] = x

    def to_device(self, host, x):
        self.log.append("h2d")
        x[...] = host


def fake_allreduce(buf):
    """What MPI would do on two identical ranks: the sum, in place."""
    buf *= 2


def test_staging_round_trip_and_sync_before_mpi():
    memory = StandIn()
    buffers = MPIBuffers(cuda_aware=False, memory=memory)
    x = np.arange(5.0)
    for _ in range(2):
        with buffers.inplace(x) as buf:
            assert buf is not x and memory.log[-1] == "d2h"  # synced and staged before the call
            fake_allreduce(buf)
    assert np.array_equal(x, 4 * np.arange(5.0))
    assert memory.log == ["sync", "pin", "d2h", "h2d", "sync", "d2h", "h2d"]  # pinned buffer reused
    send = buffers.send(x)
    with buffers.receive(np.zeros(5)) as recv:
        assert recv is not send  # send and receive staging never alias


def test_cuda_aware_passes_device_arrays_after_a_sync():
    memory = StandIn()
    buffers = MPIBuffers(cuda_aware=True, memory=memory)
    x = np.ones(3)
    with buffers.inplace(x) as buf:
        assert buf is x
    assert memory.log == ["sync"] and buffers.copies == 0


def test_host_arrays_pass_untouched():
    memory = StandIn()
    buffers = MPIBuffers(cuda_aware=False, memory=memory)
    x = np.ones(3, np.float32)
    with buffers.inplace(x) as buf:
        assert buf is x
    assert buffers.send(x) is x and memory.log == []


def test_a_method_that_runs_on_the_cpu_only_is_refused_on_the_gpu_naming_the_field():
    """compressed_sgd keeps its arrays on the host: train.device = "gpu" is one clear error, before
    any data is read (on a machine without a GPU the GPU request itself is refused first)."""
    from mpitrain.problem import build_problem
    from mpitrain.runtime import JobError

    config = load_config(overrides=["train.device=gpu", "train.algorithm=compressed_sgd"])
    with pytest.raises((ConfigError, JobError), match="train.device"):
        build_problem(config, FakeComm(0))
