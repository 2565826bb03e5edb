"""Steps in blocks: the C row draws are numpy's, a block of fused SGD steps is its steps taken one
at a time, and a training run stepped in blocks (MPITRAIN_BLOCKS unset) writes the metrics and
parameters of the same run stepped one Python call at a time (MPITRAIN_BLOCKS=0), bit for bit,
under mpiexec -n 2; a checkpoint taken in the middle of a Local SGD period resumes to the same run.
"""
import json
import shutil

import numpy as np
import pytest
import scipy.sparse

from mpi_run import run_mpi, run_mpi_script
from mpitrain._native.objectives import bounded_integers
from mpitrain._native.sgd_steps import SGDSteps
from mpitrain._native.vector import scaled_update
from mpitrain.algorithms.base import step_size_filler
from mpitrain.algorithms.iterate_average import WeightedIterateAverage
from mpitrain.algorithms.local_sgd import next_average
from mpitrain.algorithms.periods import ConstantPeriod, GrowingPeriod, PostLocalPeriod
from mpitrain.objectives import make_objective
from mpitrain.sampling import BatchSampler
from mpitrain.schedules import Constant, InverseTime, stich

WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}


def generator(seed, rank=0):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, rank])))


# --- the draws ----------------------------------------------------------------------------------

SIZES = [1, 2, 3, 7, 100, 49749, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1,
         3 * 2 ** 40 + 17, 2 ** 62 + 1, 2 ** 63 - 1]


@pytest.mark.parametrize("n", SIZES)
def test_c_draws_are_generator_integers(n):
    for seed in range(4):
        for b in (1, 2, 5, 32, 257):  # b > n for the small n
            numpy_rng, c_rng = generator(seed), generator(seed)
            for _ in range(3):
                out = np.empty(b, dtype=np.int64)
                bounded_integers(c_rng.bit_generator, n, out)
                np.testing.assert_array_equal(out, numpy_rng.integers(0, n, size=b))
            assert c_rng.bit_generator.state == numpy_rng.bit_generator.state  # PCG64's buffered half word too


def test_c_and_numpy_draws_continue_one_stream():
    """Alternating C draws and numpy draws (32-bit draws leave half a word buffered) is one stream."""
    reference, mixed = generator(5), generator(5)
    for i, n in enumerate([10, 2 ** 40, 3, 2 ** 32, 7, 2 ** 31 + 1] * 3):
        expected = reference.integers(0, n, size=3)
        if i % 2:
            got = mixed.integers(0, n, size=3)
        else:
            got = np.empty(3, dtype=np.int64)
            bounded_integers(mixed.bit_generator, n, got)
        np.testing.assert_array_equal(got, expected)


def test_sampler_draws_its_generator_stream_and_restores():
    sampler, reference = BatchSampler(1000, 16, seed=3, rank=1), generator(3, rank=1)
    state = sampler.state()
    first = [sampler.draw().copy() for _ in range(5)]
    for rows in first:
        np.testing.assert_array_equal(rows, reference.integers(0, 1000, size=16))
    sampler.load(state)
    np.testing.assert_array_equal(sampler.draw(), first[0])


def test_bounded_integers_refuses_bad_arguments():
    with pytest.raises(ValueError, match="n must be >= 1"):
        bounded_integers(generator(0).bit_generator, 0, np.empty(2, dtype=np.int64))
    with pytest.raises(ValueError, match="BitGenerator"):
        bounded_integers(type("Fake", (), {"capsule": object(), "lock": None})(), 5, np.empty(2, dtype=np.int64))


# --- a block of steps against the steps one by one ----------------------------------------------

def objective_for(name, dtype, layout, n=60, d=9, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)).astype(dtype)
    a[rng.random((n, d)) < 0.5] = 0.0
    labels = np.where(rng.random(n) < 0.5, -1.0, 1.0) if name == "logistic" else rng.standard_normal(n)
    features = scipy.sparse.csr_matrix(a) if layout == "csr" else a
    return make_objective(name, features, labels.astype(dtype), 0.05)


CASES = [(name, dtype, layout) for name in ("logistic", "least_squares") for dtype in (np.float32, np.float64)
         for layout in ("csr", "dense")]


