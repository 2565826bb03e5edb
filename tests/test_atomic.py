"""Results are written whole or not at all (mpitrain.atomic), and an experiment does not
overwrite an earlier run's results without --overwrite (mpitrain.experiments.outputs)."""
import os
import stat
import subprocess
import sys

import pytest

from mpitrain.atomic import replacing, write_json, write_text
from mpitrain.experiments import outputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"step": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(path) as handle:
            handle.write('{"step": 2, "loss"')  # half a record
            raise RuntimeError("disk full")
    assert path.read_text() == '{\n  "step": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_write_replaces_the_file_whole_with_the_usual_permissions(tmp_path):
    path = tmp_path / "table.md"
    write_text(path, "old\n")
    write_text(path, "new\n", durable=True)
    assert path.read_text() == "new\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # readable by the group, as open() gives
    with replacing(tmp_path / "data.bin", "wb") as handle:
        handle.write(b"\x00\x01")
    assert (tmp_path / "data.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "table.md"]


def test_an_experiment_folder_with_results_is_refused_without_overwrite(tmp_path):
    assert outputs.refusal(tmp_path / "new", ("speedup.md",), overwrite=False) is None
    assert (tmp_path / "new").is_dir()
    (tmp_path / "new" / "speedup.md").write_text("an earlier run's table")
    (tmp_path / "new" / "notes.txt").write_text("the user's own file")
    line = outputs.refusal(tmp_path / "new", ("speedup.md", "speedup.json", "mpi-x*"), overwrite=False)
    assert line == (f"{tmp_path / 'new'} holds the results of an earlier run (speedup.md); pass --overwrite to "
                    "replace them, or choose another --out")
    assert outputs.refusal(tmp_path / "new", ("speedup.md",), overwrite=True) is None
    (tmp_path / "file").write_text("")
    assert outputs.refusal(tmp_path / "file", ("x",), overwrite=True) == f"--out {tmp_path / 'file'} is a file, not a folder"


@pytest.mark.parametrize("name, result", [("local-sgd-speedup", "speedup.json"), ("compression-bits", "bits.png"),
                                          ("async-stragglers", "mpi-x16-clip-s0"),
                                          ("async-stragglers-mlp", "results.json")])
def test_each_experiment_refuses_at_once_to_overwrite_results(tmp_path, name, result):
    (tmp_path / result).mkdir() if result.startswith("mpi-") else (tmp_path / result).write_text("earlier")
    done = subprocess.run([sys.executable, "-m", "mpitrain", "experiment", name, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"mpitrain: error: {tmp_path} holds the results of an earlier run ({result}); "
                                        "pass --overwrite to replace them, or choose another --out"], done.stderr
    assert done.stdout == ""
