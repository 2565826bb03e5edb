"""``bench model`` (mpitrain.bench.model) without PyTorch: its step is mpitrain's SGD step, its rows
are the ones asked for, and a tiny ``--quick --json`` run reports a positive rate for mpitrain on
every row and None for PyTorch's columns when torch is not installed. A smoke test: nothing here is
timed against the target (tests/test_bench_model_torch.py runs the comparison itself)."""
import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain._native.vector import scaled_update
from mpitrain.bench import BENCHMARKS, DESCRIPTIONS
from mpitrain.bench import model

HAS_TORCH = importlib.util.find_spec("torch") is not None
TINY = ["--quick", "--hidden", "8", "--batch-size", "4", "--repeats", "1"]


def bench_model(*argv):
    """``python -m mpitrain bench model argv`` in a child process; the finished process."""
    return subprocess.run([sys.executable, "-m", "mpitrain", "bench", "model", *argv], capture_output=True,
                          text=True, timeout=300)


def test_model_bench_is_registered():
    assert BENCHMARKS["model"] == "mpitrain.bench.model:main"
    assert "PyTorch" in DESCRIPTIONS["model"]


def test_a_step_is_batch_gradient_then_scaled_update():
    problem = model.make_problem("float64", 6, "sparse", 5)
    ours = model.Ours(problem)
    x, grad = problem.x0.copy(), np.empty_like(problem.x0)
    for t in (0, 1, model.N_BATCHES + 1):  # batches are used in turn
        ours.step(t)
        problem.objective.batch_gradient(x, problem.batches[t % model.N_BATCHES], grad)
        scaled_update(x, grad, -model.STEP_SIZE)
    np.testing.assert_array_equal(ours.flat(), x)
    assert not np.array_equal(x, problem.x0)


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_problem_shapes_and_shared_batches(kind):
    single, double = (model.make_problem(dtype, 16, kind, 7) for dtype in ("float32", "float64"))
    objective = single.objective
    d = model.FEATURES[kind]
    assert (objective.n_samples, objective.n_features) == (model.N_ROWS, d)
    assert objective.hidden == (16,) and objective.n_classes == 10
    assert objective.n_params == (d + 1) * 16 + (16 + 1) * 10
    assert objective.dtype == np.float32 and double.objective.dtype == np.float64
    np.testing.assert_array_equal(single.batches, double.batches)  # the same rows for both dtypes
    assert single.batches.shape == (model.N_BATCHES, 7) and single.batches.dtype == np.int64
    np.testing.assert_allclose(single.x0, double.x0, rtol=1e-6)
    if kind == "sparse":
        assert objective.is_sparse and set(np.unique(objective.features.data)) == {1.0}
        assert abs(objective.features.nnz / (model.N_ROWS * d) - model.DENSITY) < 0.005
    else:
        assert not sp.issparse(objective.features)


@pytest.mark.parametrize("argv", [["--dtype", "float16"], ["--input", "dense,csc"], ["--hidden", "0"],
                                  ["--batch-size", "0"], ["--repeats", "0"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as stop:
        model.parse_args(argv)
    assert stop.value.code == 2


def test_quick_json_reports_every_row():
    result = bench_model(*TINY, "--json", "--dtype", "float32,float64", "--input", "dense,sparse")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    report = json.loads(lines[0])
    assert [(row["dtype"], row["hidden"], row["input"]) for row in report["rows"]] == [
        ("float32", 8, "dense"), ("float32", 8, "sparse"), ("float64", 8, "dense"), ("float64", 8, "sparse")]
    assert all(report["threads"][name] == "1" for name in model.THREAD_VARIABLES)  # run single-threaded
    assert report["batch_size"] == 4 and report["target_ratio"] == 1.0
    for row in report["rows"]:
        assert math.isfinite(row["ours_steps_per_second"]) and row["ours_steps_per_second"] > 0
        assert len(row["ours_rounds"]) == 1 and row["steps_per_block"] >= 1
    assert result.stderr.count("bench model: ") == 4  # one progress line a row
    if HAS_TORCH:
        return  # the torch columns: tests/test_bench_model_torch.py
    assert report["torch"] is None and report["all_met"] is None and "pip install torch" in report["note"]
    for row in report["rows"]:
        for key in ("torch_steps_per_second", "torch_rounds", "ratio", "met", "torch_input", "agreement"):
            assert row[key] is None, key


@pytest.mark.skipif(HAS_TORCH, reason="the table without torch (torch is installed here)")
def test_table_without_torch_says_how_to_get_it():
    result = bench_model(*TINY, "--dtype", "float64", "--input", "dense")
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("float64 h=8 dense"))
    assert row.split()[-4:] == ["n/a"] * 4
    assert "pip install torch" in result.stdout and "make .venv-torch/.deps" in result.stdout
    assert "single-threaded" in result.stdout
