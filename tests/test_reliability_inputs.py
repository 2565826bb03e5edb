"""Bad input under ``mpiexec -n 2``: one clear message from rank 0 naming the field, file:line
or step, a non-zero exit, within seconds, never a hang.

Each case is a real training run; the data are tiny (synthetic or a few lines in a temporary
file) so that start-up dominates. ``WITHIN`` is the time a case must finish in, well under the
``TIMEOUT`` at which tests/mpi_run.py kills the job.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mpi_run import ROOT, Completed, mpi_env, mpiexec_path, run_mpi

TIMEOUT = 60  # seconds before the job is killed and the test fails
WITHIN = 20  # seconds a bad input may take to be reported (start-up of 2 ranks included)
SMALL = ["data.n_samples=2000", "data.n_features=50", "train.steps=60", "train.batch_size=8",
         "step_size.value=0.5", "run.log_every=20", "run.reference=false", "run.progress=false"]
EXIT_CONFIG, EXIT_DIVERGED = 2, 3


def train_args(out, *overrides):
    return ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}",
            *[arg for o in (*SMALL, *overrides) for arg in ("--set", o)]]


def timed(run, *args, **kwargs):
    started = time.monotonic()
    result = run(*args, **kwargs)
    return result, time.monotonic() - started


def error_line(result, elapsed, code=EXIT_CONFIG) -> str:
    """The one line rank 0 printed; checks the exit code, the silence of the others and the time."""
    assert result.returncode == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one message (rank 0 only), got:\n{result.stderr}"
    assert lines[0].startswith("mpitrain: error: "), lines[0]
    assert result.stdout == "", result.stdout
    assert elapsed < WITHIN, f"took {elapsed:.1f} s"
    return lines[0]


def libsvm(tmp_path, text, name="data.svm"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD_LINES = "".join(f"{1 if i % 2 else -1} 1:{i % 7} 2:1 3:0.5\n" for i in range(40))

# id, --set overrides, the message's distinctive part
CONFIG_CASES = [
    ("unknown-algorithm", ["train.algorithm=newton"],
     "config field 'train.algorithm': unknown algorithm 'newton'; known: sync_sgd"),
    ("unknown-compressor", ["train.algorithm=compressed_sgd", "compressed_sgd.compressor=top_q"],
     "config field 'compressed_sgd.compressor': must be one of"),
    ("k-zero", ["train.algorithm=compressed_sgd", "compressed_sgd.compressor=top_k", "compressed_sgd.k=0"],
     "config field 'compressed_sgd.k': must be >= 1, got 0"),
    ("k-above-d", ["train.algorithm=compressed_sgd", "compressed_sgd.compressor=top_k", "compressed_sgd.k=51"],
     "config field 'compressed_sgd.k': compressor 'top_k' for d = 50: k must be an integer with 1 <= k <= d = 50"),
    ("levels-zero", ["train.algorithm=compressed_sgd", "compressed_sgd.compressor=standard_dithering",
                     "compressed_sgd.levels=0"],
     "config field 'compressed_sgd.levels': must be >= 1, got 0"),
    ("period-zero", ["train.algorithm=local_sgd", "local_sgd.period=0"],
     "config field 'local_sgd.period': must be >= 1, got 0"),
    ("step-size-zero", ["step_size.value=0"], "config field 'step_size.value': must be > 0.0, got 0.0"),
    ("step-size-nan", ["step_size.value=nan"], "config field 'step_size.value': must be finite, got nan"),
    ("clip-negative", ["train.algorithm=compressed_sgd", "compressed_sgd.clip=-1"],
     "config field 'compressed_sgd.clip': must be >= 0.0, got -1.0"),
    ("async-clip-zero", ["train.algorithm=async_sgd", "async_sgd.clip=0"],
     "config field 'async_sgd.clip': must be > 0.0, got 0.0"),
    ("unknown-data-set", ["data.dataset=w9z"],
     "loading data: all ranks: 'w9z' is neither a file nor a known data set; registry names: a9a"),
]


@pytest.mark.parametrize("overrides, message", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_value(tmp_path, overrides, message):
    result, elapsed = timed(run_mpi, 2, train_args(tmp_path / "out", *overrides), timeout=TIMEOUT)
    assert message in error_line(result, elapsed)
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


# id, file contents, extra overrides, "file:line: what"
DATA_CASES = [
    ("missing-colon", GOOD_LINES + "+1 1:1 2\n", [], ":41: expected 'index:value', got '2' (missing ':')"),
    ("nan-value", "+1 1:1\n-1 1:0.5 3:nan\n" + GOOD_LINES, [], ":2: value 'nan' for feature index 3 is not finite"),
    ("inf-value", GOOD_LINES + "-1 2:-inf\n", [], ":41: value '-inf' for feature index 2 is not finite"),
    ("nan-label", GOOD_LINES + "nan 1:1\n", [], ":41: label 'nan' is not finite"),
    ("float32-overflow", GOOD_LINES + "+1 1:3e39\n", ["data.dtype=float32"],
     ":41: value '3e39' for feature index 1 is beyond the range of float32"),
]


@pytest.mark.parametrize("text, overrides, message", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_bad_data_file_names_file_and_line(tmp_path, text, overrides, message):
    data = libsvm(tmp_path, text)
    args = train_args(tmp_path / "out", f'data.dataset="{data}"', *overrides)
    result, elapsed = timed(run_mpi, 2, args, timeout=TIMEOUT)
    line = error_line(result, elapsed)
    assert line.startswith("mpitrain: error: loading data: all ranks: "), line
    assert f"{data}{message}" in line


def test_missing_data_file(tmp_path):
    missing = tmp_path / "nowhere" / "train.svm"
    result, elapsed = timed(run_mpi, 2, train_args(tmp_path / "out", f'data.dataset="{missing}"'), timeout=TIMEOUT)
    assert f"loading data: all ranks: '{missing}' is neither a file nor a known data set" in error_line(result, elapsed)


def run_mpmd(programs, timeout=TIMEOUT):
    """``mpiexec -n 1 python A : -n 1 python B ...``: one argument list per rank (MPMD)."""
    cmd = [mpiexec_path()]
    for i, args in enumerate(programs):
        cmd += ([":"] if i else []) + ["-n", "1", sys.executable, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mpi_env(),
                            cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"MPMD job did not finish within {timeout}s\n{out[-4000:]}\n{err[-4000:]}")
    return Completed(proc.returncode, out, err)


def test_config_that_differs_between_ranks(tmp_path):
    """Rank 1 was started with another step size: every rank stops, rank 0 names the field."""
    out = tmp_path / "out"
    result, elapsed = timed(run_mpmd, [train_args(out), train_args(out, "step_size.value=0.25")])
    line = error_line(result, elapsed)
    assert ("invalid configuration: the ranks were given different configurations: "
            "step_size.value is 0.25 on rank 1 but 0.5 on rank 0") in line
    assert not out.exists()


def test_step_size_too_large_diverges_and_names_the_step(tmp_path):
    args = train_args(tmp_path / "out", "data.dataset=synthetic-least-squares", "objective.name=least_squares",
                      "step_size.value=100", "train.steps=400")
    result, elapsed = timed(run_mpi, 2, args, timeout=TIMEOUT)
    line = error_line(result, elapsed, code=EXIT_DIVERGED)  # one line: no numpy overflow warnings either
    assert "training diverged: loss or gradient is not finite at step " in line
    assert "no checkpoint was kept (run.checkpoint_every = 0)" in line


def finite_checkpoint(folder, ranks):
    """Every floating array of every rank file in ``folder`` is finite; returns rank 0's x."""
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["ranks"] == ranks
    for rank in range(ranks):
        with np.load(folder / f"rank-{rank:05d}.npz") as npz:
            for name in npz.files:
                if np.issubdtype(npz[name].dtype, np.inexact):
                    assert np.isfinite(npz[name]).all(), (folder, rank, name)
    with np.load(folder / "rank-00000.npz") as npz:
        return npz["algorithm/x"]


