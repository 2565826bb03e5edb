"""``bench steps`` (mpitrain.bench.steps): its C reference loop computes the textbook SGD step,
and the bench runs at K = 1 and 2 and reports a finite positive rate for every row. A smoke
test: nothing here is timed or compared with a target."""
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from mpi_run import ROOT, mpi_env
from mpitrain._native.reference_loop import reference_loop
from mpitrain.bench.steps_methods import METHODS


def small_problem(n=20, d=7, seed=0):
    rng = np.random.default_rng(seed)
    a = sp.random(n, d, density=0.4, format="csr", random_state=seed, dtype=np.float64)
    a.indices, a.indptr = a.indices.astype(np.int32), a.indptr.astype(np.int32)
    y = rng.choice([-1.0, 1.0], size=n)
    return a, y, 0.1 * rng.standard_normal(d)


def numpy_steps(a, y, x, rows, b, eta, lam):
    """The same math in NumPy: g = (1/b) sum_i -y_i sigmoid(-y_i a_i.x) a_i + lam x; x -= eta g."""
    dense = a.toarray()
    for batch in rows.reshape(-1, b):
        z = dense[batch] @ x
        c = -y[batch] / (1.0 + np.exp(y[batch] * z))
        g = dense[batch].T @ c / b + lam * x
        x = x - eta * g
    return x, g


def test_reference_loop_is_the_textbook_step_on_given_rows():
    a, y, x0 = small_problem()
    steps, b, eta, lam = 4, 5, 0.7, 0.05
    rows = np.random.default_rng(1).integers(0, a.shape[0], size=steps * b)
    rows[:3] = 2  # repeats, as in sampling with replacement
    x, g = x0.copy(), np.empty_like(x0)
    reference_loop(a.data, a.indices, a.indptr, y, x, steps, b, eta, lam, 0, rows=rows, g=g)
    x_np, g_np = numpy_steps(a, y, x0.copy(), rows, b, eta, lam)
    np.testing.assert_allclose(x, x_np, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g, g_np, rtol=1e-12, atol=1e-15)


def test_reference_loop_draws_rows_from_its_seed():
    a, y, x0 = small_problem()
    runs = {}
    for seed in (3, 3, 4):
        x = x0.copy()
        reference_loop(a.data, a.indices, a.indptr, y, x, 10, 4, 0.5, 0.01, seed)
        runs.setdefault(seed, []).append(x)
    assert np.array_equal(runs[3][0], runs[3][1])
    assert not np.array_equal(runs[3][0], runs[4][0]) and np.isfinite(runs[4][0]).all()
    with pytest.raises(IndexError):
        reference_loop(a.data, a.indices, a.indptr, y, x0.copy(), 1, 2, 0.5, 0.01, 0,
                       rows=np.array([0, a.shape[0]], dtype=np.int64))


def w8a_available() -> bool:
    return (Path(mpi_env()["MPITRAIN_DATA"]) / "w8a").is_file()


@pytest.mark.skipif(not w8a_available(), reason="w8a not found: set MPITRAIN_DATA to the directory holding it")
def test_bench_steps_reports_a_rate_for_every_row_at_one_and_two_ranks():
    cmd = [sys.executable, "-m", "mpitrain", "bench", "steps", "--seconds", "0.05", "--ranks", "1,2", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mpi_env(),
                            cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("bench steps did not finish within 120 s")
    assert proc.returncode == 0, out + err
    report = json.loads(out)
    assert report["cpu"] and "bench steps" in report["command"]
    assert [run["ranks"] for run in report["runs"]] == [1, 2]
    methods = [method.name for method in METHODS]
    for run in report["runs"]:
        rows = {row["name"]: row for row in run["rows"]}
        references = ["C reference", "C step, one Python call a step"]
        if run["ranks"] > 1:
            references += ["bare Allreduce", "C step + bare Allreduce"]
        assert list(rows) == references + methods
        for row in rows.values():
            assert math.isfinite(row["steps_per_second"]) and row["steps_per_second"] > 0, row
            if row["kind"] == "local":
                assert math.isfinite(row["local_steps_per_second"]) and row["local_steps_per_second"] > 0, row
            if row["name"] != "bare Allreduce":
                assert row["ratio_c"] > 0, row
        if run["ranks"] > 1:
            assert all(rows[name]["ratio_floor"] > 0 for name in methods + ["C step + bare Allreduce"])
