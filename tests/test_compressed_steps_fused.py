"""Compressed SGD in blocks: Top-k, Top-k then dithering or natural compression, a dithering alone,
natural compression, biased rounding, ternary or scaled sign, with a feedback rule (none, EF, EF21),
taken whole in C (draw, gradient, compensate, encode, MPI_Allgather called from C, decode-sum,
update; mpitrain._native.compressed_steps) gives the run of one Python step per call bit for bit:
iterates, feedback memory, row streams, metrics.jsonl, parameters.npy, comm rounds, bytes and bits;
on one rank here, under mpiexec -n 2 and -n 3 below, float32 and float64 on the model and on the
wire, CSR and dense rows, logistic and least squares, with evaluations and checkpoints inside a
block, and a run resumed from a checkpoint; also the summable compressors (the identity, Rand-k
scaled or not, and Rand-k run as C / (1 + omega) under error feedback), whose exchange is an
MPI_Allreduce of the weighted values called from C (in-process groups of ranks:
tests/test_grouped_steps.py). Set-ups without such a kernel keep the step-per-call path.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

from mpi_run import run_mpi_script
from mpitrain._native.compressed_steps import MAX_D, MAX_K, FeedbackExchange
from mpitrain.algorithms.base import Worker
from mpitrain.algorithms.compressed_sgd import CompressedSGD, CompressedSGDOptions, feedback_arrays, fused_steps
from mpitrain.comm.accounting import CommStats
from mpitrain.objectives import make_objective
from mpitrain.sampling import BatchSampler
from mpitrain.schedules import InverseTime
from test_sync_steps_fused import CASES, WALL_TIME, records, shard_objective, start

WIRES = ("float32", "float64")
FEEDBACKS = ("ef", "ef21", "none")
COMPRESSORS = {  # Top-k alone, Top-k followed by dithering of its k values (compositions), scaled sign,
    "top_k": {"compressor": "top_k", "k": 3},  # and the summable ones (an Allreduce of their values)
    "top_k_natural_dithering": {"compressor": "top_k_natural_dithering", "k": 3, "levels": 4},
    "top_k-standard_dithering": {"compressor": "composition", "biased": "top_k", "unbiased": "standard_dithering",
                                 "k": 4, "levels": 3},
    "top_k-natural_dithering-buckets": {"compressor": "composition", "biased": "top_k", "unbiased": "natural_dithering",
                                        "k": 5, "levels": 2, "bucket_size": 2},  # buckets of 2 of the k values
    "scaled_sign": {"compressor": "scaled_sign", "k": None},
    "identity": {"compressor": "identity", "k": None},
    "rand_k": {"compressor": "rand_k", "k": 4},  # with EF: ContractiveScaling (C / (1 + omega))
    "rand_k_unscaled": {"compressor": "rand_k_unscaled", "k": 4},
    "natural_dithering": {"compressor": "natural_dithering", "k": None, "levels": 4},  # with EF: C / (1 + omega)
    "standard_dithering-buckets": {"compressor": "standard_dithering", "k": None, "levels": 3, "bucket_size": 4},
    "natural_compression": {"compressor": "natural_compression", "k": None},  # with EF: C / (1 + omega)
    "biased_rounding": {"compressor": "biased_rounding", "k": None},
    "ternary": {"compressor": "ternary", "k": None},
    "top_k_natural_compression": {"compressor": "top_k_natural_compression", "k": 3},
}


def compressed_sgd(comm, objective, n_global, fused=True, capacity=None, steps=70, **options):
    """CompressedSGD (Top-k, k = 3, EF unless ``options`` say otherwise) on this rank's shard; ``fused``:
    whole steps in C (a kernel of ``capacity`` steps a call), else step() only."""
    worker = Worker(comm=comm, objective=objective, n_global=n_global, weight=objective.n_samples / n_global,
                    sampler=BatchSampler(objective.n_samples, 4, seed=2, rank=comm.Get_rank()),
                    step_size=InverseTime(1.0, 4.0), stats=CommStats(), x0=start(objective), steps=steps, seed=2,
                    batch_size=4)
    algorithm = CompressedSGD(worker, CompressedSGDOptions(**{"compressor": "top_k", "k": 3, **options}))
    if not fused:
        algorithm.steps = None
    elif capacity is not None and algorithm.steps is not None:
        algorithm.steps = fused_steps(algorithm, worker, capacity=capacity)
    return algorithm


def compare_run_steps(comm, name, dtype, layout, wire, feedback="ef", compressor="top_k", counts=(1, 4, 9, 2, 30, 100),
                      capacity=3, clip=0.0):
    """step(t) 70 times against run_steps in calls of ``counts`` (the last past the budget) on a
    kernel of ``capacity`` steps: what this rank sees, as a dict (also run by the MPI script below).
    ``clip``: compressed_sgd.clip (0: none)."""
    objective, n = shard_objective(name, dtype, layout, comm.Get_rank(), comm.Get_size())
    options = {**COMPRESSORS[compressor], "wire_dtype": wire, "error_feedback": feedback, "clip": clip}
    one = compressed_sgd(comm, objective, n, fused=False, **options)
    blocks = compressed_sgd(comm, objective, n, capacity=capacity, **options)
    for t in range(70):
        one.step(t)
    t, taken = 0, []
    for count in counts:
        taken.append(blocks.run_steps(t, count))
        t += taken[-1]
    stats = [[a.worker.stats.rounds, a.worker.stats.bytes_sent, a.averager.bits_sent] for a in (one, blocks)]
    return {"fused": blocks.steps is not None, "taken": taken, "x": blocks.x.tobytes() == one.x.tobytes(),
            "memory": [None if a is None else a.tobytes() == b.tobytes()
                       for a, b in zip(feedback_arrays(blocks.sender.rule, feedback),
                                       feedback_arrays(one.sender.rule, feedback))],
            "sampler": blocks.worker.sampler.state() == one.worker.sampler.state(), "stats": stats,
            "payload": blocks.compressor.payload_nbytes(), "ranks": comm.Get_size(),
            "wire": blocks.steps.exchange.wire_nbytes if blocks.steps is not None else None,
            "moved": float(np.abs(one.x - start(objective)).max()), "comm_seconds": blocks.worker.stats.comm_seconds}


MEMORY = {"ef": [True, None], "ef21": [True, True], "none": [None, None]}  # e_k; h_k and h; nothing


@pytest.mark.parametrize("compressor", sorted(COMPRESSORS))
@pytest.mark.parametrize("feedback", FEEDBACKS)
@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("case", CASES, ids="-".join)
def test_one_rank_blocks_are_the_steps_one_by_one(case, wire, feedback, compressor):
    seen = compare_run_steps(MPI.COMM_SELF, *case, wire, feedback, compressor)
    assert seen["fused"]
    assert seen["taken"] == [1, 4, 9, 2, 30, 24]  # the last call stops at the budget of 70
    assert seen["x"] and seen["sampler"] and seen["memory"] == MEMORY[feedback]
    assert seen["moved"] > 1e-3
    assert seen["stats"][0] == seen["stats"][1] == [0, 0, 0]  # one rank: nothing travels


@pytest.mark.parametrize("compressor", sorted(COMPRESSORS))
@pytest.mark.parametrize("feedback", FEEDBACKS)
@pytest.mark.parametrize("case", [("logistic", "float32", "csr"), ("least_squares", "float64", "dense")], ids="-".join)
def test_clipped_blocks_are_the_clipped_steps_one_by_one(case, feedback, compressor):
    """compressed_sgd.clip: each gradient clipped to the ball of radius lambda before the exchange,
    in C as mpitrain.clip.clip_by_norm does it (the shared C of pyx/clip_math.pxi), bit for bit."""
    seen = compare_run_steps(MPI.COMM_SELF, *case, "float32", feedback, compressor, clip=0.05)
    assert seen["fused"]
    assert seen["x"] and seen["sampler"] and seen["memory"] == MEMORY[feedback]
    unclipped = compare_run_steps(MPI.COMM_SELF, *case, "float32", feedback, compressor)
    assert seen["moved"] != unclipped["moved"]  # the clipping changed the run


def test_a_non_finite_gradient_is_refused_by_clipping_as_step_by_step():
    """clip_by_norm refuses a gradient whose norm is not finite: the C path raises the same
    ValueError, with the same words."""
    objective, n = shard_objective("logistic", "float64", "csr", 0, 1)
    messages = []
    for fused in (False, True):
        algorithm = compressed_sgd(MPI.COMM_SELF, objective, n, fused=fused, clip=1.0)
        assert (algorithm.steps is not None) == fused
        algorithm.x[2] = np.nan
        with pytest.raises(ValueError, match="cannot clip a non-finite gradient") as refused:
            algorithm.run_steps(0, 5)
        messages.append(str(refused.value))
    assert messages == ["||g||_2 is nan: cannot clip a non-finite gradient"] * 2


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("poison", ["nan", "inf"])
@pytest.mark.parametrize("feedback", FEEDBACKS)
@pytest.mark.parametrize("compressor", sorted(COMPRESSORS))
def test_a_nan_or_inf_parameter_takes_the_same_path_in_c(compressor, feedback, poison):
    """A parameter that is NaN or inf (a run going wrong) makes NaN gradients: the selection
    (NaN above inf above every number), the dithering of a NaN or inf norm, the feedback memory and
    the update give the same bits in C as step by step, so the trainer's divergence check sees the
    same values on either path."""
    objective, n = shard_objective("logistic", "float64", "csr", 0, 1)
    options = {**COMPRESSORS[compressor], "wire_dtype": "float32", "error_feedback": feedback}
    one = compressed_sgd(MPI.COMM_SELF, objective, n, fused=False, **options)
    blocks = compressed_sgd(MPI.COMM_SELF, objective, n, capacity=3, **options)
    assert blocks.steps is not None
    for algorithm in (one, blocks):
        algorithm.x[2] = float(poison)
    for t in range(20):
        one.step(t)
    assert blocks.run_steps(0, 20) == 20
    assert not np.isfinite(one.x).all()
    assert blocks.x.tobytes() == one.x.tobytes()
    assert [None if a is None else a.tobytes() for a in feedback_arrays(blocks.sender.rule, feedback)] == \
        [None if a is None else a.tobytes() for a in feedback_arrays(one.sender.rule, feedback)]
    assert blocks.worker.sampler.state() == one.worker.sampler.state()


def test_a_loaded_checkpoint_is_what_the_kernel_updates():
    """load_state_dict replaces the feedback memory's array: the blocks after it update the new one
    and continue the unbroken run."""
    objective, n = shard_objective("logistic", "float64", "csr", 0, 1)
    unbroken, first = compressed_sgd(MPI.COMM_SELF, objective, n), compressed_sgd(MPI.COMM_SELF, objective, n)
    assert unbroken.run_steps(0, 70) == 70
    assert first.run_steps(0, 33) == 33
    saved = first.state_dict()
    state = {"x": saved["x"].copy(), "feedback": {"error": saved["feedback"]["error"].copy()},
             "bits_sent": saved["bits_sent"]}
    resumed = compressed_sgd(MPI.COMM_SELF, objective, n)
    resumed.worker.sampler.load(first.worker.sampler.state())
    before = resumed.sender.rule.error
    resumed.load_state_dict(state)
    assert resumed.sender.rule.error is not before  # ErrorFeedback.load_state_dict makes a new array
    assert resumed.run_steps(33, 37) == 37
    assert resumed.steps.exchange.bound_error is resumed.sender.rule.error  # rebound
    assert resumed.x.tobytes() == unbroken.x.tobytes()
    assert resumed.sender.rule.error.tobytes() == unbroken.sender.rule.error.tobytes()


@pytest.mark.parametrize("options", [
    {"compressor": "composition", "biased": "rand_k_unscaled", "unbiased": "natural_dithering", "k": 4, "levels": 2},
    {"compressor": "composition", "biased": "top_k", "unbiased": "ternary", "k": 4}, {"k": MAX_K + 1},
], ids=["rand_k-then-dithering", "top_k-then-ternary", "k-above-max"])
def test_other_set_ups_keep_the_step_per_call_path(options):
    objective, n = shard_objective("logistic", "float64", "csr", 0, 1, d=MAX_K + 5)
    one = compressed_sgd(MPI.COMM_SELF, objective, n, fused=False, steps=20, **options)
    blocks = compressed_sgd(MPI.COMM_SELF, objective, n, steps=20, **options)
    assert blocks.steps is None
    for t in range(20):
        one.step(t)
    assert blocks.run_steps(0, 25) == 20
    assert blocks.x.tobytes() == one.x.tobytes()


def test_a_large_model_or_a_network_keeps_the_step_per_call_path():
    objective, n = shard_objective("logistic", "float32", "dense", 0, 1, n=20, d=MAX_D + 1)
    assert compressed_sgd(MPI.COMM_SELF, objective, n).steps is None
    rng = np.random.default_rng(0)
    network = make_objective("mlp", rng.standard_normal((30, 6)), np.where(rng.random(30) < 0.5, -1.0, 1.0), 0.1,
                             hidden=[5], activation="tanh", head="logistic")
    worker = Worker(comm=MPI.COMM_SELF, objective=network, n_global=30, weight=1.0, sampler=BatchSampler(30, 4, 1, 0),
                    step_size=InverseTime(0.5, 4.0), stats=CommStats(), x0=network.initial_point(0), steps=20, seed=1)
    assert CompressedSGD(worker, CompressedSGDOptions(compressor="top_k", k=3)).steps is None


def test_the_exchange_and_the_kernel_refuse_bad_arguments():
    d = 9
    error, mean = np.zeros(d, np.float32), np.zeros(d)

    def exchange(**changes):
        arguments = {"d": d, "k": 3, "bits": 4, "wire_dtype": np.float32, "model_dtype": np.float64, "error": error,
                     "mean": mean, "weights": [1.0], "comm": None, **changes}
        return FeedbackExchange(**arguments)

    for changes, message in [
        ({"wire_dtype": np.int32}, "wire_dtype must be float32 or float64"),
        ({"d": MAX_D + 1}, rf"d must be in \[1, {MAX_D}\]"),
        ({"k": 0}, r"k must be in \[1, 9\]"),
        ({"bits": 3}, "bits = 3 cannot hold an index below d = 9"),
        ({"error": np.zeros(d)}, "error must be a C-contiguous 1-D float32 NumPy array of 9 entries"),
        ({"mean": np.zeros(d + 1)}, "mean must be a C-contiguous 1-D float64 NumPy array of 9 entries"),
        ({"weights": []}, "weights must hold one weight a rank"),
        ({"weights": [0.5, 0.5], "comm": "world"}, "comm must be an mpi4py communicator"),
        ({"weights": [0.5, 0.5], "comm": MPI.COMM_SELF}, "2 weights for a communicator of 1 ranks"),
        ({"feedback": "ef22"}, r"feedback must be one of \['ef', 'ef21', 'none'\], got 'ef22'"),
        ({"feedback": "none"}, "feedback 'none' keeps no memory: error must be None"),
        ({"feedback": "ef21"}, r"average \(h\) is ef21's, and ef21 needs it"),
        ({"average": np.zeros(d)}, r"average \(h\) is ef21's, and ef21 needs it"),
        ({"feedback": "ef21", "average": np.zeros(d, np.float32)}, "average must be a C-contiguous 1-D float64"),
        ({"kind": "rand"}, r"kind must be one of \['dithering', 'identity', 'natural', 'rand_k', 'scaled_sign', "
                           r"'ternary', 'top_k'\], got 'rand'"),
        ({"kind": "natural", "k": 9}, "natural goes with kind 'natural' or after Top-k only, and not with dithering"),
        ({"kind": "identity"}, "k must be d = 9 for identity, got 3"),
        ({"kind": "scaled_sign"}, "k must be d = 9 for scaled_sign, got 3"),
        ({"kind": "rand_k", "k": 10}, r"k must be in \[1, d\] = 9 for rand_k, got 10"),
        ({"kind": "rand_k", "dithering": (4, 4, True, 2.0, 1.0)},
         "dithering goes with kind 'dithering' or after Top-k only"),
        ({"kind": "dithering", "k": 9}, "dithering goes with kind 'dithering' or after Top-k only"),
        ({"kind": "rand_k", "weights": [0.5, 0.5], "comm": MPI.COMM_SELF}, "2 weights for a communicator of 1 ranks"),
        ({"rank": 1}, r"rank must be in \[0, 1\), got 1"),
        ({"kind": "rand_k", "randk_scale": 3.0}, r"rand_k scaled by d/k needs range_check \(RandK.check_range"),
        ({"grouped": True, "weights": [0.5, 0.5], "comm": MPI.COMM_SELF},
         "a grouped exchange takes no comm and one weight for each of its >= 2 ranks"),
        ({"grouped": True}, "a grouped exchange takes no comm and one weight for each of its >= 2 ranks"),
    ]:
        with pytest.raises(ValueError, match=message):
            exchange(**changes)
    objective, n = shard_objective("logistic", "float64", "csr", 0, 1)
    x, g = np.zeros(objective.n_features), np.zeros(objective.n_features)
    kernel = objective.sgd_steps(x, g, BatchSampler(n, 2, 0, 0), capacity=4)
    with pytest.raises(ValueError, match="exchange must be an mpitrain._native.compressed_steps exchange"):
        kernel.exchange_steps(object())
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"max_norm must be a finite number >= 0 \(0: none\), got"):
            kernel.clip_gradients(bad)
    with pytest.raises(ValueError, match="exchange steps float32 parameters; x is float64"):
        kernel.exchange_steps(exchange(model_dtype=np.float32, mean=np.zeros(d, np.float32)))
    kernel.exchange_steps(exchange())
    with pytest.raises(ValueError, match="compressed steps .exchange_steps. take beta = 1"):
        kernel.run(1, beta=0.5)
    with pytest.raises(ValueError, match="this kernel takes compressed steps"):
        kernel.average_gradients(0.5)
    kernel.exchange_steps(None)
    kernel.average_gradients(0.5)
    with pytest.raises(ValueError, match="this kernel averages gradients"):
        kernel.exchange_steps(exchange())
    totals = objective.sgd_steps(x, g, BatchSampler(n, 2, 0, 0), capacity=4, output_total=np.zeros(9))
    with pytest.raises(ValueError, match="a kernel with output weights cannot take compressed steps"):
        totals.exchange_steps(exchange())


def test_an_exchange_for_another_d_is_refused():
    objective, n = shard_objective("logistic", "float64", "csr", 0, 1)
    x, g = np.zeros(objective.n_features), np.zeros(objective.n_features)
    kernel = objective.sgd_steps(x, g, BatchSampler(n, 2, 0, 0), capacity=4)
    other = FeedbackExchange(8, 3, 3, np.float32, np.float64, np.zeros(8, np.float32), np.zeros(8), [1.0])
    with pytest.raises(ValueError, match="exchange is for d = 8; x has 9 entries"):
        kernel.exchange_steps(other)


# --- under mpiexec ------------------------------------------------------------------------------

COMMON = ["data.n_samples=1200", "data.n_features=40", "train.batch_size=8", "train.steps=100",
          "run.log_every=40", "run.checkpoint_every=30", "run.reference=false", "run.progress=false",
          "step_size.value=0.2", "train.algorithm=compressed_sgd", "compressed_sgd.compressor=top_k",
          "compressed_sgd.error_feedback=ef"]
CSR = ["data.dataset=synthetic-classification", "compressed_sgd.k=6"]
RUNS = {"csr-logistic-float64": CSR,
        "csr-logistic-float32-wire64": [*CSR, "data.dtype=float32", "compressed_sgd.wire_dtype=float64"],
        "dense-least_squares-float32": ["data.dataset=synthetic-least-squares", "objective.name=least_squares",
                                        "data.dtype=float32", "compressed_sgd.k=6"],
        "csr-logistic-float64-ef21": [*CSR, "compressed_sgd.error_feedback=ef21"],
        "csr-logistic-float32-none": [*CSR, "data.dtype=float32", "compressed_sgd.error_feedback=none"],
        "csr-logistic-float64-top_k_natural_dithering": [*CSR, 'compressed_sgd.compressor="top_k_natural_dithering"',
                                                         "compressed_sgd.levels=4"],
        "csr-logistic-float32-clip": [*CSR, "data.dtype=float32", "compressed_sgd.clip=0.05"],
        "csr-logistic-float64-scaled_sign": ["data.dataset=synthetic-classification",
                                             'compressed_sgd.compressor="scaled_sign"'],
        "csr-logistic-float32-rand_k": [*CSR, "data.dtype=float32", 'compressed_sgd.compressor="rand_k"'],
        "csr-logistic-float64-identity-none": ["data.dataset=synthetic-classification",
                                               'compressed_sgd.compressor="identity"',
                                               "compressed_sgd.error_feedback=none"]}
RESUMED = "csr-logistic-float64"

SCRIPT = """
import json
import os
import sys
import numpy as np
from mpi4py import MPI
from mpitrain.config import load_config
from mpitrain.train import train

