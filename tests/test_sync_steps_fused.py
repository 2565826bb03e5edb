"""Synchronous SGD in blocks: the kernel that draws, takes the weighted gradient, sums it over the
ranks with MPI_Allreduce called from C and updates, many steps per call, gives the run of one
Python step per call (MPITRAIN_BLOCKS=0) bit for bit: iterates, row streams, metrics.jsonl,
parameters.npy and the comm accounting (rounds, bytes), under mpiexec -n 2 and -n 3, float32 and
float64, CSR and dense rows, logistic and least squares, with evaluations and checkpoints inside
what would otherwise be one block; a run stopped by SIGTERM checkpoints at a step boundary and
resumes to the unbroken run. Networks have no such kernel and keep the step-per-call path.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
from mpi4py import MPI

from mpi_run import run_mpi_script
from mpitrain._native.inplace_allreduce import InPlaceAllreduce
from mpitrain.algorithms.base import Worker
from mpitrain.algorithms.sync_sgd import SyncSGD
from mpitrain.comm.accounting import CommStats
from mpitrain.objectives import make_objective
from mpitrain.sampling import BatchSampler
from mpitrain.schedules import InverseTime

WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}
CASES = [(name, dtype, layout) for name in ("logistic", "least_squares") for dtype in ("float32", "float64")
         for layout in ("csr", "dense")]


def shard_objective(name, dtype, layout, rank, size, n=67, d=9, seed=0):
    """Rows rank, rank + size, ... of one random problem (unequal shards: weights n_k / N)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)).astype(dtype)
    a[rng.random((n, d)) < 0.5] = 0.0
    labels = np.where(rng.random(n) < 0.5, -1.0, 1.0) if name == "logistic" else rng.standard_normal(n)
    a, labels = a[rank::size], labels[rank::size].astype(dtype)
    return make_objective(name, scipy.sparse.csr_matrix(a) if layout == "csr" else a, labels, 0.05), n


def sync_sgd(comm, objective, n_global, steps=70, capacity=None):
    """SyncSGD on this rank's shard; ``capacity``: a kernel of that many steps per call."""
    worker = Worker(comm=comm, objective=objective, n_global=n_global, weight=objective.n_samples / n_global,
                    sampler=BatchSampler(objective.n_samples, 4, seed=2, rank=comm.Get_rank()),
                    step_size=InverseTime(1.0, 4.0), stats=CommStats(), x0=start(objective), steps=steps, seed=2,
                    batch_size=4)
    algorithm = SyncSGD(worker)
    if capacity is not None:
        algorithm.sgd_steps = objective.sgd_steps(algorithm.x, algorithm.grad, worker.sampler, capacity=capacity)
        allreduce = InPlaceAllreduce(comm, objective.dtype) if comm.Get_size() > 1 else None
        algorithm.sgd_steps.average_gradients(worker.weight, allreduce)
    return algorithm


def start(objective):
    return np.linspace(-0.5, 0.5, objective.n_params).astype(objective.dtype)


def compare_run_steps(comm, name, dtype, layout, counts=(1, 4, 9, 2, 30, 100), capacity=3):
    """step(t) 70 times against run_steps in calls of ``counts`` (the last past the budget) on a
    kernel of ``capacity`` steps: what this rank sees, as a dict (run by the MPI script below)."""
    objective, n = shard_objective(name, dtype, layout, comm.Get_rank(), comm.Get_size())
    one, blocks = sync_sgd(comm, objective, n), sync_sgd(comm, objective, n, capacity=capacity)
    for t in range(70):
        one.step(t)
    t, taken = 0, []
    for count in counts:
        taken.append(blocks.run_steps(t, count))
        t += taken[-1]
    stats = [(a.worker.stats.rounds, a.worker.stats.bytes_sent) for a in (one, blocks)]
    return {"taken": taken, "x": blocks.x.tobytes() == one.x.tobytes(),
            "grad": blocks.grad.tobytes() == one.grad.tobytes(),
            "sampler": blocks.worker.sampler.state() == one.worker.sampler.state(), "stats": stats,
            "moved": float(np.abs(one.x - start(objective)).max()), "comm_seconds": blocks.worker.stats.comm_seconds}


