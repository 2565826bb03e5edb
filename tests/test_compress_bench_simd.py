"""``bench compress`` names the CPU and the SIMD level of its run, ``--simd`` caps the level
of every kernel module for that run only, and the cap is undone afterwards."""
import json

import pytest

from mpitrain._native import compress_round, compress_select
from mpitrain.bench import compress as bench

SMALL = ["--size", "2000", "--repeat", "1"]


def widest():
    return bench.SIMD_LEVELS[compress_round.simd_level(2)]


@pytest.mark.parametrize("simd", bench.SIMD_LEVELS)
def test_json_rows_name_cpu_and_level(simd, capsys):
    assert bench.main(SMALL + ["--json", "--simd", simd]) == 0
    rows = json.loads(capsys.readouterr().out)
    top = bench.SIMD_LEVELS.index(widest())
    used = bench.SIMD_LEVELS[min(bench.SIMD_LEVELS.index(simd), top)]
    assert {row["simd"] for row in rows} == {used}
    assert {row["simd_widest"] for row in rows} == {widest()}
    assert all(row["cpu"] for row in rows)
    assert compress_round.simd_level() == compress_select.simd_level() == top  # undone


def test_table_header_names_cpu_and_level(capsys):
    assert bench.main(SMALL + ["--simd", "baseline"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("CPU: ") and "SIMD level: baseline" in first
    if widest() != "baseline":
        assert f"capped by --simd; this CPU has {widest()}" in first


def test_simd_is_for_the_cpu_kernels():
    with pytest.raises(SystemExit) as stop:
        bench.main(SMALL + ["--device", "gpu", "--simd", "avx2"])
    assert stop.value.code == 2