@pytest.mark.parametrize("algorithm, bad_ranks", [("sync_sgd", "rank 0: algorithm/x; rank 1: algorithm/x"),
                                                  ("local_sgd", "rank 1: algorithm/x")])
def test_gradient_turning_nan_keeps_the_last_good_checkpoint(tmp_path, algorithm, bad_ranks):
    """Rank 1's iterate turns NaN at step 25 (so do its gradients): the run stops at the next
    check (the checkpoint due at step 30), writes no checkpoint from NaN, keeps step 20's, and
    a resumed run finishes from it. Local SGD averages only after step 32, so only rank 1 is bad."""
    out = tmp_path / "out"
    period = ["local_sgd.period=16"] if algorithm == "local_sgd" else []  # a section only where it is read
    args = train_args(out, f"train.algorithm={algorithm}", *period) + ["--checkpoint-every", "10"]
    result, elapsed = timed(run_mpi, 2, args, env={"MPITRAIN_FAULT": "nan:1:25"}, timeout=TIMEOUT)
    line = error_line(result, elapsed, code=EXIT_DIVERGED)
    kept = out / "checkpoints" / "step-00000020"
    assert f"training diverged: the algorithm state is not finite at step 30 ({bad_ranks})" in line
    assert "it was finite at step 20; no checkpoint was written from it" in line
    assert f"the last good checkpoint is {kept} (step 20); --resume {out / 'checkpoints'} continues from it" in line
    assert json.loads((out / "checkpoints" / "latest").read_text())["step"] == 20
    assert not (out / "checkpoints" / "step-00000030").exists()
    finite_checkpoint(kept, ranks=2)

    resumed = run_mpi(2, args + ["--resume", str(out / "checkpoints")], timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 60 and np.isfinite(summary["final_loss"])
    assert [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines()] == [0, 20, 40, 60]
