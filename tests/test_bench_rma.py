"""The RMA benchmark runs with tiny sizes and prints one valid JSON object on rank 0."""
import json

from mpi_run import run_mpi


def test_bench_rma_prints_json():
    result = run_mpi(2, ["-m", "mpitrain.bench.rma", "--json", "--sizes", "1000,10000",
                         "--seconds", "0.05", "--compute", "0.3"], timeout=60)
    assert result.returncode == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    report = json.loads(lines[0])
    assert [r["d"] for r in report["sizes"]] == [1000, 10000]
    for row in report["sizes"]:
        for layout in ("sharded", "server"):
            assert row[f"{layout}_pushes_per_s"] > 0 and row[f"{layout}_ratio_latency"] > 0
    assert report["progress"]["bare_lock_worst_s"] >= 0


def test_bench_rma_is_registered():
    from mpitrain.bench import BENCHMARKS
    assert BENCHMARKS["rma"] == "mpitrain.bench.rma:main"
