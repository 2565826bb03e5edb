"""Progress of long work: the training line shows elapsed time and an ETA; a long set-up phase
(data, the f* solve) reports while it runs and when it is done; a short one says nothing."""
import io
import time

import numpy as np
from mpi4py import MPI

from mpitrain.metrics import ProgressLine, format_seconds
from mpitrain.progress import phase


def test_the_training_line_has_elapsed_time_and_an_eta():
    out = io.StringIO()
    line = ProgressLine(100, stream=out)
    line._started -= 10.0  # ten seconds ago
    line.update({"step": 25, "loss": 0.5, "suboptimality": None, "grad_norm": 0.1, "steps_per_second": 2.5})
    text = out.getvalue()
    assert "step  25/100" in text and "elapsed 10 s" in text and "ETA 30 s" in text  # 25 steps in 10 s, 75 left
    assert format_seconds(4.21) == "4.2 s" and format_seconds(720) == "12 min" and format_seconds(4 * 3600) == "4.0 h"


def test_a_resumed_runs_eta_counts_only_this_attempts_steps():
    out = io.StringIO()
    line = ProgressLine(100, stream=out, start_step=50)
    line._started -= 10.0
    line.update({"step": 75, "loss": 0.5, "suboptimality": None, "grad_norm": 0.1, "steps_per_second": 2.5})
    assert "ETA 10 s" in out.getvalue()


def test_a_long_phase_reports_while_it_runs_and_when_done():
    out = io.StringIO()
    with phase("solving for f*", stream=out, quiet=0.05, every=0.05) as running:
        running.note = "L-BFGS iteration 7"
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("mpitrain: solving for f*... 0 s (L-BFGS iteration 7)")
    assert lines[-1].startswith("mpitrain: solving for f*: done in 0.")
    assert len(lines) >= 3


def test_a_short_phase_says_nothing():
    out = io.StringIO()
    with phase("loading w8a", stream=out, quiet=5.0):
        pass
    assert out.getvalue() == ""


def test_the_f_star_solve_reports_its_iterations(tmp_path):
    from mpitrain.data.synthetic import synthetic_classification
    from mpitrain.objectives import make_objective
    from mpitrain.objectives.reference import reference_optimum
    from mpitrain.progress import Phase

    data = synthetic_classification(n_samples=400, n_features=20, density=0.3, seed=3)
    objective = make_objective("logistic", data.features, data.labels, 1e-3)
    running = Phase("solving for f*")
    solution = reference_optimum(objective, MPI.COMM_SELF, fingerprint="progress-test", cache_dir=tmp_path,
                                 progress=running)
    assert np.isfinite(solution.f_star)
    assert running.note.startswith("L-BFGS iteration ")


def test_an_asynchronous_run_reports_while_it_runs(tmp_path):
    from mpi_run import run_mpi

    args = ["-m", "mpitrain", "train", "--set", f"run.output_dir={tmp_path / 'run'}"] + [
        a for o in ("train.algorithm=async_sgd", "train.steps=4000", "run.log_every=1000", "run.reference=false",
                    "data.n_samples=2000", "data.n_features=50") for a in ("--set", o)]
    result = run_mpi(2, args, timeout=90)
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    running = [line for line in lines if "(running: evaluated after the run)" in line]
    replayed = [line for line in lines if line.endswith("(evaluated after the run)") and "loss" in line]
    assert running and replayed
    assert lines.index(running[-1]) < lines.index(replayed[0])  # the running lines come first, while it runs


def test_countdown_says_how_far_and_how_long_is_left():
    from mpitrain.progress import Countdown, duration

    now = [100.0]
    countdown = Countdown(4, clock=lambda: now[0])
    now[0] += 30
    assert countdown.tick() == "[1/4, 30 s, about 90 s left]"
    now[0] += 90  # 120 s for 2 rows: 60 s a row, 2 rows left
    assert countdown.tick() == "[2/4, 2 min, about 2 min left]"
    now[0] += 60
    countdown.tick()
    now[0] += 10
    assert countdown.tick() == "[4/4, 3 min, done]"
    assert [duration(s) for s in (0.4, 89, 600, 3600, 4500)] == ["0 s", "89 s", "10 min", "1 h", "1 h 15 min"]


def test_bench_compress_says_how_far_it_is_on_stderr_and_keeps_stdout_for_the_result():
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "mpitrain", "bench", "compress", "--size", "2000", "--repeat", "1",
                             "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    lines = [line for line in result.stderr.splitlines() if line.startswith("bench compress: ")]
    assert len(lines) == len(rows)
    assert f"[{len(rows)}/{len(rows)}, " in lines[-1] and lines[-1].endswith(" done]")
