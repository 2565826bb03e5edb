"""`python -m mpitrain train` under mpiexec: it trains, rank 0 alone speaks, errors end the job."""
import json

import pytest

from mpi_run import run_mpi

SMALL = [
    "data.n_samples=2000", "data.n_features=50", "train.steps=60", "train.batch_size=8",
    "step_size.value=0.5", "run.log_every=20",
]


def train_args(tmp_path, *overrides):
    return ["-m", "mpitrain", "train", "--set", f"run.output_dir={tmp_path}/out",
            *[arg for o in (*SMALL, *overrides) for arg in ("--set", o)]]


def records(tmp_path):
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_train_writes_metrics_and_summary(tmp_path, ranks):
    result = run_mpi(ranks, train_args(tmp_path), timeout=120)
    assert result.returncode == 0, result.output
    recs = records(tmp_path)
    assert [r["step"] for r in recs] == [0, 20, 40, 60]
    for key in ("time", "loss", "suboptimality", "grad_norm", "bytes_sent", "compute_seconds", "comm_seconds"):
        assert key in recs[-1]
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert recs[-1]["suboptimality"] < recs[0]["suboptimality"]
    assert recs[-1]["suboptimality"] >= -1e-9
    expected_bytes = 0 if ranks == 1 else 60 * 50 * 8
    assert recs[-1]["bytes_sent"] == expected_bytes
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ranks"] == ranks and summary["steps"] == 60
    assert (tmp_path / "out" / "parameters.npy").exists()
    # rank 0 alone speaks: 4 progress lines and a 4-line summary, once
    progress = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(progress) == 4, result.stdout
    assert result.stdout.count("mpitrain: sync_sgd on") == 1
    assert result.stderr == ""


def test_bad_config_value_stops_every_rank_with_one_message(tmp_path):
    result = run_mpi(4, train_args(tmp_path, "train.batch_size=0"), timeout=60)
    assert result.returncode == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["mpitrain: error: invalid configuration: all ranks: config field 'train.batch_size': must be >= 1, got 0"], result.stderr
    assert not (tmp_path / "out").exists()


def test_exception_on_one_rank_ends_the_job(tmp_path):
    result = run_mpi(4, train_args(tmp_path, "train.steps=100000", "run.reference=false"),
                     env={"MPITRAIN_FAULT": "raise:2:5"}, timeout=60)
    assert result.returncode != 0
    assert "mpitrain: rank 2: RuntimeError: injected fault at step 5" in result.stderr


def test_divergence_stops_with_the_step(tmp_path):
    result = run_mpi(2, train_args(tmp_path, "run.reference=false"), env={"MPITRAIN_FAULT": "nan:0:30"}, timeout=60)
    assert result.returncode == 3, result.output
    assert "training diverged: loss or gradient is not finite at step 40" in result.stderr


def test_plot_writes_png(tmp_path):
    assert run_mpi(2, train_args(tmp_path), timeout=120).returncode == 0
    import subprocess
    import sys

    png = tmp_path / "plot.png"
    out = subprocess.run([sys.executable, "-m", "mpitrain", "plot", str(tmp_path / "out" / "metrics.jsonl"), "-o", str(png)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_broken_data_line_names_file_and_line(tmp_path):
    data = tmp_path / "broken.svm"
    data.write_text("+1 1:0.5 3:1\n-1 2:1\n+1 4:x\n-1 1:1\n")
    result = run_mpi(2, train_args(tmp_path, f"data.dataset=\"{data}\""), timeout=60)
    assert result.returncode == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mpitrain: error: loading data: all ranks: ")
    assert f"{data}:3:" in lines[0]


def test_broken_line_seen_by_one_rank_of_a_partitioned_read(tmp_path):
    data = tmp_path / "broken.svm"
    good = "".join(f"{1 if i % 2 else -1} 1:{i} 2:1\n" for i in range(40))
    data.write_text(good + "+1 1:1 1:2\n")  # repeated index on line 41, in the last rank's part
    result = run_mpi(2, train_args(tmp_path, f"data.dataset=\"{data}\"", "data.read=partitioned"), timeout=60)
    assert result.returncode == 2, result.output
    assert "loading data: rank 1: " in result.stderr and f"{data}:41:" in result.stderr


def test_missing_data_set_says_where_to_put_it(tmp_path):
    result = run_mpi(2, train_args(tmp_path, "data.dataset=a9a"),
                     env={"MPITRAIN_DATA": str(tmp_path / "nodata"), "MPITRAIN_CACHE": str(tmp_path / "cache")}, timeout=120)
    assert result.returncode == 2, result.output
    assert "a9a" in result.stderr and str(tmp_path / "nodata") in result.stderr