def test_weighted_kernel_is_batch_gradient_with_the_weight():
    """average_gradients(w) without a sum: the steps of batch_gradient(weight=w) + scaled_update."""
    for case in CASES:
        objective, n = shard_objective(*case, rank=0, size=1)
        worker = Worker(comm=MPI.COMM_SELF, objective=objective, n_global=n, weight=0.37,
                        sampler=BatchSampler(n, 4, 2, 0), step_size=InverseTime(1.0, 4.0), stats=CommStats(),
                        x0=start(objective), steps=50, seed=2)
        one, blocks = SyncSGD(worker), SyncSGD(Worker(**{**worker.__dict__, "sampler": BatchSampler(n, 4, 2, 0),
                                                         "stats": CommStats()}))
        for t in range(50):
            one.step(t)
        assert blocks.run_steps(0, 20) + blocks.run_steps(20, 40) == 50
        assert blocks.x.tobytes() == one.x.tobytes() and blocks.grad.tobytes() == one.grad.tobytes(), case
        assert blocks.worker.sampler.state() == one.worker.sampler.state()
        assert blocks.worker.stats.rounds == one.worker.stats.rounds == 0  # one rank: nothing travels


def test_average_gradients_and_the_allreduce_refuse_bad_arguments():
    objective, n = shard_objective("logistic", "float64", "csr", 0, 1)
    x, g = np.zeros(objective.n_features), np.zeros(objective.n_features)
    kernel = objective.sgd_steps(x, g, BatchSampler(n, 2, 0, 0), capacity=4)
    with pytest.raises(ValueError, match=r"weight must be in \(0, 1\]"):
        kernel.average_gradients(0.0)
    with pytest.raises(ValueError, match="must be an mpitrain._native.inplace_allreduce.InPlaceAllreduce"):
        kernel.average_gradients(0.5, object())
    with pytest.raises(ValueError, match="allreduce sums float32; x is float64"):
        kernel.average_gradients(0.5, InPlaceAllreduce(MPI.COMM_SELF, np.float32))
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        InPlaceAllreduce(MPI.COMM_SELF, np.int64)
    with pytest.raises(ValueError, match="comm must be an mpi4py communicator"):
        InPlaceAllreduce("world", np.float64)
    allreduce = InPlaceAllreduce(MPI.COMM_SELF, np.float64)
    with pytest.raises(ValueError, match="buf must be a float64 array"):
        allreduce(np.zeros(3, np.float32))
    buf = np.arange(5.0)
    allreduce(buf)  # one rank: the sum is the buffer
    assert buf.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    kernel.average_gradients(0.5, allreduce)
    kernel.step_sizes[:4] = 0.1
    kernel.run(4)
    assert kernel.sum_seconds > 0.0


def test_networks_keep_the_step_per_call_path():
    rng = np.random.default_rng(0)
    features, labels = rng.standard_normal((30, 6)), np.where(rng.random(30) < 0.5, -1.0, 1.0)
    objective = make_objective("mlp", features, labels, 0.1, hidden=[5], activation="tanh", head="logistic")

    def algorithm():
        return SyncSGD(Worker(comm=MPI.COMM_SELF, objective=objective, n_global=30, weight=1.0,
                              sampler=BatchSampler(30, 4, 1, 0), step_size=InverseTime(0.5, 4.0), stats=CommStats(),
                              x0=objective.initial_point(0), steps=20, seed=1))

    one, blocks = algorithm(), algorithm()
    assert blocks.sgd_steps is None
    for t in range(20):
        one.step(t)
    assert blocks.run_steps(0, 25) == 20
    assert blocks.x.tobytes() == one.x.tobytes()


