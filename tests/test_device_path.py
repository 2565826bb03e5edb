"""The training loop's device path on the CPU: the stand-in device of mpitrain.backend (a NumPy
subclass the backend treats as device memory) runs ``train.device = "gpu"`` for sync_sgd and the
Local SGD family, every line but the CuPy kernels.

In process (COMM_SELF): parameters, gradients and memories stay device arrays between steps; the
metrics equal the CPU run's bit for bit; MPI gets host staging buffers (or, CUDA-aware, the device
array after a synchronisation); checkpoints hold host arrays and resume onto the device; methods
without a device path are refused naming train.device. Under ``mpiexec -n 2``
(MPITRAIN_TEST_STAND_IN_DEVICE=1): each method's metrics and parameters equal the CPU run's, and
the staging copies are two per Allreduce of the parameters (none with CUDA-aware MPI).
tests/test_gpu_training.py runs the same comparisons on a real GPU.
"""
import json

import numpy as np
import pytest

from mpi_run import run_mpi, run_mpi_script
from mpitrain import backend, checkpoint
from mpitrain.comm import device_buffers
from mpitrain.comm.averaging import Averager
from mpitrain.config import load_config
from mpitrain.problem import DEVICE_METHODS
from mpitrain.runtime import JobError

WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}
SMALL = ["data.n_samples=600", "data.n_features=20", "train.batch_size=4", "step_size.value=0.5",
         "train.steps=60", "run.log_every=20", "run.progress=false", "run.reference=false"]
METHOD_OPTIONS = {  # a period that averages a few times in 60 steps
    "sync_sgd": [],
    "local_sgd": ["local_sgd.period=4", "local_sgd.output=weighted"],
    "hierarchical_local_sgd": ["hierarchical_local_sgd.node_period=2", "hierarchical_local_sgd.global_period=4",
                               "hierarchical_local_sgd.ranks_per_node=1"],
    "async_local_sgd": ["async_local_sgd.period=4", "async_local_sgd.max_delay=0"],
}


@pytest.fixture
def stand_in():
    backend.use_stand_in(True)
    try:
        yield backend.stand_in_counts
    finally:
        backend.use_stand_in(False)
        device_buffers.configure("auto")


def overrides(method, *more):
    return [*SMALL, f"train.algorithm={method}", *METHOD_OPTIONS[method], *more]


def make_trainer(tmp_path, method, *more):
    from mpi4py import MPI

    from mpitrain.train import Trainer

    config = load_config(None, overrides(method, f"run.output_dir={tmp_path}", *more))
    return Trainer(config, MPI.COMM_SELF)


def records(out):
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_TIME}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def train_in_process(out, method, *more):
    from mpi4py import MPI

    from mpitrain.train import train

    train(load_config(None, overrides(method, f"run.output_dir={out}", "run.save_parameters=true", *more)),
          MPI.COMM_SELF)
    return records(out), np.load(out / "parameters.npy")


@pytest.mark.parametrize("method", DEVICE_METHODS)
def test_arrays_stay_on_the_device_between_steps(tmp_path, stand_in, method):
    trainer = make_trainer(tmp_path, method, "train.device=gpu", "train.cuda_aware_mpi=false")
    algorithm = trainer.algorithm
    assert type(trainer.problem.x0) is backend.StandInArray
    assert algorithm.sgd_steps is None if hasattr(algorithm, "sgd_steps") else True  # no fused host kernel
    for t in range(0, 12, 3):
        assert algorithm.run_steps(t, 3) == 3
        held = [algorithm.x, algorithm.grad]
        held += [algorithm.output.total] if getattr(algorithm, "output", None) is not None else []
        held += [algorithm.snapshot, algorithm.send, algorithm.recv] if method == "async_local_sgd" else []
        assert all(type(a) is backend.StandInArray for a in held), [type(a) for a in held]
    assert type(algorithm.evaluation_point()) is backend.StandInArray
    assert stand_in["synchronize"] == 0  # one rank: nothing went to MPI


@pytest.mark.parametrize("method", DEVICE_METHODS)
def test_one_rank_metrics_equal_the_cpu_run(tmp_path, stand_in, method):
    backend.use_stand_in(False)
    cpu = train_in_process(tmp_path / "cpu", method)
    backend.use_stand_in(True)
    device = train_in_process(tmp_path / "device", method, "train.device=gpu")
    assert device[0] == cpu[0]
    assert type(device[1]) is np.ndarray and np.array_equal(device[1], cpu[1])
    assert stand_in["to_host"] > 0  # evaluations copied x to the host


class TwoRanks:
    """A communicator of two identical ranks: Allreduce doubles, and records what MPI was handed."""

    def __init__(self):
        self.handed = []

    def Get_size(self):
        return 2

    def Allreduce(self, send, recv, op=None):
        self.handed.append(type(recv))
        recv *= 2


