"""Checkpoints: state round trips, an interrupted write leaves the previous checkpoint readable,
a run stopped by SIGTERM and resumed ends with the metrics of a run never stopped, and a
checkpoint from another kind of run is a clear error."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mpi_run import ROOT, mpi_env, mpiexec_path, run_mpi
from mpitrain import checkpoint, stopping
from mpitrain.config import load_config
from mpitrain.runtime import JobError

WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}
SMALL = ["data.n_samples=2000", "data.n_features=50", "train.batch_size=8", "step_size.value=0.5",
         "run.log_every=20", "run.progress=false"]


def test_flatten_round_trips_nested_state():
    state = {"x": np.arange(3.0), "ef": {"residual": np.ones(2, np.float32), "count": np.int64(4)}, "t": 7, "none": None}
    arrays = {}
    skeleton = checkpoint.flatten(state, arrays, "algorithm")
    json.dumps(skeleton)  # JSON-able: scalars in the skeleton, arrays beside it
    back = checkpoint.unflatten(skeleton, arrays)
    assert back["t"] == 7 and back["none"] is None and back["ef"]["count"] == 4
    np.testing.assert_array_equal(back["x"], state["x"])
    assert back["ef"]["residual"].dtype == np.float32


def test_digest_ignores_checkpoint_cadence_but_not_the_trajectory():
    base = checkpoint.config_digest(load_config(None, SMALL))
    assert checkpoint.config_digest(load_config(None, [*SMALL, "run.checkpoint_every=7", "run.progress=true"])) == base
    assert checkpoint.config_digest(load_config(None, [*SMALL, "step_size.value=0.4"])) != base


def test_truncate_metrics_keeps_records_up_to_the_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (0, 20, 40, 60)))
    checkpoint.truncate_metrics(path, 45)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [0, 20, 40]


@pytest.fixture
def trainer(tmp_path):
    from mpi4py import MPI

    from mpitrain.train import Trainer

    config = load_config(None, [*SMALL, "run.reference=false", f"run.output_dir={tmp_path}/out"])
    return Trainer(config, MPI.COMM_SELF)


def test_interrupted_write_leaves_previous_checkpoint_readable(trainer, monkeypatch):
    trainer.algorithm.x[:] = 1.0
    trainer.worker.sampler.draw()
    store = trainer.checkpoints
    store.save(trainer, 10)
    saved_x = trainer.algorithm.x.copy()
    saved_sampler = trainer.worker.sampler.state()

    def crash_mid_write(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip file")
        raise OSError(28, "No space left on device")

    trainer.algorithm.x[:] = 2.0
    with monkeypatch.context() as patch:
        patch.setattr(np, "savez", crash_mid_write)
        with pytest.raises(JobError, match="No space left on device"):
            store.save(trainer, 20)
    with monkeypatch.context() as patch:  # rank files written, manifest not: still incomplete
        patch.setattr(checkpoint.store, "write_json_durable", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
        with pytest.raises(JobError, match="I/O error"):
            store.save(trainer, 30)
    assert checkpoint.resolve(store.root).name == "step-00000010"
    assert not list(store.root.glob("step-00000020/.*tmp*"))  # no temporary file left behind
    trainer.algorithm.x[:] = 3.0
    trainer.worker.sampler.draw()
    assert checkpoint.load(trainer, store.root) == 10
    np.testing.assert_array_equal(trainer.algorithm.x, saved_x)
    assert trainer.worker.sampler.state() == saved_sampler
    with pytest.raises(JobError, match="not a complete checkpoint"):
        checkpoint.load(trainer, store.root / "step-00000030")


def train_args(out, *overrides):
    return ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}",
            *[arg for o in (*SMALL, *overrides) for arg in ("--set", o)]]


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without_wall_time(recs):
    return [{k: v for k, v in r.items() if k not in WALL_TIME} for r in recs]


def test_run_stopped_by_sigterm_resumes_to_the_same_metrics(tmp_path):
    steps = ("train.steps=100", "run.reference=false")
    full = run_mpi(4, train_args(tmp_path / "full", *steps), timeout=120)
    assert full.returncode == 0, full.output

    # a straggler (rank 1 sleeps 20 ms a step) keeps the run going long enough to be signalled
    out = tmp_path / "stopped"
    env = mpi_env({"MPITRAIN_FAULT": "sleep:1:0", "MPITRAIN_FAULT_SECONDS": "0.02"})
    proc = subprocess.Popen([mpiexec_path(), "-n", "4", sys.executable, *train_args(out, *steps)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ((out / "metrics.jsonl").exists() and '"step": 40' in (out / "metrics.jsonl").read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be signalled"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # to mpiexec alone: hydra forwards it to the ranks
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == stopping.EXIT_CHECKPOINTED, err
    assert "mpitrain: stopped by SIGTERM after step" in err
    stopped_at = json.loads((out / "checkpoints" / "latest").read_text())["step"]
    assert 40 <= stopped_at < 100

    resumed = run_mpi(4, train_args(out, *steps) + ["--resume", str(out / "checkpoints")], timeout=120)
    assert resumed.returncode == 0, resumed.output
    assert without_wall_time(records(out)) == without_wall_time(records(tmp_path / "full"))
    final = json.loads((out / "summary.json").read_text())
    assert final["final_loss"] == json.loads((tmp_path / "full" / "summary.json").read_text())["final_loss"]


def test_checkpoint_from_another_run_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    first = run_mpi(2, train_args(out, "train.steps=40", "run.reference=false") + ["--checkpoint-every", "20"],
                    timeout=60)
    assert first.returncode == 0, first.output
    ckpt = str(out / "checkpoints")
    other = run_mpi(2, train_args(tmp_path / "other", "train.steps=40", "run.reference=false", "step_size.value=0.4")
                    + ["--resume", ckpt], timeout=60)
    assert other.returncode == 2
    assert "mpitrain: error: resuming: all ranks: checkpoint" in other.stderr
    assert "was written with another configuration (differs in: step_size.value)" in other.stderr
    fewer = run_mpi(1, train_args(out, "train.steps=40", "run.reference=false") + ["--resume", ckpt], timeout=60)
    assert fewer.returncode == 2
    assert "was written by 2 ranks; this run has 1 (resume with the same number of ranks)" in fewer.stderr
    missing = run_mpi(2, train_args(out, "train.steps=40") + ["--resume", str(tmp_path / "nowhere")], timeout=60)
    assert missing.returncode == 2 and "no checkpoint at" in missing.stderr


def test_hierarchical_local_sgd_resumes_with_its_node_average_count(tmp_path):
    """Its checkpoint holds node_syncs besides the global syncs: a run resumed at step 50 reports
    the counts of the unbroken run (before, node_syncs restarted from 0)."""
    hierarchical = ("train.steps=100", "run.reference=false", "train.algorithm=hierarchical_local_sgd",
                    "hierarchical_local_sgd.ranks_per_node=1", "hierarchical_local_sgd.node_period=2",
                    "hierarchical_local_sgd.global_period=8")
    full = run_mpi(2, train_args(tmp_path / "full", *hierarchical), timeout=120)
    assert full.returncode == 0, full.output
    half = run_mpi(2, train_args(tmp_path / "half", *hierarchical, "train.steps=50", "run.checkpoint_every=50"),
                   timeout=120)
    assert half.returncode == 0, half.output
    resumed = run_mpi(2, train_args(tmp_path / "half", *hierarchical) + ["--resume", str(tmp_path / "half" / "checkpoints")],
                      timeout=120)
    assert resumed.returncode == 0, resumed.output
    unbroken = [{k: v for k, v in r.items() if k != "eval_comm_rounds"} for r in without_wall_time(records(tmp_path / "full"))]
    again = [{k: v for k, v in r.items() if k != "eval_comm_rounds"} for r in without_wall_time(records(tmp_path / "half"))]
    steps = {r["step"] for r in unbroken}
    assert [r for r in again if r["step"] in steps] == unbroken  # the half run's last record (step 50) stays
    assert unbroken[-1]["node_syncs"] > 0


def test_async_local_sgd_resumes_with_its_delay_counters_and_the_average_in_flight(tmp_path):
    """Its checkpoint holds the delay counters and an average still in flight (waited for, kept,
    applied at the next step): a resumed run finishes with the unbroken run's number of averages,
    and its delay statistics cover the whole run, not only the part after the resume."""
    run = ("train.steps=100", "run.reference=false", "train.algorithm=async_local_sgd", "async_local_sgd.period=8")
    full = run_mpi(2, train_args(tmp_path / "full", *run), timeout=120)
    assert full.returncode == 0, full.output
    first = run_mpi(2, train_args(tmp_path / "first", *run, "run.checkpoint_every=50"), timeout=120)
    assert first.returncode == 0, first.output
    folder = tmp_path / "first" / "checkpoints" / "step-00000050"
    with np.load(folder / "rank-00000.npz") as npz:
        state = json.loads(str(npz["state.json"]))
    assert "delay_count" in json.dumps(state), state  # the counters are in the checkpoint
    resumed = run_mpi(2, train_args(tmp_path / "resumed", *run) + ["--resume", str(folder)], timeout=120)
    assert resumed.returncode == 0, resumed.output
    last = records(tmp_path / "resumed")[-1]
    unbroken = records(tmp_path / "full")[-1]
    assert last["step"] == unbroken["step"] == 100 and last["syncs"] == unbroken["syncs"] == 12
    assert last["max_delay_seen"] >= records(tmp_path / "first")[2]["max_delay_seen"]  # carried on from step 40
    assert abs(last["loss"] - unbroken["loss"]) < 0.05 * unbroken["loss"]