def test_an_in_process_communicator_keeps_the_step_per_call_path():
    """K ranks in one process (mpitrain.comm.inprocess): C cannot call their Allreduce."""
    from mpitrain.comm import inprocess

    def body(comm):
        objective, n = shard_objective("logistic", "float64", "csr", comm.Get_rank(), comm.Get_size())
        return sync_sgd(comm, objective, n).sgd_steps is None

    assert inprocess.run(2, body, timeout=60) == [True, True]


# --- under mpiexec ------------------------------------------------------------------------------

COMMON = ["data.n_samples=1200", "data.n_features=40", "train.batch_size=8", "train.steps=100",
          "run.log_every=40", "run.checkpoint_every=30", "run.reference=false", "run.progress=false",
          "step_size.value=0.2"]
CSR = ["data.dataset=synthetic-classification"]
DATA = {"csr-logistic": CSR, "csr-least_squares": [*CSR, "objective.name=least_squares"],
        "dense-least_squares": ["data.dataset=synthetic-least-squares", "objective.name=least_squares"]}
RUNS = {f"{data}-{dtype}": [*DATA[data], f"data.dtype={dtype}"] for data in DATA for dtype in ("float32", "float64")}
RUNS["inverse_time-float32"] = [*CSR, "data.dtype=float32", "step_size.schedule=inverse_time", "step_size.c=2.0",
                                "step_size.a=10.0"]
RUNS["mlp"] = [*CSR, "objective.name=mlp", "objective.hidden=[6]", "objective.activation=tanh",
               "objective.head=logistic"]
STOPPED = "csr-logistic-float64"  # the run stopped by SIGTERM and resumed

SCRIPT = """
import json
import os
import signal
import sys
import numpy as np
from mpi4py import MPI
from mpitrain import stopping
from mpitrain._native.inplace_allreduce import InPlaceAllreduce
from mpitrain.config import load_config
from mpitrain.train import train

sys.path.insert(0, {tests!r})
from test_sync_steps_fused import compare_run_steps

comm = MPI.COMM_WORLD
report = {{"allreduce": [], "parts": {{}}}}
for dtype in (np.float32, np.float64):
    for c in (comm, comm.Dup()):
        mine = np.random.default_rng(c.Get_rank()).standard_normal(1000).astype(dtype)
        theirs = mine.copy()
        InPlaceAllreduce(c, dtype)(mine)
        c.Allreduce(MPI.IN_PLACE, theirs, op=MPI.SUM)
        report["allreduce"].append(comm.allreduce(mine.tobytes() == theirs.tobytes(), op=MPI.LAND))
for case in {cases!r}:
    seen = compare_run_steps(comm, *case)
    report["parts"]["-".join(case)] = {{**seen, **{{k: comm.allreduce(seen[k], op=MPI.LAND)
                                                 for k in ("x", "grad", "sampler")}}}}


def config(name, folder):
    return load_config(None, [*{common!r}, *{runs!r}[name], f"run.output_dir={root!s}/{{name}}/{{folder}}"])


for name in {runs!r}:
    for blocks in ("0", "1"):
        os.environ["MPITRAIN_BLOCKS"] = blocks
        train(config(name, f"blocks-{{blocks}}"), comm)


class SignalAfter(stopping.StopRequest):
    # rank 0 gets SIGTERM at the first step boundary at or after ``step``
    def __init__(self, comm, step):
        super().__init__(comm)
        self.step, self.sent = step, False

    def agreed(self, step):
        if step >= self.step and not self.sent and self.comm.Get_rank() == 0:
            self.sent = True
            signal.raise_signal(signal.SIGTERM)
        return super().agreed(step)


stop = SignalAfter(comm, 45)
try:
    train(config({stopped!r}, "stopped"), comm, stop=stop)
    report["stopped"] = None
except stopping.Stopped as exc:
    report["stopped"] = [str(exc), exc.code]
stop.restore()
train(config({stopped!r}, "stopped"), comm, resume="{root!s}/{stopped}/stopped/checkpoints")
if comm.Get_rank() == 0:
    with open("{root!s}/report.json", "w") as f:
        json.dump(report, f)
"""


