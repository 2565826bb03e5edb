"""Without PyTorch: the core package never imports it, and asking for objective.name = "torch" is one
clear line (make_objective, and `mpitrain train` on every rank) instead of a traceback. Runs in .venv,
which has no torch; where torch is installed, its absence is simulated (sys.modules) or the test
that needs a torch-less interpreter skips."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from mpi_run import ROOT, mpi_env
from mpitrain.objectives import TORCH_MISSING, MissingPyTorch, make_objective

LINE = "objective.name = 'torch' needs PyTorch: pip install 'mpitrain[torch]'"
HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_make_objective_torch_without_pytorch_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError, as without it
    assert TORCH_MISSING == LINE
    features, labels = np.eye(3), np.array([0.0, 1.0, 2.0])
    with pytest.raises(ImportError) as caught:
        make_objective("torch", features, labels, 0.0, model="pkg.mod:build")
    assert str(caught.value) == LINE and isinstance(caught.value, (MissingPyTorch, ValueError))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_core_package_never_imports_torch():
    code = ("import sys, mpitrain.cli, mpitrain.train, mpitrain.objectives, mpitrain.config, mpitrain.problem; "
            "mpitrain.cli.build_parser(); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=mpi_env(),
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.skipif(HAS_TORCH, reason="needs an interpreter without torch (.venv)")
def test_train_with_objective_torch_without_pytorch_says_so_in_one_line(tmp_path):
    args = ["data.dataset=synthetic-multiclass", "data.n_samples=200", "data.n_features=5", "data.n_classes=3",
            "objective.name=torch", "objective.model=torch_models:mlp", "train.steps=2", "run.progress=false",
            f"run.output_dir={tmp_path / 'run'}"]
    result = subprocess.run([sys.executable, "-m", "mpitrain", "train", *[a for o in args for a in ("--set", o)]],
                            capture_output=True, text=True, timeout=120, env=mpi_env(), cwd=ROOT)
    assert result.returncode != 0
    assert f"building the objective: {LINE}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