sys.path.insert(0, {tests!r})
from test_compressed_steps_fused import compare_run_steps

comm = MPI.COMM_WORLD
report = {{"parts": {{}}}}
for case in {cases!r}:
    for wire in ("float32", "float64"):
        for feedback in ("ef", "ef21", "none"):
            for compressor in {compressors!r}:
                seen = compare_run_steps(comm, *case, wire, feedback, compressor)
                seen.update({{k: comm.allreduce(seen[k], op=MPI.LAND) for k in ("fused", "x", "sampler")}})
                seen["memory"] = comm.allgather(seen["memory"])  # every rank's
                report["parts"]["-".join((*case, wire, feedback, compressor))] = seen


def config(name, folder, *extra):
    return load_config(None, [*{common!r}, *{runs!r}[name], f"run.output_dir={root!s}/{{name}}/{{folder}}", *extra])


for name in {runs!r}:
    for blocks in ("0", "1"):
        os.environ["MPITRAIN_BLOCKS"] = blocks
        train(config(name, f"blocks-{{blocks}}"), comm)
# the same run stopped at step 60 (a budget of 60 steps) and resumed from its checkpoint at step 60
train(config({resumed!r}, "resumed", "train.steps=60"), comm)
train(config({resumed!r}, "resumed"), comm, resume="{root!s}/{resumed}/resumed/checkpoints")
if comm.Get_rank() == 0:
    with open("{root!s}/report.json", "w") as f:
        json.dump(report, f)
