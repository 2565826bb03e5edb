"""`python -m mpitrain bench allreduce` under mpiexec: it runs and reports a ratio per size."""
import json

from mpi_run import run_mpi


def test_bench_allreduce_reports_every_size(tmp_path):
    result = run_mpi(2, ["-m", "mpitrain", "bench", "allreduce", "--json", "--sizes", "1e3,1e4", "--repeats", "3"],
                     timeout=60)
    assert result.returncode == 0, result.output
    report = json.loads(result.stdout)
    assert report["ranks"] == 2
    assert [row["d"] for row in report["rows"]] == [1000, 10000]
    for row in report["rows"]:
        assert row["bare_seconds"] > 0 and row["averager_seconds"] > 0 and row["ratio_averager"] > 0


def test_bench_allreduce_prints_a_table():
    result = run_mpi(2, ["-m", "mpitrain.bench.allreduce", "--sizes", "1e3", "--repeats", "2"], timeout=60)
    assert result.returncode == 0, result.output
    assert "ratio" in result.stdout and result.stdout.count("1000") == 1