@pytest.mark.parametrize("cuda_aware", [False, True])
def test_mpi_sees_host_copies_only_at_the_boundary(stand_in, cuda_aware):
    buffers = device_buffers.MPIBuffers(cuda_aware)
    comm = TwoRanks()
    averager = Averager(comm, 0.5)
    x = backend.to_device(np.arange(6.0))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(device_buffers, "_DEFAULT", {"auto": buffers})
        for _ in range(3):
            averager.average(x)
    assert type(x) is backend.StandInArray and np.array_equal(x, np.arange(6.0))
    assert stand_in["synchronize"] == 3  # the stream, before every MPI call
    if cuda_aware:
        assert comm.handed == [backend.StandInArray] * 3 and buffers.copies == 0
    else:
        assert comm.handed == [np.ndarray] * 3 and buffers.copies == 6  # in and out, per call


def test_checkpoints_hold_host_arrays_and_resume_on_the_device(tmp_path, stand_in):
    trainer = make_trainer(tmp_path, "local_sgd", "train.device=gpu")
    trainer.algorithm.run_steps(0, 10)
    arrays = checkpoint.store.capture(trainer, 10)
    assert all(type(a) is np.ndarray for a in arrays.values())
    folder = trainer.checkpoints.save(trainer, 10)
    saved = np.array(trainer.algorithm.x, subok=False)
    saved_total = np.array(trainer.algorithm.output.total, subok=False)
    trainer.algorithm.run_steps(10, 5)
    assert not np.array_equal(trainer.algorithm.x, saved)
    assert checkpoint.load(trainer, folder) == 10
    assert type(trainer.algorithm.x) is backend.StandInArray and np.array_equal(trainer.algorithm.x, saved)
    assert type(trainer.algorithm.output.total) is backend.StandInArray
    assert np.array_equal(trainer.algorithm.output.total, saved_total)


@pytest.mark.parametrize("method", ["async_sgd", "compressed_sgd"])
def test_methods_without_a_device_path_are_refused(tmp_path, stand_in, method):
    from mpi4py import MPI

    from mpitrain.problem import build_problem

    config = load_config(None, [*SMALL, f"train.algorithm={method}", "train.device=gpu"])
    with pytest.raises(JobError, match=f"train.device.*{method} runs on the CPU only"):
        build_problem(config, MPI.COMM_SELF)


def mpi_train(out, method, *more, env=None):
    args = ["-m", "mpitrain", "train"]
    for kv in overrides(method, f"run.output_dir={out}", "run.save_parameters=true", *more):
        args += ["--set", kv]
    result = run_mpi(2, args, timeout=120, env=env)
    assert result.returncode == 0, result.output
    return records(out), np.load(out / "parameters.npy")


@pytest.mark.parametrize("method", DEVICE_METHODS)
def test_two_ranks_on_the_stand_in_device_equal_the_cpu_run(tmp_path, method):
    cpu = mpi_train(tmp_path / "cpu", method)
    device = mpi_train(tmp_path / "device", method, "train.device=gpu", "train.cuda_aware_mpi=false",
                       env={backend.STAND_IN_VARIABLE: "1"})
    assert device[0] == cpu[0]
    assert np.array_equal(device[1], cpu[1])
    assert cpu[0][-1]["comm_rounds"] > 0


def test_two_ranks_in_one_node_stage_the_node_reduce_and_bcast(tmp_path):
    node = ("hierarchical_local_sgd.ranks_per_node=2",)  # one node: Allreduce, Reduce and Bcast inside it
    cpu = mpi_train(tmp_path / "cpu", "hierarchical_local_sgd", *node)
    device = mpi_train(tmp_path / "device", "hierarchical_local_sgd", *node, "train.device=gpu",
                       "train.cuda_aware_mpi=false", env={backend.STAND_IN_VARIABLE: "1"})
    assert device[0] == cpu[0] and np.array_equal(device[1], cpu[1])
    assert cpu[0][-1]["nodes"] == 1 and cpu[0][-1]["node_syncs"] > 0 and cpu[0][-1]["syncs"] > 0


@pytest.mark.parametrize("cuda_aware", ["false", "true"])
def test_two_ranks_stage_two_copies_per_average(tmp_path, cuda_aware):
    result = run_mpi_script(2, f"""
        from mpi4py import MPI
        from mpitrain import backend
        from mpitrain.comm.device_buffers import default_buffers
        from mpitrain.config import load_config
        from mpitrain.train import Trainer

        assert backend.stand_in_active()
        config = load_config(None, {overrides("local_sgd", f"run.output_dir={tmp_path}/out", "train.device=gpu",
                                              f"train.cuda_aware_mpi={cuda_aware}")!r})
        trainer = Trainer(config, MPI.COMM_WORLD)
        algorithm = trainer.algorithm
        algorithm.run_steps(0, 16)  # 4 averages of x
        assert type(algorithm.x) is backend.StandInArray
        copies = default_buffers().copies
        assert algorithm.syncs == 4 and backend.stand_in_counts["synchronize"] == 4
        assert copies == (0 if {cuda_aware == "true"} else 8), copies
        print("rank", MPI.COMM_WORLD.Get_rank(), "copies", copies, flush=True)
    """, tmp_path, env={backend.STAND_IN_VARIABLE: "1"})
    assert result.returncode == 0, result.output
    assert result.stdout.count("copies") == 2
