"""Softmax regression and the MLP trained end to end under mpiexec, by every algorithm.

What is pinned: every method lowers an MLP's loss on synthetic-multiclass and reports accuracy
in every record and no suboptimality (no f* for a network); n_params is the layout's count
(sum_l (s_{l-1} + 1) s_l); softmax starts at x = 0 (loss log C); the binary (tanh + logistic)
and regression (squared) heads train, in float32 as in float64 (the float32 run follows the
float64 one and sends half the bytes); the step-0 loss is the loss of
``initial_point(init_seed)`` over the whole data set (so every rank starts there, averaged
models included); sync SGD is bit-reproducible; a checkpointed and resumed run ends with the
metrics of an uninterrupted one; bad models and labels stop with one line; class labels that
are not 0-based map alike on ranks that each hold one class. Runs are small (3000 x 20, hidden
[16], 600 steps) and shared through one module fixture.
"""
import json
import math

import numpy as np
import pytest

from mpi_run import ROOT, run_mpi
from mpitrain.config import load_config
from mpitrain.data import all_distinct_labels, classes_of_union, open_dataset, shard, to_class_indices
from mpitrain.objectives import make_objective

WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}
N_SAMPLES, N_FEATURES, N_CLASSES, HIDDEN, STEPS = 3000, 20, 5, 16, 600
MULTICLASS = [f"data.n_samples={N_SAMPLES}", f"data.n_features={N_FEATURES}", f"data.n_classes={N_CLASSES}",
              "data.dataset=synthetic-multiclass"]
MLP = [*MULTICLASS, "objective.name=mlp", f"objective.hidden=[{HIDDEN}]"]
RUN = [f"train.steps={STEPS}", "train.batch_size=16", "step_size.value=0.2", "run.log_every=150",
       "run.progress=false"]

# each algorithm with its own option section only (another's would print a warning line)
ALGORITHMS = {
    "sync_sgd": [],
    "local_sgd": ["local_sgd.period=4"],
    "hierarchical_local_sgd": ["hierarchical_local_sgd.ranks_per_node=1", "hierarchical_local_sgd.node_period=2",
                               "hierarchical_local_sgd.global_period=8"],
    "async_local_sgd": ["async_local_sgd.period=4"],
    "compressed_sgd": ["compressed_sgd.compressor=top_k", "compressed_sgd.ratio=0.1",
                       "compressed_sgd.error_feedback=ef"],
    "compressed_local_sgd": ["compressed_local_sgd.period=4"],
    "async_sgd": ["async_sgd.clip=0.5"],
}

# objective, head and data of section 2, each in both dtypes
MODELS = {
    "softmax": [*MULTICLASS, "objective.name=softmax"],
    "mlp_tanh_logistic": [f"data.n_samples={N_SAMPLES}", f"data.n_features={N_FEATURES}", "data.density=0.3",
                          "data.dataset=synthetic-classification", "objective.name=mlp",
                          f"objective.hidden=[{HIDDEN}]", "objective.activation=tanh", "objective.head=logistic"],
    "mlp_squared": [f"data.n_samples={N_SAMPLES}", f"data.n_features={N_FEATURES}",
                    "data.dataset=synthetic-least-squares", "objective.name=mlp", f"objective.hidden=[{HIDDEN}]",
                    "objective.head=squared"],
}


def n_params(n_features, hidden, n_outputs):
    """sum_l (s_{l-1} + 1) s_l over the widths (n_features, *hidden, n_outputs): weights and biases."""
    sizes = (n_features, *hidden, n_outputs)
    return sum((n_in + 1) * n_out for n_in, n_out in zip(sizes, sizes[1:]))


MLP_PARAMS = n_params(N_FEATURES, [HIDDEN], N_CLASSES)


def train(out, ranks, overrides, *flags, timeout=120):
    """``mpiexec -n ranks python -m mpitrain train`` into ``out``; the Completed result."""
    args = ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}",
            *[arg for o in overrides for arg in ("--set", o)], *flags]
    return run_mpi(ranks, args, timeout=timeout)


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summary(out):
    return json.loads((out / "summary.json").read_text())


