"""The README's "Using mpitrain from Python" examples run as printed: the first on one process and
under ``mpiexec -n 2``, the second (4 ranks in one process) as a plain Python script."""
import re
import subprocess
import sys

from mpi_run import ROOT, run_mpi_script


def readme_example(index: int = 0) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using mpitrain from Python"):text.index("## One example per method")]
    return re.findall(r"```python\n(.*?)```", section, re.S)[index]


def test_the_readme_example_runs_on_one_and_two_ranks(tmp_path):
    for ranks in (1, 2):
        result = run_mpi_script(ranks, readme_example(), tmp_path, timeout=120)
        assert result.returncode == 0, result.output
        line = [row for row in result.stdout.splitlines() if row.startswith("loss ")]
        assert len(line) == 1, result.stdout
        loss = float(line[0].split()[1].rstrip(","))
        assert 0 < loss < 0.6931  # below log 2, the loss at x = 0


def test_the_readme_in_process_example_runs(tmp_path):
    script = tmp_path / "in_process.py"
    script.write_text(readme_example(1))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loss, bits = re.fullmatch(r"loss (\S+) on rank 0's rows, (\d+) bits sent by each rank\n", result.stdout).groups()
    assert 0 < float(loss) < 0.6931  # below log 2, the loss at x = 0
    assert int(bits) == 500 * (10 * 32)  # 500 exchanges of Rand-k's 10 float32 values (the seed does not travel)
