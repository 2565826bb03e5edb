"""Training with ``train.device = "gpu"`` on a real GPU: sync_sgd and the Local SGD family against
the CPU run of the same config. Skips without CuPy or a GPU; tests/test_device_path.py runs the same
code path on the CPU with the stand-in device (bit for bit there, since the kernels are the CPU's).

On a GPU the objective's kernels are cuBLAS/cuSPARSE and CUDA sums in another order than the Cython
ones, so the runs agree within float rounding, not bit for bit: float64 1e-8 and float32 2e-3
relative (parameters against their largest entry; losses and gradient norms per record), accuracy
within two rows of the N; counters (steps, rounds, bytes, syncs) exactly. Two ranks share one GPU
when only one is visible (GPU = local rank mod visible GPUs). MPI gets staged host buffers
(``train.cuda_aware_mpi = false``): the venv's MPICH is not CUDA-aware.
"""
import json

import numpy as np
import pytest

from mpi_run import run_mpi
from mpitrain import backend, checkpoint
from mpitrain.config import load_config
from mpitrain.problem import DEVICE_METHODS

cupy = pytest.importorskip("cupy")
REASON = backend.gpu_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"gpu: {REASON}")

N = 600
WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}
FLOATS = ("loss", "grad_norm", "suboptimality")
RTOL = {"float64": 1e-8, "float32": 2e-3}
SMALL = [f"data.n_samples={N}", "data.n_features=20", "train.batch_size=4", "step_size.value=0.5",
         "train.steps=60", "run.log_every=20", "run.progress=false", "run.reference=false",
         "run.save_parameters=true"]
METHOD_OPTIONS = {
    "sync_sgd": [],
    "local_sgd": ["local_sgd.period=4", "local_sgd.output=weighted"],
    "hierarchical_local_sgd": ["hierarchical_local_sgd.node_period=2", "hierarchical_local_sgd.global_period=4",
                               "hierarchical_local_sgd.ranks_per_node=1"],
    "async_local_sgd": ["async_local_sgd.period=4", "async_local_sgd.max_delay=0"],
}


def run(out, ranks, method, dtype, *more):
    args = ["-m", "mpitrain", "train"]
    for kv in [*SMALL, f"data.dtype={dtype}", f"train.algorithm={method}", *METHOD_OPTIONS[method],
               f"run.output_dir={out}", *more]:
        args += ["--set", kv]
    result = run_mpi(ranks, args, timeout=300)
    assert result.returncode == 0, result.output
    recs = [{k: v for k, v in json.loads(line).items() if k not in WALL_TIME}
            for line in (out / "metrics.jsonl").read_text().splitlines()]
    return recs, np.load(out / "parameters.npy")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("method", DEVICE_METHODS)
def test_gpu_run_equals_the_cpu_run_within_float_rounding(tmp_path, method, ranks, dtype):
    cpu_records, cpu_x = run(tmp_path / "cpu", ranks, method, dtype)
    gpu_records, gpu_x = run(tmp_path / "gpu", ranks, method, dtype, "train.device=gpu", "train.cuda_aware_mpi=false")
    rtol = RTOL[dtype]
    assert len(gpu_records) == len(cpu_records)
    for gpu, cpu in zip(gpu_records, cpu_records):
        assert gpu.keys() == cpu.keys()
        for key, want in cpu.items():
            got = gpu[key]
            if key in FLOATS and want is not None:
                assert got == pytest.approx(want, rel=rtol), (key, cpu["step"])
            elif key == "accuracy" and want is not None:
                assert abs(got - want) <= 2 / N, cpu["step"]
            elif not isinstance(want, float):
                assert got == want, (key, cpu["step"])
    assert gpu_x.dtype == cpu_x.dtype
    np.testing.assert_allclose(gpu_x, cpu_x, rtol=rtol, atol=rtol * np.abs(cpu_x).max())


@pytest.mark.parametrize("method", DEVICE_METHODS)
def test_parameters_and_memories_are_cupy_arrays(tmp_path, method):
    from mpi4py import MPI

    from mpitrain.train import Trainer

    config = load_config(None, [*SMALL, f"train.algorithm={method}", *METHOD_OPTIONS[method],
                                f"run.output_dir={tmp_path}", "train.device=gpu"])
    trainer = Trainer(config, MPI.COMM_SELF)
    algorithm = trainer.algorithm
    algorithm.run_steps(0, 8)
    held = [algorithm.x, algorithm.grad]
    held += [algorithm.output.total] if getattr(algorithm, "output", None) is not None else []
    held += [algorithm.snapshot, algorithm.send, algorithm.recv] if method == "async_local_sgd" else []
    assert all(isinstance(a, cupy.ndarray) for a in held)
    folder = trainer.checkpoints.save(trainer, 8)
    saved = algorithm.x.get()
    algorithm.run_steps(8, 4)
    assert checkpoint.load(trainer, folder) == 8
    assert isinstance(algorithm.x, cupy.ndarray) and np.array_equal(algorithm.x.get(), saved)
