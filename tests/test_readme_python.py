"""The README's "Using mpitrain from Python" example runs as printed, on one process and under
``mpiexec -n 2``."""
import re

from mpi_run import ROOT, run_mpi_script


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using mpitrain from Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_on_one_and_two_ranks(tmp_path):
    for ranks in (1, 2):
        result = run_mpi_script(ranks, readme_example(), tmp_path, timeout=120)
        assert result.returncode == 0, result.output
        line = [row for row in result.stdout.splitlines() if row.startswith("loss ")]
        assert len(line) == 1, result.stdout
        loss = float(line[0].split()[1].rstrip(","))
        assert 0 < loss < 0.6931  # below log 2, the loss at x = 0