"""


@pytest.fixture(scope="module", params=[2, 3], ids=["n2", "n3"])
def runs(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"compressed-n{request.param}")
    script = SCRIPT.format(tests=str(Path(__file__).parent), cases=CASES, common=COMMON, runs=RUNS, resumed=RESUMED,
                           root=root, compressors=sorted(COMPRESSORS))
    result = run_mpi_script(request.param, script, root, timeout=300)
    assert result.returncode == 0, result.output
    return request.param, root, json.loads((root / "report.json").read_text())


@pytest.mark.parametrize("case", [f"{'-'.join(case)}-{wire}-{feedback}-{compressor}" for case in CASES
                                  for wire in WIRES for feedback in FEEDBACKS for compressor in sorted(COMPRESSORS)])
def test_run_steps_is_step_by_step_across_ranks(runs, case):
    size, _, report = runs
    seen = report["parts"][case]
    assert seen["fused"]
    assert seen["taken"] == [1, 4, 9, 2, 30, 24]
    assert seen["x"] and seen["sampler"]
    assert seen["memory"] == [MEMORY[case.split("-")[4]]] * size
    assert seen["moved"] > 1e-3
    assert seen["stats"][0] == seen["stats"][1]  # rounds, bytes and bits
    # an Allgather of the payload, or an Allreduce of the values (Rand-k: not its 8-byte seed)
    assert seen["stats"][0][:2] == [70, 70 * seen["wire"]]
    assert seen["comm_seconds"] > 0.0


@pytest.mark.parametrize("name", sorted(RUNS))
def test_blocks_write_the_run_of_single_steps(runs, name):
    size, root, _ = runs
    one, blocks = root / name / "blocks-0", root / name / "blocks-1"
    assert [r["step"] for r in records(one)] == [0, 40, 80, 100]
    assert records(blocks) == records(one)
    assert np.load(blocks / "parameters.npy").tobytes() == np.load(one / "parameters.npy").tobytes()
    last = json.loads((blocks / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["comm_rounds"] == 100 and last["bits_sent"] > 0
    assert last["comm_seconds"] > 0.0 and last["compute_seconds"] > 0.0
    checkpoints = sorted(p.name for p in (blocks / "checkpoints").glob("step-*"))
    assert checkpoints[-1] == "step-00000090"  # the last multiple of 30


def test_a_resumed_run_continues_the_unbroken_one(runs):
    _, root, _ = runs
    resumed, unbroken = root / RESUMED / "resumed", root / RESUMED / "blocks-1"
    assert np.load(resumed / "parameters.npy").tobytes() == np.load(unbroken / "parameters.npy").tobytes()
    last = lambda folder: {k: v for k, v in json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1]).items()
                           if k not in WALL_TIME}
    assert last(resumed) == last(unbroken)


def test_an_allgather_c_cannot_reach_is_one_warning_from_rank_0(tmp_path):
    script = """
        import warnings
        import numpy as np
        from mpi4py import MPI
        import mpitrain.algorithms.compressed_sgd as compressed_sgd
        from mpitrain.comm.accounting import CommStats
        from mpitrain.algorithms.base import Worker
        from mpitrain.objectives import make_objective
        from mpitrain.sampling import BatchSampler
        from mpitrain.schedules import Constant

        class Unreachable:
            def __init__(self, *args, **kwargs):
                raise RuntimeError("cannot find MPI_Allgather through mpi4py")

        compressed_sgd.compressed_steps.FeedbackExchange = Unreachable
        comm = MPI.COMM_WORLD
        rng = np.random.default_rng(comm.Get_rank())
        objective = make_objective("logistic", rng.standard_normal((20, 8)), np.where(rng.random(20) < 0.5, -1.0, 1.0),
                                   0.1)
        worker = Worker(comm=comm, objective=objective, n_global=40, weight=0.5, sampler=BatchSampler(20, 4, 1, 0),
                        step_size=Constant(0.1), stats=CommStats(), x0=np.zeros(8), steps=5, seed=1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            algorithm = compressed_sgd.CompressedSGD(worker, compressed_sgd.CompressedSGDOptions(compressor="top_k", k=2))
        assert algorithm.steps is None and algorithm.run_steps(0, 5) == 5
        counts = comm.gather([str(w.message) for w in caught], root=0)
        if comm.Get_rank() == 0:
            print(f"warnings per rank: {[len(c) for c in counts]}", flush=True)
            print(counts[0][0], flush=True)
    """
    result = run_mpi_script(2, script, tmp_path, timeout=120)
    assert result.returncode == 0, result.output
    assert "warnings per rank: [1, 0]" in result.stdout, result.output
    assert "compressed_sgd steps one Python call a step: cannot find MPI_Allgather" in result.stdout, result.output


def test_ranks_that_disagree_on_d_get_an_error_not_a_wrong_step(tmp_path):
    """Payloads of one size but for another d (9 and 16 entries, k = 3 at 4 bits: 14 bytes each):
    the rank that decodes an index beyond its d stops with a RuntimeError naming it."""
    script = """
        import numpy as np
        import scipy.sparse
        from mpi4py import MPI
        from mpitrain._native.compressed_steps import FeedbackExchange
        from mpitrain.objectives import make_objective
        from mpitrain.sampling import BatchSampler

        comm = MPI.COMM_WORLD
        d = 9 if comm.Get_rank() == 0 else 16
        rng = np.random.default_rng(comm.Get_rank())
        features = np.zeros((20, d))
        features[:, -3:] = rng.standard_normal((20, 3))  # rank 1's largest entries lie beyond 9
        objective = make_objective("least_squares", features, rng.standard_normal(20), 0.0)
        x, g = np.zeros(d), np.zeros(d)
        kernel = objective.sgd_steps(x, g, BatchSampler(20, 4, 1, 0), capacity=2)
        kernel.exchange_steps(FeedbackExchange(d, 3, 4, np.float32, np.float64, np.zeros(d, np.float32),
                                                   np.zeros(d), [0.5, 0.5], comm))
        kernel.step_sizes[:] = 0.1
        try:
            kernel.run(1)
            print(f"rank {comm.Get_rank()}: stepped", flush=True)
        except RuntimeError as exc:
            print(f"rank {comm.Get_rank()}: {exc}", flush=True)
    """
    result = run_mpi_script(2, script, tmp_path, timeout=120)
    assert result.returncode == 0, result.output
    assert ("rank 0: a Top-k payload gathered from another rank holds an index >= d = 9: the ranks disagree "
            "on d or k") in result.stdout, result.output
    assert "rank 1: stepped" in result.stdout, result.output


def test_an_overflowing_dithering_norm_is_refused_as_by_the_step_per_call_path():
    """Finite Top-k values whose 2-norm exceeds float32's largest value: both paths raise the
    ValueError of the dithering's header check."""
    # each gradient entry 3.2e38 (a float32), eta g = 8e37: the 2-norm of 30 of them, 4.4e38, is not
    features, labels = np.ones((12, 40)), np.full(12, -3.2e38)
    objective = make_objective("least_squares", features, labels, 0.0)
    messages = []
    for fused in (False, True):
        algorithm = compressed_sgd(MPI.COMM_SELF, objective, 12, fused=fused, compressor="top_k_natural_dithering",
                                   k=30, levels=4)
        assert (algorithm.steps is not None) == fused
        with pytest.raises(ValueError, match="exceeds the largest float32") as refused:
            algorithm.run_steps(0, 1)
        messages.append(str(refused.value))
    assert messages[1] == messages[0]  # the same words: the bucket and its largest value named
    assert "norm of bucket 0 (max|x_i| = 8e+37)" in messages[0]