@pytest.mark.parametrize("name,dtype,layout", CASES)
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_block_equals_steps_one_by_one(name, dtype, layout, weighted):
    objective = objective_for(name, dtype, layout)
    d = objective.n_features
    etas = InverseTime(0.7, 3.0)
    beta = 0.37
    x_ref, g_ref = np.linspace(-1, 1, d).astype(dtype), np.empty(d, dtype)
    x, g = x_ref.copy(), np.empty(d, dtype)
    sampler_ref, sampler = BatchSampler(50, 7, seed=1, rank=0), BatchSampler(50, 7, seed=1, rank=0)
    average_ref, average = WeightedIterateAverage(d, 2.5), WeightedIterateAverage(d, 2.5)
    steps = objective.sgd_steps(x, g, sampler, capacity=16, output_total=average.total if weighted else None)
    t = 0
    for count in (1, 5, 16, 3):
        for s in range(t, t + count):  # what LocalModelAlgorithm.local_step does
            if weighted:
                average_ref.add(s, x_ref)
            objective.batch_gradient(x_ref, sampler_ref.draw(), g_ref)
            scaled_update(x_ref, g_ref, -etas(s), beta if s == t + count - 1 else 1.0)
        step_size_filler(etas)(t, steps.step_sizes, count)
        if weighted:
            steps.output_weights[:count] = [average.weight(s) for s in range(t, t + count)]
            average.weight_sum = steps.run(count, beta, average.weight_sum)
        else:
            assert steps.run(count, beta) == 0.0
        t += count
        assert x.tobytes() == x_ref.tobytes()
        assert g.tobytes() == g_ref.tobytes()
        assert sampler.state() == sampler_ref.state()
        assert average.total.tobytes() == average_ref.total.tobytes()
        assert average.weight_sum == average_ref.weight_sum


@pytest.mark.parametrize("name,dtype,layout", CASES)
def test_gradient_kernel_is_batch_gradient_of_the_next_draw(name, dtype, layout):
    """objective.gradient_kernel(x, g, sampler).gradient(): the bits of batch_gradient(x,
    sampler.draw(), g), the same stream state after, x unchanged; and after average_gradients,
    those of batch_gradient(..., weight)."""
    objective = objective_for(name, dtype, layout)
    d = objective.n_features
    x = np.linspace(-1, 1, d).astype(dtype)
    g_ref, g = np.empty(d, dtype), np.empty(d, dtype)
    sampler_ref, sampler = BatchSampler(50, 7, seed=4, rank=1), BatchSampler(50, 7, seed=4, rank=1)
    kernel = objective.gradient_kernel(x, g, sampler)
    for i in range(4):
        weight = 1.0 if i < 2 else 0.3
        if i == 2:
            kernel.average_gradients(weight)
        objective.batch_gradient(x, sampler_ref.draw(), g_ref, weight)
        before = x.copy()
        kernel.gradient()
        assert x.tobytes() == before.tobytes()
        assert g.tobytes() == g_ref.tobytes()
        assert sampler.state() == sampler_ref.state()
        x += dtype(0.25) * g  # a step between gradients: the kernel reads x where it is


def test_algorithm_prepares_its_gradient_once_and_again_after_a_rebind():
    from mpitrain.algorithms.base import Algorithm, Worker
    from mpitrain.comm.accounting import CommStats

    objective = objective_for("logistic", np.float64, "csr")
    d = objective.n_features

    def algorithm():
        worker = Worker(comm=None, objective=objective, n_global=60, weight=1.0,
                        sampler=BatchSampler(60, 5, 2, 0), step_size=Constant(0.1), stats=CommStats(),
                        x0=np.full(d, 0.2), steps=10, seed=0, batch_size=5)
        return Algorithm(worker)

    method, reference = algorithm(), algorithm()
    method.stochastic_gradient()
    kernel = method._prepared_gradient[2]
    assert kernel is not None
    method.stochastic_gradient()
    assert method._prepared_gradient[2] is kernel  # made once
    method.x = method.x + 1.0  # rebound: the next gradient is at the new x, with a new kernel
    reference.x = reference.x + 1.0
    method.stochastic_gradient()
    assert method._prepared_gradient[2] is not kernel
    for _ in range(3):
        objective.batch_gradient(reference.x, reference.worker.sampler.draw(), reference.grad)
    assert method.grad.tobytes() == reference.grad.tobytes()