@pytest.fixture(scope="module", params=[2, 3], ids=["n2", "n3"])
def runs(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"sync-n{request.param}")
    script = SCRIPT.format(tests=str(Path(__file__).parent), cases=CASES, common=COMMON, runs=RUNS, stopped=STOPPED,
                           root=root)
    result = run_mpi_script(request.param, script, root, timeout=300)
    assert result.returncode == 0, result.output
    return request.param, root, json.loads((root / "report.json").read_text())


def records(folder):
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_TIME}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_allreduce_from_c_sums_as_mpi4py_does(runs):
    _, _, report = runs
    assert report["allreduce"] == [True] * 4  # float32, float64; the world and a duplicate


@pytest.mark.parametrize("case", ["-".join(case) for case in CASES])
def test_run_steps_is_step_by_step(runs, case):
    size, _, report = runs
    seen = report["parts"][case]
    assert seen["taken"] == [1, 4, 9, 2, 30, 24]  # the last call stops at the budget of 70
    assert seen["x"] and seen["grad"] and seen["sampler"]
    assert seen["moved"] > 1e-3
    assert seen["stats"][0] == seen["stats"][1]  # rounds and bytes
    itemsize = np.dtype(case.split("-")[1]).itemsize
    assert seen["stats"][0] == [70, 70 * 9 * itemsize]
    assert seen["comm_seconds"] > 0.0


@pytest.mark.parametrize("name", sorted(RUNS))
def test_blocks_write_the_run_of_single_steps(runs, name):
    size, root, _ = runs
    one, blocks = root / name / "blocks-0", root / name / "blocks-1"
    assert [r["step"] for r in records(one)] == [0, 40, 80, 100]
    assert records(blocks) == records(one)
    assert np.load(blocks / "parameters.npy").tobytes() == np.load(one / "parameters.npy").tobytes()
    last = json.loads((blocks / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["comm_rounds"] == 100 and last["bytes_sent"] == 100 * np.load(one / "parameters.npy").nbytes
    assert last["comm_seconds"] > 0.0 and last["compute_seconds"] > 0.0
    checkpoints = sorted(p.name for p in (blocks / "checkpoints").glob("step-*"))
    assert checkpoints[-1] == "step-00000090"  # the last multiple of 30


def test_stopped_run_checkpoints_at_a_step_boundary_and_resumes_to_the_unbroken_run(runs):
    _, root, report = runs
    message, code = report["stopped"]
    stopped = root / STOPPED / "stopped"
    assert code == 75 and message.startswith("stopped by SIGTERM after step "), message
    step = int(message.split()[5])
    assert 45 <= step < 100 and f"checkpoint written to {stopped / 'checkpoints' / f'step-{step:08d}'};" in message
    unbroken = root / STOPPED / "blocks-1"
    assert records(stopped) == records(unbroken)
    assert np.load(stopped / "parameters.npy").tobytes() == np.load(unbroken / "parameters.npy").tobytes()


def test_an_allreduce_c_cannot_reach_is_one_warning_from_rank_0(tmp_path):
    script = """
        import types, warnings
        import numpy as np
        from mpi4py import MPI
        import mpitrain.algorithms.sync_sgd as sync_sgd

        class Unreachable:
            def __init__(self, comm, dtype):
                raise RuntimeError("this MPI's handles are not ints")

        sync_sgd.InPlaceAllreduce = Unreachable
        comm = MPI.COMM_WORLD
        worker = types.SimpleNamespace(comm=comm, size=comm.Get_size(), rank=comm.Get_rank(), weight=0.5)
        kernel = types.SimpleNamespace(dtype=np.float64)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert sync_sgd.averaging(kernel, worker) is None
        counts = comm.gather(len(caught), root=0)  # one print: two ranks' lines can interleave
        if comm.Get_rank() == 0:
            print(f"warnings per rank: {counts}", flush=True)
    """
    result = run_mpi_script(2, script, tmp_path, timeout=120)
    assert result.returncode == 0, result.output
    assert "warnings per rank: [1, 0]" in result.stdout, result.output
