"""The README's PyTorch examples run as written (shrunk): the convolutional network of
jobs/models/convnet.py through the bridge, with compressed Local SGD and with asynchronous SGD with
clipping, under mpiexec, from the repository's root (make test-torch; skips without torch)."""
import json
import os

import pytest

pytest.importorskip("torch")

from mpi_run import ROOT, run_mpi  # noqa: E402

SHRINK = ["data.n_samples=600", "train.steps=60", "run.log_every=30", "run.progress=false"]


@pytest.mark.parametrize("config", ["torch_convnet_compressed_local_sgd", "torch_convnet_async_sgd"])
def test_readme_convnet_example_trains(config, tmp_path):
    result = run_mpi(2, ["-m", "mpitrain", "train", "--config", str(ROOT / "jobs" / "configs" / f"{config}.toml"),
                         "--set", f"run.output_dir={tmp_path}", *[a for o in SHRINK for a in ("--set", o)]],
                     timeout=180, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.output
    assert "warning" not in result.output
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"] < records[0]["loss"]
    assert all(r["accuracy"] is not None and r["suboptimality"] is None for r in records)
    summary = json.loads((tmp_path / "summary.json").read_text())
    # two 3x3 convolutions of 8 channels, two GroupNorms, a linear layer from 8 x 8 x 8 to 10 classes
    assert summary["n_params"] == (8 * 9 + 8) + (8 * 8 * 9 + 8) + 2 * (8 + 8) + (8 * 64 * 10 + 10)
    assert os.path.exists(tmp_path / "parameters.npy")