def test_sgd_steps_checks_its_arrays_once():
    objective = objective_for("logistic", np.float64, "csr")
    d = objective.n_features
    x, g = np.zeros(d), np.zeros(d)
    with pytest.raises(ValueError, match="x must be a float64 array"):
        objective.sgd_steps(x.astype(np.float32), g, BatchSampler(10, 2, 0, 0))
    with pytest.raises(ValueError, match="sampler draws from 61 rows; this objective has 60"):
        objective.sgd_steps(x, g, BatchSampler(61, 2, 0, 0))
    steps = objective.sgd_steps(x, g, BatchSampler(60, 2, 0, 0), capacity=4)
    assert steps.capacity == 4 and steps.output_weights is None
    with pytest.raises(ValueError, match=r"count must be in \[0, 4\]"):
        steps.run(5)
    steps.run(0)
    assert not x.any()  # no step taken
    matrix, labels = objective._matrix, objective.labels
    rows, work, sizes = np.zeros(2, np.int64), np.zeros(d), np.zeros(4)
    bits = generator(0).bit_generator
    with pytest.raises(ValueError, match="grad must have 9 entries"):
        SGDSteps(0, matrix, labels, 0.1, x, np.zeros(d + 1), work, rows, bits, 60, sizes)
    with pytest.raises(ValueError, match="must be writable"):
        frozen = np.zeros(d)
        frozen.flags.writeable = False
        SGDSteps(0, matrix, labels, 0.1, frozen, g, work, rows, bits, 60, sizes)
    with pytest.raises(ValueError, match="output_weights and output_total"):
        SGDSteps(0, matrix, labels, 0.1, x, g, work, rows, bits, 60, sizes, np.zeros(4))
    with pytest.raises(ValueError, match="rows must hold the batch"):
        SGDSteps(0, matrix, labels, 0.1, x, g, work, np.zeros(0, np.int64), bits, 60, sizes)


@pytest.mark.parametrize("schedule", [Constant(0.25), Constant(3), InverseTime(2.0, 7.5), InverseTime(3, 1),
                                      stich(0.01, 11.0), lambda t: 1.0 / (1.0 + t) ** 0.5],
                         ids=["constant", "constant-int", "inverse-time", "inverse-time-int", "stich", "other"])
def test_step_size_filler_is_the_schedule_bit_for_bit(schedule):
    """out[:n] holds eta_t .. eta_{t+n-1}, on fresh arrays and on one array refilled call after
    call (a kernel's step_sizes: a constant is written there once, then left as it is)."""
    fill = step_size_filler(schedule)
    kept, other = np.full(37, np.nan), np.full(37, np.nan)
    for t in (0, 1, 17, 10 ** 6, 2 ** 40):
        for n in (37, 5, 1):
            expected = [float(schedule(t + i)) for i in range(n)]
            fresh = np.full(37, np.nan)
            fill(t, fresh, n)
            assert fresh[:n].tolist() == expected
            for out in (kept, other, kept):  # the arrays in turn, as two kernels would
                fill(t, out, n)
                assert out[:n].tolist() == expected


@pytest.mark.parametrize("period", [ConstantPeriod(1), ConstantPeriod(8), PostLocalPeriod(5, 8),
                                    PostLocalPeriod(0, 3), GrowingPeriod(8, 2.0), GrowingPeriod(3, 1.5, 10)],
                         ids=["constant-1", "constant-8", "post-local", "post-local-0", "growing", "growing-cap"])
def test_next_average_is_the_first_synchronisation(period):
    for t in range(200):
        for limit in (t + 1, t + 5, t + 64):
            expected = next((s for s in range(t + 1, limit) if period.syncs_after(s - 1)), limit)
            assert next_average(period, t, limit) == expected, (t, limit)


def local_sgd(options, objective, steps, cls=None):
    from mpi4py import MPI

    from mpitrain.algorithms.base import Worker
    from mpitrain.algorithms.local_sgd import LocalSGD
    from mpitrain.comm.accounting import CommStats

    worker = Worker(comm=MPI.COMM_SELF, objective=objective, n_global=objective.n_samples, weight=1.0,
                    sampler=BatchSampler(objective.n_samples, 4, seed=2, rank=0), step_size=InverseTime(1.0, 4.0),
                    stats=CommStats(), x0=np.zeros(objective.n_features, objective.dtype), steps=steps, seed=2,
                    batch_size=4)
    return (cls or LocalSGD)(worker, options, step_size_shift=4.0)


