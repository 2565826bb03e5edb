"""``bench model`` against PyTorch: the torch model starts from the same weights and computes the
same loss and gradient in every input form, takes the same SGD step (weight decay = l2), the
agreement check fails loudly on a mismatch, and a ``--quick`` run reports both implementations'
rates on every row. No timing assertions. Skips where torch is not installed (make test-torch)."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from mpitrain.bench import model

torch = pytest.importorskip("torch")

FORMS = {"dense": ["dense rows"], "sparse": list(model.TORCH_FORMS)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_both_agree_at_the_start_in_every_form(kind, dtype):
    problem = model.make_problem(dtype, 16, kind, 8)
    ours = model.Ours(problem)
    for form in FORMS[kind]:
        theirs = model.Torch(torch, problem, form)
        np.testing.assert_array_equal(theirs.flat(), problem.x0)  # the same weights, W = weight.T
        found = model.check_agreement(ours, theirs, dtype)
        assert found["loss"] < model.TOLERANCE[dtype] and found["gradient"] < model.TOLERANCE[dtype], form


@pytest.mark.parametrize("form", model.TORCH_FORMS)
def test_steps_follow_the_same_trajectory(form):
    problem = model.make_problem("float64", 16, "sparse", 8)
    ours, theirs = model.Ours(problem), model.Torch(torch, problem, form)
    for t in range(5):
        ours.step(t)
        theirs.step(t)
    assert model.relative_difference(ours.flat(), theirs.flat()) < 1e-10
    assert model.relative_difference(ours.flat(), problem.x0) > 1e-6  # the steps moved x


def test_a_disagreement_stops_the_bench():
    problem = model.make_problem("float64", 16, "dense", 8)
    theirs = model.Torch(torch, problem, "dense rows")
    with torch.no_grad():
        theirs.second.bias.add_(0.01)
    with pytest.raises(model.AgreementError, match="disagree"):
        model.check_agreement(model.Ours(problem), theirs, "float64")


def test_quick_run_reports_both_numbers_on_every_row():
    result = subprocess.run([sys.executable, "-m", "mpitrain", "bench", "model", "--quick", "--json", "--hidden", "8",
                             "--batch-size", "4", "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["torch"] == torch.__version__ and report["threads"]["torch"] == 1
    assert isinstance(report["all_met"], bool)
    assert len(report["rows"]) == 4
    for row in report["rows"]:
        for key in ("ours_steps_per_second", "torch_steps_per_second", "ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, key
        assert row["met"] == (row["ratio"] >= model.TARGET)
        assert row["agreement"]["loss"] < row["agreement"]["tolerance"] == model.TOLERANCE[row["dtype"]]
        assert row["agreement"]["gradient"] < row["agreement"]["tolerance"]
        assert row["torch_input"] in FORMS[row["input"]]
        if row["input"] == "sparse":
            assert set(row["torch_input_trial"]) == set(model.TORCH_FORMS)
            assert row["torch_input"] == max(row["torch_input_trial"], key=row["torch_input_trial"].get)