def without_wall_time(recs):
    return [{k: v for k, v in r.items() if k not in WALL_TIME} for r in recs]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """run(name, overrides, ranks=2): the output folder of a successful training run, each name run
    once per module (the tests share the runs of ALGORITHMS and MODELS)."""
    root = tmp_path_factory.mktemp("models")
    done = {}

    def run(name, overrides, ranks=2):
        if name not in done:
            result = train(root / name, ranks, overrides)
            assert result.returncode == 0, result.output
            assert result.stderr == "", result.stderr  # no warning line either
            done[name] = root / name
        return done[name]

    return run


def whole_data_loss(init_seed, dtype="float64"):
    """F(initial_point(init_seed)) over the whole synthetic-multiclass set, in this process: the
    labels coded as the run codes them, l2 = 1/N (the default "1/n")."""
    data = open_dataset("synthetic-multiclass", dtype=np.dtype(dtype), raw_labels=True,
                        synthetic=dict(n_samples=N_SAMPLES, n_features=N_FEATURES, n_classes=N_CLASSES, seed=0))
    labels = to_class_indices(data.labels, classes_of_union([all_distinct_labels(data.labels)]))
    objective = make_objective("mlp", data.features, labels, 1.0 / N_SAMPLES, hidden=(HIDDEN,),
                               activation="relu", head="softmax", n_classes=N_CLASSES)
    assert objective.n_params == MLP_PARAMS
    return objective.loss(objective.initial_point(init_seed))


# --- 1. every algorithm trains the MLP ----------------------------------------------------------

@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_every_algorithm_trains_the_mlp(runs, algorithm):
    out = runs(algorithm, [*MLP, *RUN, f"train.algorithm={algorithm}", *ALGORITHMS[algorithm]])
    recs = records(out)
    assert recs[0]["step"] == 0 and recs[-1]["step"] >= STEPS  # async_sgd counts pushes over all workers
    for rec in recs:
        assert rec["suboptimality"] is None
        assert rec["accuracy"] is not None and 0.0 <= rec["accuracy"] <= 1.0
    assert recs[-1]["loss"] < 0.5 * recs[0]["loss"]
    assert recs[-1]["accuracy"] > 3.0 / N_CLASSES  # chance is 1 / C
    final = summary(out)
    assert final["n_params"] == MLP_PARAMS
    assert final["final_accuracy"] == recs[-1]["accuracy"] and final["final_loss"] == recs[-1]["loss"]
    assert final["final_suboptimality"] is None and final["f_star"] is None
    assert np.load(out / "parameters.npy").shape == (MLP_PARAMS,)


# --- 2. softmax, the logistic and squared heads, float32 and float64 ----------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", list(MODELS))
def test_models_and_heads_train(runs, model, dtype):
    out = runs(f"{model}-{dtype}", [*MODELS[model], *RUN, f"data.dtype={dtype}", "train.steps=400",
                                    "run.log_every=100"])
    recs = records(out)
    final = summary(out)
    assert all(r["suboptimality"] is None for r in recs)
    assert recs[-1]["loss"] < 0.5 * recs[0]["loss"]
    if model == "softmax":
        assert final["n_params"] == n_params(N_FEATURES, [], N_CLASSES)
        assert recs[0]["loss"] == pytest.approx(math.log(N_CLASSES), rel=1e-12)  # x0 = 0: uniform outputs
        assert recs[-1]["accuracy"] > 3.0 / N_CLASSES
    elif model == "mlp_tanh_logistic":
        assert final["n_params"] == n_params(N_FEATURES, [HIDDEN], 1)
        assert all(r["accuracy"] is not None for r in recs)
        assert recs[-1]["accuracy"] > 0.8  # labels -1/+1: chance is 1/2
    else:
        assert final["n_params"] == n_params(N_FEATURES, [HIDDEN], 1)
        assert all(r["accuracy"] is None for r in recs)  # a regression head has no accuracy
        assert final["final_accuracy"] is None
    x = np.load(out / "parameters.npy")
    assert x.dtype == np.dtype(dtype) and x.shape == (final["n_params"],)
    # sync SGD sends the parameters' dtype: n_params values a step
    assert recs[-1]["bytes_sent"] == 400 * final["n_params"] * np.dtype(dtype).itemsize