def local_options(algorithm, **values):
    """The option section of ``algorithm`` (local_sgd, or compressed_local_sgd with Top-k + EF)."""
    from mpitrain.algorithms.compressed_local_sgd import CompressedLocalSGD, CompressedLocalSGDOptions
    from mpitrain.algorithms.local_sgd import LocalSGD, LocalSGDOptions

    if algorithm == "local_sgd":
        return LocalSGD, LocalSGDOptions(**values)
    return CompressedLocalSGD, CompressedLocalSGDOptions(compressor="top_k", k=3, error_feedback="ef", **values)


@pytest.mark.parametrize("algorithm", ["local_sgd", "compressed_local_sgd", "compressed_local_sgd-clipped"])
@pytest.mark.parametrize("schedule", ["constant", "growing", "post_local"])
@pytest.mark.parametrize("output", ["average", "weighted"])
def test_local_sgd_run_steps_is_step_by_step(algorithm, schedule, output):
    """In one process: calls of any length, kernel calls of at most 3 steps (a period cut in
    pieces), and a last call past the step budget (it stops at the budget); compressed Local
    SGD too (its rounds, feedback memory and bits included), also with its gradients clipped."""
    clip = {"clip": 0.05} if algorithm.endswith("-clipped") else {}
    cls, options = local_options(algorithm.split("-")[0], period=5, schedule=schedule,
                                 warmup_steps=3 if schedule == "post_local" else 0, growth=1.5, output=output, **clip)
    objective = objective_for("logistic", np.float32, "csr")
    one, blocks = local_sgd(options, objective, 70, cls), local_sgd(options, objective, 70, cls)
    assert one.sgd_steps is not None  # both take blocks when asked to; one is stepped one by one below
    total = blocks.output.total if blocks.output is not None else None
    blocks.sgd_steps = objective.sgd_steps(blocks.x, blocks.grad, blocks.worker.sampler, capacity=3,
                                           output_total=total)
    blocks.sgd_steps.clip_gradients(clip.get("clip", 0.0))
    for t in range(70):
        one.step(t)
    t = 0
    for count in (1, 4, 9, 2, 30, 100):
        taken = blocks.run_steps(t, count)
        assert taken == min(count, 70 - t)
        t += taken
    assert t == 70
    assert blocks.x.tobytes() == one.x.tobytes()
    assert blocks.metrics() == one.metrics()
    assert blocks.worker.sampler.state() == one.worker.sampler.state()
    assert blocks.state_dict().keys() == one.state_dict().keys()
    if algorithm.startswith("compressed_local_sgd"):
        assert blocks.anchor.tobytes() == one.anchor.tobytes()
        assert blocks.sender.rule.state_dict()["error"].tobytes() == one.sender.rule.state_dict()["error"].tobytes()
        assert blocks.averager.bits_sent == one.averager.bits_sent and blocks.syncs == one.syncs > 0
    if output == "weighted":
        assert blocks.output.total.tobytes() == one.output.total.tobytes()
        assert blocks.output.weight_sum == one.output.weight_sum


# --- whole runs under MPI -------------------------------------------------------------------------

COMMON = ["data.n_samples=1200", "data.n_features=40", "train.batch_size=8", "train.steps=100",
          "run.log_every=25", "run.reference=false", "run.progress=false", "step_size.value=0.2"]
CSR = ["data.dataset=synthetic-classification"]
DENSE = ["data.dataset=synthetic-least-squares", "objective.name=least_squares"]
PERIODS = {"constant": ["local_sgd.period=8"],
           "growing": ["local_sgd.period=8", "local_sgd.schedule=growing", "local_sgd.growth=1.5"],
           "post_local": ["local_sgd.period=8", "local_sgd.schedule=post_local", "local_sgd.warmup_steps=5"]}
DATA = {"csr-logistic": CSR, "csr-least_squares": [*CSR, "objective.name=least_squares"], "dense-least_squares": DENSE}
RUNS = {f"{period}-{data}-{dtype}": ["train.algorithm=local_sgd", *PERIODS[period], *DATA[data], f"data.dtype={dtype}"]
        for period in PERIODS for data in DATA for dtype in ("float32", "float64")}
RUNS["weighted-inverse_time-checkpoints"] = [
    "train.algorithm=local_sgd", "local_sgd.period=8", "local_sgd.output=weighted", "step_size.schedule=inverse_time",
    "step_size.c=2.0", "step_size.a=10.0", "run.checkpoint_every=30", *CSR, "data.dtype=float32"]
