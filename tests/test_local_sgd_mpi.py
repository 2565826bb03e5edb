"""Local SGD and its variants under mpiexec: equalities with simpler algorithms, accounting, errors."""
import json

import numpy as np
import pytest

from mpi_run import run_mpi

SMALL = [
    "data.n_samples=2000", "data.n_features=50", "train.steps=48", "train.batch_size=8",
    "step_size.value=0.5", "run.log_every=24", "run.progress=false",
]


def train(tmp_path, ranks, name, *overrides, timeout=120):
    out = tmp_path / name
    args = ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}",
            *[arg for o in (*SMALL, *overrides) for arg in ("--set", o)]]
    result = run_mpi(ranks, args, timeout=timeout)
    assert result.returncode == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return np.load(out / "parameters.npy"), records


@pytest.mark.parametrize("ranks", [2, 4])
def test_period_one_is_synchronous_sgd(tmp_path, ranks):
    x_sync, rec_sync = train(tmp_path, ranks, "sync", "train.algorithm=sync_sgd", "run.reference=false")
    x_local, rec_local = train(tmp_path, ranks, "local", "train.algorithm=local_sgd", "local_sgd.period=1",
                               "run.reference=false")
    # the same iterates up to rounding: avg(x - eta g_k) versus x - eta avg(g_k)
    np.testing.assert_allclose(x_local, x_sync, rtol=1e-10, atol=1e-13)
    assert rec_local[-1]["comm_rounds"] == rec_sync[-1]["comm_rounds"] == 48


@pytest.mark.parametrize("ranks", [2, 4])
def test_period_equal_to_the_run_averages_once(tmp_path, ranks):
    _, rec = train(tmp_path, ranks, "once", "train.algorithm=local_sgd", "local_sgd.period=48",
                   "local_sgd.output=weighted")
    assert rec[-1]["comm_rounds"] == 1 and rec[-1]["syncs"] == 1
    assert rec[-1]["bytes_sent"] == 50 * 8
    assert rec[-1]["suboptimality"] < rec[0]["suboptimality"]


def test_hierarchical_with_equal_periods_is_flat_local_sgd(tmp_path):
    x_flat, _ = train(tmp_path, 4, "flat", "train.algorithm=local_sgd", "local_sgd.period=4", "run.reference=false")
    x_hier, rec = train(tmp_path, 4, "hier", "train.algorithm=hierarchical_local_sgd",
                        "hierarchical_local_sgd.node_period=4", "hierarchical_local_sgd.global_period=4",
                        "hierarchical_local_sgd.ranks_per_node=2", "run.reference=false")
    np.testing.assert_allclose(x_hier, x_flat, rtol=1e-12, atol=1e-14)
    assert rec[-1]["nodes"] == 2 and rec[-1]["syncs"] == 12 and rec[-1]["node_syncs"] == 0


def test_hierarchical_counts_node_and_global_rounds(tmp_path):
    _, rec = train(tmp_path, 4, "hier", "train.algorithm=hierarchical_local_sgd",
                   "hierarchical_local_sgd.node_period=2", "hierarchical_local_sgd.global_period=8",
                   "hierarchical_local_sgd.ranks_per_node=2")
    assert rec[-1]["syncs"] == 6 and rec[-1]["node_syncs"] == 18
    # rank 0 is a node leader: a node Allreduce per node sync, Reduce + Allreduce + Bcast per global sync
    assert rec[-1]["comm_rounds"] == 18 + 3 * 6
    assert rec[-1]["suboptimality"] < rec[0]["suboptimality"]


@pytest.mark.parametrize("ranks", [2, 4])
def test_async_without_local_steps_in_between_is_blocking(tmp_path, ranks):
    x_block, rec_block = train(tmp_path, ranks, "block", "train.algorithm=local_sgd", "local_sgd.period=4",
                               "run.reference=false")
    x_async, rec_async = train(tmp_path, ranks, "async", "train.algorithm=async_local_sgd",
                               "async_local_sgd.period=4", "async_local_sgd.max_delay=0", "run.reference=false")
    np.testing.assert_allclose(x_async, x_block, rtol=1e-12, atol=1e-14)
    assert rec_async[-1]["comm_rounds"] == rec_block[-1]["comm_rounds"] == 12
    assert rec_async[-1]["max_delay_seen"] == 0


@pytest.mark.parametrize("ranks", [2, 4])
def test_async_local_sgd_converges(tmp_path, ranks):
    _, rec = train(tmp_path, ranks, "async", "train.algorithm=async_local_sgd", "async_local_sgd.period=4",
                   "train.steps=200", "run.log_every=100")
    assert rec[-1]["suboptimality"] < rec[0]["suboptimality"] / 3, rec
    assert 0 <= rec[-1]["mean_delay"] <= 4 and rec[-1]["max_delay_seen"] <= 4
    assert rec[-1]["comm_rounds"] == 50


def test_ranks_per_node_must_divide_the_ranks(tmp_path):
    args = ["-m", "mpitrain", "train", "--set", f"run.output_dir={tmp_path}/out",
            *[a for o in (*SMALL, "train.algorithm=hierarchical_local_sgd",
                          "hierarchical_local_sgd.ranks_per_node=3", "run.reference=false") for a in ("--set", o)]]
    result = run_mpi(4, args, timeout=60)
    assert result.returncode == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["mpitrain: error: config field 'hierarchical_local_sgd.ranks_per_node': 3 ranks per node "
                     "does not divide the 4 ranks of the job"], result.stderr


def test_bad_period_stops_every_rank_with_one_message(tmp_path):
    args = ["-m", "mpitrain", "train", "--set", f"run.output_dir={tmp_path}/out",
            *[a for o in (*SMALL, "train.algorithm=local_sgd", "local_sgd.period=0") for a in ("--set", o)]]
    result = run_mpi(2, args, timeout=60)
    assert result.returncode == 2, result.output
    assert "config field 'local_sgd.period': must be >= 1, got 0" in result.stderr