@pytest.mark.parametrize("model", list(MODELS))
def test_float32_follows_float64(runs, model):
    single, double = (records(runs(f"{model}-{dtype}", [*MODELS[model], *RUN, f"data.dtype={dtype}",
                                                          "train.steps=400", "run.log_every=100"]))
                      for dtype in ("float32", "float64"))
    assert [r["step"] for r in single] == [r["step"] for r in double]
    for a, b in zip(single, double):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)


# --- 3. initial point and determinism -----------------------------------------------------------

def test_step_zero_is_the_seeded_initial_point_on_every_rank(runs):
    """The step-0 loss of every method is F(initial_point(0)) computed here: for Local SGD (the
    evaluated model is the average of the ranks' models) and the RMA store of async SGD too,
    so no rank starts elsewhere."""
    expected = whole_data_loss(0)
    for algorithm, options in ALGORITHMS.items():
        out = runs(algorithm, [*MLP, *RUN, f"train.algorithm={algorithm}", *options])
        assert records(out)[0]["loss"] == pytest.approx(expected, rel=1e-12), algorithm


def test_another_init_seed_starts_elsewhere(runs):
    out = runs("init-seed-1", [*MLP, *RUN, "objective.init_seed=1", "train.steps=10", "run.log_every=10"])
    first = records(out)[0]["loss"]
    assert first == pytest.approx(whole_data_loss(1), rel=1e-12)
    assert first != pytest.approx(whole_data_loss(0), rel=1e-6)


def test_sync_sgd_on_the_mlp_is_reproducible(runs, tmp_path):
    overrides = [*MLP, *RUN, "train.algorithm=sync_sgd"]
    first = runs("sync_sgd", overrides)
    again = train(tmp_path / "again", 2, overrides)
    assert again.returncode == 0, again.output
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "parameters.npy"), np.load(first / "parameters.npy"))
    assert without_wall_time(records(tmp_path / "again")) == without_wall_time(records(first))


# --- 4. checkpoint and resume -------------------------------------------------------------------

