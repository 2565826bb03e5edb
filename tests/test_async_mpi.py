"""Async SGD under mpiexec: it converges, clipped norms stay <= lambda, delays follow a
scripted schedule, a dying rank ends the job, bad input stops every rank with one message."""
import json

import pytest

from mpi_run import run_mpi, run_mpi_script

SMALL = [
    "train.algorithm=\"async_sgd\"", "data.n_samples=2000", "data.n_features=50", "train.batch_size=8",
    "step_size.value=0.5", "run.log_every=100", "async_sgd.max_updates=600", "run.progress=false",
]


def train_args(tmp_path, *overrides):
    return ["-m", "mpitrain", "train", "--set", f"run.output_dir={tmp_path}/out",
            *[arg for o in (*SMALL, *overrides) for arg in ("--set", o)]]


def records(tmp_path):
    return [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("ranks, clip", [(2, None), (4, 0.05)])
def test_async_sgd_converges_and_reports_delays(tmp_path, ranks, clip):
    extra = [f"async_sgd.clip={clip}"] if clip else []
    result = run_mpi(ranks, train_args(tmp_path, *extra), timeout=120)
    assert result.returncode == 0, result.output
    recs = records(tmp_path)
    first, last = recs[0], recs[-1]
    assert first["step"] == 0 and last["step"] == 600  # exactly the budget: every push is claimed first
    assert [r["step"] for r in recs] == sorted(r["step"] for r in recs)
    assert last["suboptimality"] < 0.5 * first["suboptimality"]
    assert last["updates"] == last["step"] == sum(last["updates_per_worker"])
    for key in ("tau_max", "tau_mean", "concurrency", "tau_p99", "dropped", "clipped_fraction"):
        assert key in last
    assert 0 <= last["tau_mean"] <= last["tau_max"]
    if clip:
        assert last["max_clipped_norm"] <= clip and last["clipped_fraction"] > 0
    else:
        assert "max_clipped_norm" not in last
    out = tmp_path / "out"
    assert (out / "delays.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "parameters.npy").exists()
    assert json.loads((out / "summary.json").read_text())["steps"] == last["step"]
    assert result.stdout.count("mpitrain: async_sgd on") == 1


def test_wall_time_budget_with_a_straggler(tmp_path):
    result = run_mpi(2, train_args(tmp_path, "async_sgd.max_updates=1000000", "async_sgd.max_seconds=1.5",
                                   "async_sgd.straggler_ranks=[1]", "async_sgd.slowdown=\"fixed\"",
                                   "async_sgd.slowdown_seconds=0.05", "async_sgd.noise_sigma=0.01"), timeout=120)
    assert result.returncode == 0, result.output
    last = records(tmp_path)[-1]
    assert 1.4 <= last["wall_seconds"] < 5
    fast, slow = last["updates_per_worker"]
    assert slow <= 1.5 / 0.05 + 1 and fast > 2 * slow
    assert last["tau_max"] > 3


SCRIPTED = """
import json, time
import numpy as np
from mpi4py import MPI
from mpitrain.config import load_config
from mpitrain.train import Trainer
comm = MPI.COMM_WORLD
config = load_config(None, ["train.algorithm=\\"async_sgd\\"", "data.n_samples=400", "data.n_features=10",
                            "run.reference=false", "run.output_dir=OUT", "async_sgd.straggler_ranks=[1]",
                            "async_sgd.slowdown=\\"fixed\\"", "async_sgd.slowdown_seconds=3.0"])
algorithm = Trainer(config, comm).algorithm
comm.Barrier()
if comm.rank == 1:
    algorithm.step(0)            # pulls version 0, sleeps 3 s, pushes: tau = 3 (rank 0's pushes)
else:
    time.sleep(0.5)              # rank 1 has pulled
    for t in range(3):
        algorithm.step(t)        # versions 1, 2, 3 with tau 0 each
comm.Barrier()
if comm.rank == 0:
    algorithm.step(3)            # pulls version 4: tau 0
algorithm.finish()
delays = comm.gather(algorithm.store.delays, root=0)
if comm.rank == 0:
    print(json.dumps({"delays": delays, "metrics": algorithm.metrics()}))
"""


def test_delays_follow_a_scripted_schedule(tmp_path):
    result = run_mpi_script(2, SCRIPTED.replace("OUT", str(tmp_path / "out")), tmp_path, timeout=90)
    assert result.returncode == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["delays"] == [[0, 0, 0, 0], [3]]
    assert report["metrics"]["tau_max"] == 3 and report["metrics"]["updates"] == 5
    assert report["metrics"]["updates_per_worker"] == [4, 1]


@pytest.mark.parametrize("fault", ["kill:1:20", "raise:1:20"])
def test_a_rank_that_dies_ends_the_job(tmp_path, fault):
    result = run_mpi(4, train_args(tmp_path, "async_sgd.max_updates=10000000", "run.reference=false"),
                     env={"MPITRAIN_FAULT": fault}, timeout=90)
    assert result.returncode != 0
    if fault.startswith("raise"):
        assert "mpitrain: rank 1: RuntimeError: injected fault at step 20" in result.stderr


@pytest.mark.parametrize("override, message", [
    ("async_sgd.clip=0", "config field 'async_sgd.clip': must be > 0.0, got 0.0"),
    ("async_sgd.max_updates=0", "config field 'async_sgd.max_updates': must be >= 1, got 0"),
    ("async_sgd.straggler_ranks=[0,2]", "config field 'async_sgd.straggler_ranks': rank(s) [2] do not exist in a job of 2 ranks (0..1)"),
])
def test_bad_input_stops_every_rank_with_one_message(tmp_path, override, message):
    result = run_mpi(2, train_args(tmp_path, override, "run.reference=false"), timeout=60)
    assert result.returncode == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