RUNS["sync_sgd"] = ["train.algorithm=sync_sgd", *CSR]
RUNS["compressed_local_sgd"] = ["train.algorithm=compressed_local_sgd", "compressed_local_sgd.period=8", *CSR]
RUNS["compressed_local_sgd-growing-weighted-ef"] = [
    "train.algorithm=compressed_local_sgd", "compressed_local_sgd.period=4", "compressed_local_sgd.schedule=growing",
    "compressed_local_sgd.output=weighted", "compressed_local_sgd.compressor=top_k", "compressed_local_sgd.k=5",
    "compressed_local_sgd.error_feedback=ef", *DENSE, "data.dtype=float64"]
RUNS["hierarchical_local_sgd"] = ["train.algorithm=hierarchical_local_sgd", "hierarchical_local_sgd.ranks_per_node=1",
                                  "hierarchical_local_sgd.node_period=2", "hierarchical_local_sgd.global_period=8",
                                  "hierarchical_local_sgd.output=weighted", *CSR]
RUNS["compressed_local_sgd-clipped"] = [  # clipped local steps in C (SGDSteps.clip_gradients)
    "train.algorithm=compressed_local_sgd", "compressed_local_sgd.period=8", "compressed_local_sgd.clip=0.5", *CSR]

SCRIPT = """
import os
from mpi4py import MPI
from mpitrain.config import load_config
from mpitrain.train import train

for name, overrides in {runs!r}.items():
    for blocks in ("0", "1"):
        os.environ["MPITRAIN_BLOCKS"] = blocks
        config = load_config(None, [*{common!r}, *overrides, f"run.output_dir={root!s}/{{name}}/blocks-{{blocks}}"])
        train(config, MPI.COMM_WORLD)
"""


def records(folder):
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_TIME}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    result = run_mpi_script(2, SCRIPT.format(runs=RUNS, common=COMMON, root=root), root, timeout=600)
    assert result.returncode == 0, result.output
    return root


@pytest.mark.parametrize("name", sorted(RUNS))
def test_blocks_write_the_run_of_single_steps(runs, name):
    one, blocks = runs / name / "blocks-0", runs / name / "blocks-1"
    assert [r["step"] for r in records(one)] == [0, 25, 50, 75, 100]
    assert records(blocks) == records(one)
    assert np.load(blocks / "parameters.npy").tobytes() == np.load(one / "parameters.npy").tobytes()
    summary = {k: v for k, v in json.loads((one / "summary.json").read_text()).items() if k.startswith("final_")}
    assert {k: json.loads((blocks / "summary.json").read_text())[k] for k in summary} == summary
    if name.startswith(("constant", "weighted")):
        assert records(one)[-1]["syncs"] == 12  # 100 // 8 averages
        assert records(one)[-1]["comm_rounds"] == 12


def train_args(out, *overrides, resume=None):
    args = ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}",
            *[arg for o in (*COMMON, *overrides) for arg in ("--set", o)]]
    return args + (["--resume", str(resume)] if resume is not None else [])


def test_checkpoint_in_the_middle_of_a_period_resumes_to_the_unbroken_run(runs, tmp_path):
    """Checkpoints at steps 30, 60 and 90 (H = 8: all mid-period); a run resumed from step 30
    elsewhere continues as the unbroken run, stepped one call at a time, does."""
    local = [*RUNS["constant-csr-logistic-float64"], "run.checkpoint_every=30", "run.keep_checkpoints=3"]
    first = tmp_path / "first"
    result = run_mpi(2, train_args(first, *local), timeout=120)
    assert result.returncode == 0, result.output
    resumed = tmp_path / "resumed"
    result = run_mpi(2, train_args(resumed, *local, resume=first / "checkpoints" / "step-00000030"), timeout=120)
    assert result.returncode == 0, result.output
    unbroken = runs / "constant-csr-logistic-float64" / "blocks-0"
    assert records(first) == records(unbroken)
    # eval_comm_rounds counts evaluation traffic since the process started (Local SGD does not
    # checkpoint it, and a resumed run evaluates once more at its start), with or without blocks
    training = [{k: v for k, v in r.items() if k != "eval_comm_rounds"} for r in records(resumed)]
    assert training == [{k: v for k, v in r.items() if k != "eval_comm_rounds"} for r in records(unbroken)]
    for out in (first, resumed):
        assert np.load(out / "parameters.npy").tobytes() == np.load(unbroken / "parameters.npy").tobytes()
    shutil.rmtree(first)