def test_resumed_mlp_run_ends_like_an_unbroken_one(runs, tmp_path):
    """Half the steps with a checkpoint at the end, then --resume with train.steps = T: the records
    and the parameters equal those of a run of T steps. Compressed SGD with error feedback: the
    checkpoint carries the model, the sampler and the error-feedback memory."""
    algorithm = "compressed_sgd"
    overrides = [*MLP, *RUN, f"train.algorithm={algorithm}", *ALGORITHMS[algorithm]]
    unbroken = runs(algorithm, overrides)
    out = tmp_path / "resumed"
    half = train(out, 2, [*overrides, f"train.steps={STEPS // 2}"], "--checkpoint-every", str(STEPS // 2))
    assert half.returncode == 0, half.output
    assert [r["step"] for r in records(out)][-1] == STEPS // 2
    resumed = train(out, 2, overrides, "--resume", str(out / "checkpoints"))
    assert resumed.returncode == 0, resumed.output
    assert without_wall_time(records(out)) == without_wall_time(records(unbroken))
    np.testing.assert_array_equal(np.load(out / "parameters.npy"), np.load(unbroken / "parameters.npy"))
    assert summary(out)["final_accuracy"] == summary(unbroken)["final_accuracy"]


# --- 5. bad models and labels: one line, exit 2 -------------------------------------------------

def one_class_file(tmp_path):
    path = tmp_path / "one-class.svm"
    path.write_text("".join(f"2 1:{i / 10:.1f} 2:1\n" for i in range(8)))
    return path


@pytest.mark.parametrize("case, overrides, words", [
    ("no hidden layer", [*MULTICLASS, "objective.name=mlp", "objective.hidden=[]"],
     ["config field 'objective.hidden'", "at least one hidden layer"]),
    ("zero width", [*MULTICLASS, "objective.name=mlp", "objective.hidden=[0]"],
     ["config field 'objective.hidden'", "integers >= 1, got 0"]),
    ("real labels", ["data.dataset=synthetic-least-squares", "data.n_samples=500", "data.n_features=10",
                     "objective.name=softmax"], ["objective 'softmax'", "is not a class"]),
    ("ten classes, logistic head", ["data.dataset=synthetic-multiclass", "data.n_samples=500", "data.n_features=10",
                                    "data.n_classes=10", "objective.name=mlp", "objective.hidden=[8]",
                                    "objective.head=logistic"], ["head 'logistic'", "cannot take the labels"]),
    ("one class", ["objective.name=softmax"], ["objective 'softmax'", "one class only (label 2)"]),
])
def test_bad_model_or_labels_stop_with_one_line(tmp_path, case, overrides, words):
    if case == "one class":
        overrides = [f"data.dataset=\"{one_class_file(tmp_path)}\"", *overrides]
    result = train(tmp_path / "out", 2, [*overrides, "train.steps=10", "run.progress=false"], timeout=60)
    assert result.returncode == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mpitrain: error: ") and "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


# --- 6. class labels over ranks that each hold one class ----------------------------------------

LABELS = (3, 5, 11)  # not 0-based, not contiguous


def write_three_classes(path, rows_per_class=100):
    """A LIBSVM file sorted by label, 4 features, class c centred on 2 e_c; every line equally
    long (so that a partitioned read cuts it at the classes' borders)."""
    rng = np.random.default_rng(1)
    lines = []
    for index, label in enumerate(LABELS):
        for _ in range(rows_per_class):
            values = np.clip(2.0 * (np.arange(4) == index) + rng.normal(0.0, 0.4, 4), 0.0, 9.9)
            text = [f"{j + 1}:{v:.4f}" for j, v in enumerate(values)]
            text[-1] = text[-1][:len(text[-1]) + 1 - len(str(label))]  # a two-digit label: one decimal less
            lines.append(f"{label} " + " ".join(text))
    assert len({len(line) for line in lines}) == 1
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("read", ["label-sharded", "partitioned"])
def test_one_class_per_rank_maps_classes_alike(tmp_path, read):
    data = write_three_classes(tmp_path / "three.svm")
    if read == "label-sharded":
        whole = open_dataset(str(data), raw_labels=True)
        parts = [shard(whole, rank, 3, scheme="label").labels for rank in range(3)]
        setting = ["data.sharding=label"]
    else:  # each rank reads a third of the bytes: its own class only, coded over the union
        parts = [open_dataset(str(data), raw_labels=True, part=(rank, 3)).labels for rank in range(3)]
        setting = ["data.read=partitioned"]
    assert [sorted(set(p.tolist())) for p in parts] == [[label] for label in LABELS]  # one class each

    out = tmp_path / "out"
    result = train(out, 3, [f"data.dataset=\"{data}\"", *setting, "objective.name=softmax", "train.steps=300",
                            "train.batch_size=8", "step_size.value=0.5", "run.log_every=100", "run.progress=false"])
    assert result.returncode == 0, result.output
    recs = records(out)
    assert summary(out)["n_params"] == n_params(4, [], len(LABELS))  # 3 classes, not max label + 1 = 12
    assert recs[0]["loss"] == pytest.approx(math.log(len(LABELS)), rel=1e-12)
    assert all(r["accuracy"] is not None for r in recs)
    assert recs[-1]["accuracy"] > 0.9


# --- the example configs ------------------------------------------------------------------------

CONFIGS = ROOT / "jobs" / "configs"
EXAMPLES = sorted(CONFIGS.glob("mlp_*.toml")) + sorted(CONFIGS.glob("softmax_*.toml"))


def test_there_are_network_examples():
    assert {path.name.split("_")[0] for path in EXAMPLES} == {"mlp", "softmax"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_trains(tmp_path, path):
    config = load_config(str(path), [])
    assert config.objective.name in ("mlp", "softmax")
    out = tmp_path / "out"
    shrink = ["data.n_samples=2000", "train.steps=200", "run.log_every=100", "run.progress=false"]
    result = train(out, 2, shrink, "--config", str(path), "--overwrite")
    assert result.returncode == 0, result.output
    assert result.stderr == "", result.stderr
    recs = records(out)
    assert recs[-1]["loss"] < 0.8 * recs[0]["loss"] and recs[-1]["accuracy"] is not None
