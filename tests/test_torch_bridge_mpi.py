"""The PyTorch bridge under mpiexec (2 ranks, in the venv that has torch: make test-torch).

A torch MLP (tests/torch_models.py: Linear-ReLU-Linear started at the built-in mlp's own initial
point) trained through ``objective.name = "torch"`` follows the built-in ``objective.name = "mlp"``
run step for step: the same metrics (loss, gradient norm, accuracy) to a relative 1e-10 and the
same final parameters (the layouts differ by a transpose), for sync_sgd and local_sgd. A bridge
run stopped at a checkpoint and resumed ends with the metrics of a run never stopped, and
``mpitrain.torch.train`` from Python makes the run the config makes. Skips without torch.
"""
import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")

from mpi_run import ROOT, run_mpi, run_mpi_script  # noqa: E402
from torch_models import bridge_to_builtin  # noqa: E402

N_FEATURES, N_CLASSES = 10, 3
COMMON = ["data.dataset=synthetic-multiclass", "data.n_samples=400", f"data.n_features={N_FEATURES}",
          f"data.n_classes={N_CLASSES}", "objective.hidden=[8]", "train.steps=20", "train.batch_size=8",
          "step_size.value=0.2", "run.log_every=5", "run.progress=false", "run.reference=false"]
BRIDGE = ["objective.name=torch", "objective.model=torch_models:mlp"]
BUILTIN = ["objective.name=mlp"]
ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}  # torch_models importable on every rank
WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}
NUMBERS = ("loss", "grad_norm", "accuracy")
TOLERANCE = 1e-10


def train(out, *overrides, extra=()):
    result = run_mpi(2, ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}",
                         *[a for o in (*COMMON, *overrides) for a in ("--set", o)], *extra], timeout=120, env=ENV)
    assert result.returncode == 0, result.output
    return out


METHODS = {"sync_sgd": ["train.algorithm=sync_sgd"],
           "local_sgd": ["train.algorithm=local_sgd", "local_sgd.period=4", "run.checkpoint_every=10"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs(model, algorithm): the folder of that 20-step run, made once for the module's tests."""
    root, made = tmp_path_factory.mktemp("runs"), {}

    def get(model, algorithm):
        if (model, algorithm) not in made:
            made[model, algorithm] = train(root / f"{model}-{algorithm}", *(BRIDGE if model == "bridge" else BUILTIN),
                                           *METHODS[algorithm])
        return made[model, algorithm]
    return get


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without_wall_time(recs):
    return [{k: v for k, v in r.items() if k not in WALL_TIME} for r in recs]


def assert_same_run(bridge, builtin, tolerance=TOLERANCE):
    """Every record: the numbers within ``tolerance`` (relative), every other field equal."""
    ours, theirs = without_wall_time(records(bridge)), without_wall_time(records(builtin))
    assert [r["step"] for r in ours] == [r["step"] for r in theirs] == [0, 5, 10, 15, 20]
    for a, b in zip(ours, theirs):
        for key in NUMBERS:
            assert abs(a[key] - b[key]) <= tolerance * abs(b[key]), (a["step"], key, a[key], b[key])
        assert {k: v for k, v in a.items() if k not in NUMBERS} == {k: v for k, v in b.items() if k not in NUMBERS}


@pytest.mark.parametrize("algorithm", ["sync_sgd", "local_sgd"])
def test_a_bridge_run_follows_the_builtin_mlp(runs, algorithm):
    bridge, builtin = runs("bridge", algorithm), runs("builtin", algorithm)
    assert_same_run(bridge, builtin)
    ours = np.load(bridge / "parameters.npy")
    theirs = np.load(builtin / "parameters.npy")
    mapped = bridge_to_builtin(ours, N_FEATURES, N_CLASSES)
    assert np.abs(mapped - theirs).max() <= TOLERANCE * np.abs(theirs).max()
    summary = json.loads((bridge / "summary.json").read_text())
    assert summary["n_params"] == ours.shape[0] == theirs.shape[0] and summary["final_accuracy"] is not None


def test_a_resumed_bridge_run_continues_as_one_unbroken_run(runs, tmp_path):
    full = runs("bridge", "local_sgd")  # checkpoints every 10 steps, never stopped
    stopped = train(tmp_path / "stopped", *BRIDGE, *METHODS["local_sgd"], "train.steps=10")
    assert json.loads((stopped / "checkpoints" / "latest").read_text())["step"] == 10
    train(stopped, *BRIDGE, *METHODS["local_sgd"], extra=["--resume", str(stopped / "checkpoints")])
    # eval_comm_rounds counts this process's evaluation averages: a checkpoint does not carry it (as for
    # every local_sgd run, the built-in models' too), so the resumed process counts from 0 again
    unbroken = [{k: v for k, v in r.items() if k != "eval_comm_rounds"} for r in without_wall_time(records(full))]
    assert [{k: v for k, v in r.items() if k != "eval_comm_rounds"} for r in without_wall_time(records(stopped))] \
        == unbroken
    np.testing.assert_array_equal(np.load(stopped / "parameters.npy"), np.load(full / "parameters.npy"))


def test_mpitrain_torch_train_from_python_makes_the_configs_run(runs, tmp_path):
    from_config = runs("bridge", "sync_sgd")
    script = f"""
        import numpy as np, torch
        from mpi4py import MPI
        import mpitrain.torch
        from mpitrain.data import synthetic_multiclass
        from torch_models import mlp

        data = synthetic_multiclass(n_samples=400, n_features={N_FEATURES}, n_classes={N_CLASSES}, seed=0)
        model, loss_fn = mlp({N_FEATURES}, {N_CLASSES})
        summary = mpitrain.torch.train(model, loss_fn, (torch.from_numpy(data.features), data.labels),
                                       steps=20, batch_size=8, lr=0.2, log_every=5, progress=False,
                                       output_dir={str(tmp_path / "python")!r})
        x = np.load({str(tmp_path / "python" / "parameters.npy")!r})
        got = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()
        assert np.array_equal(got, x), "the model holds the final parameters"
        everyone = MPI.COMM_WORLD.allgather(got)
        assert np.array_equal(everyone[0], everyone[1]), "on every rank"
        assert summary["steps"] == 20 and model[0].weight.dtype == torch.float64
    """
    result = run_mpi_script(2, script, tmp_path, timeout=120, env=ENV)
    assert result.returncode == 0, result.output
    ours, theirs = without_wall_time(records(tmp_path / "python")), without_wall_time(records(from_config))
    assert ours == theirs
