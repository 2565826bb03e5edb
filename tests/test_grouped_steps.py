"""K ranks of one process stepping compressed SGD together in C (mpitrain._native.sgd_steps.SGDStepsGroup,
mpitrain.algorithms.compressed_sgd.GroupedSteps): the blocks of every rank in one call, through
``run_steps`` on the in-process communicator (what the experiments run), give what ``step``
per step gives on that communicator, bit for bit: iterates, feedback memory, row streams, comm
rounds, bytes and bits, for every compressor with an exchange in C (Top-k, Top-k then dithering,
scaled sign; the summable identity and Rand-k, scaled, unscaled and run as C / (1 + omega)), every
feedback rule, both wire dtypes, K = 2 and 3, with and without clipping. ``step`` on that
communicator gives what ``mpiexec`` gives (tests/test_inprocess.py), so these blocks do too.
Then the group's refusals, and a rank's failure ending the run with that rank's error.
"""
import numpy as np
import pytest

from mpitrain._native.compressed_steps import FeedbackExchange
from mpitrain._native.sgd_steps import SGDStepsGroup
from mpitrain.comm import inprocess
from mpitrain.sampling import BatchSampler
from test_compressed_steps_fused import COMPRESSORS, FEEDBACKS, MEMORY, WIRES, compare_run_steps, compressed_sgd
from test_sync_steps_fused import shard_objective

TIMEOUT = 60  # seconds: a run that hangs fails the test instead
CASES = [("logistic", "float32", "csr"), ("least_squares", "float64", "dense")]


def grouped(size, *args, **kwargs):
    """compare_run_steps on every rank of an in-process run of ``size`` ranks."""
    return inprocess.run(size, lambda comm: compare_run_steps(comm, *args, **kwargs), timeout=TIMEOUT)


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("compressor", sorted(COMPRESSORS))
@pytest.mark.parametrize("feedback", FEEDBACKS)
@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("case", CASES, ids="-".join)
def test_grouped_blocks_are_the_steps_one_by_one(case, wire, feedback, compressor, size):
    for rank, seen in enumerate(grouped(size, *case, wire, feedback, compressor)):
        assert seen["fused"] and seen["ranks"] == size
        assert seen["taken"] == [1, 4, 9, 2, 30, 24]  # the last call stops at the budget of 70
        assert seen["x"] and seen["sampler"] and seen["memory"] == MEMORY[feedback], rank
        assert seen["moved"] > 1e-3
        assert seen["stats"][0] == seen["stats"][1]  # rounds, bytes and bits
        assert seen["stats"][0][0] == 70 and seen["stats"][0][2] > 0


@pytest.mark.parametrize("compressor", ["top_k", "scaled_sign", "rand_k"])
@pytest.mark.parametrize("feedback", FEEDBACKS)
def test_grouped_clipped_blocks_are_the_clipped_steps(feedback, compressor):
    clipped = grouped(3, "logistic", "float32", "csr", "float32", feedback, compressor, clip=0.05)
    unclipped = grouped(3, "logistic", "float32", "csr", "float32", feedback, compressor)
    for seen, free in zip(clipped, unclipped):
        assert seen["fused"] and seen["x"] and seen["sampler"] and seen["memory"] == MEMORY[feedback]
        assert seen["moved"] != free["moved"]  # the clipping changed the run


def test_every_rank_takes_the_group_and_the_ranks_agree():
    """Each rank's algorithm steps through one SGDStepsGroup of all K kernels, made once."""
    def body(comm):
        objective, n = shard_objective("logistic", "float64", "csr", comm.Get_rank(), comm.Get_size())
        algorithm = compressed_sgd(comm, objective, n, compressor="rand_k", k=4, error_feedback="none")
        algorithm.run_steps(0, 10)
        first = algorithm.blocks.group
        algorithm.run_steps(10, 10)
        return algorithm.blocks.group is first, first.size, [k is algorithm.steps for k in first.kernels], \
            algorithm.x.copy()

    results = inprocess.run(3, body, timeout=TIMEOUT)
    assert [r[0] for r in results] == [True] * 3 and [r[1] for r in results] == [3] * 3
    # each rank's own kernel, in rank order
    assert [r[2] for r in results] == [[rank == k for k in range(3)] for rank in range(3)]
    assert all(r[3].tobytes() == results[0][3].tobytes() for r in results)  # one model on every rank


def test_a_rank_whose_rand_k_overflows_ends_the_run_with_the_step_by_step_error():
    """Scaled Rand-k refuses a kept value that d/k overflows (RandK.check_range): in a group the
    failing rank's error, in the same words as step by step, ends the in-process run."""
    def body(fused, comm):
        objective, n = shard_objective("least_squares", "float64", "dense", comm.Get_rank(), comm.Get_size())
        algorithm = compressed_sgd(comm, objective, n, fused=fused, compressor="rand_k", k=1, error_feedback="none")
        assert (algorithm.steps is not None) == fused
        if comm.Get_rank() == 1:
            algorithm.x[:] = 3e38  # gradients up to about 3e38 (float32 holds most): times d/k = 9, beyond 3.4e38
        algorithm.run_steps(0, 5)

    messages = []
    for fused in (False, True):
        with pytest.raises(ValueError, match=r"rand_k \(float32, d/k = 9\): a kept \|x_i\| = ") as refused:
            inprocess.run(3, lambda comm: body(fused, comm), timeout=TIMEOUT)
        messages.append(str(refused.value))
    assert messages[0] == messages[1]


def test_a_nan_kept_by_rand_k_is_no_refusal():
    """NumPy's max and min propagate a NaN, and RandK.check_range then lets the payload through:
    so does the C, and the NaNs reach the iterates alike."""
    def body(fused, comm):
        objective, n = shard_objective("logistic", "float64", "csr", comm.Get_rank(), comm.Get_size())
        algorithm = compressed_sgd(comm, objective, n, fused=fused, compressor="rand_k", k=8, error_feedback="none")
        if comm.Get_rank() == 0:
            algorithm.x[:] = np.nan
        algorithm.run_steps(0, 6)
        return algorithm.x.tobytes()

    with np.errstate(invalid="ignore"):
        assert inprocess.run(2, lambda comm: body(True, comm), timeout=TIMEOUT) == \
            inprocess.run(2, lambda comm: body(False, comm), timeout=TIMEOUT)


def kernel_with_exchange(size, rank=0, d=9, sampler=None, **changes):
    objective, n = shard_objective("logistic", "float64", "csr", rank, size)
    x, g = np.zeros(d), np.zeros(d)
    kernel = objective.sgd_steps(x, g, sampler or BatchSampler(objective.n_samples, 2, 0, rank), capacity=4)
    arguments = {"d": d, "k": 3, "bits": 4, "wire_dtype": np.float32, "model_dtype": np.float64,
                 "error": np.zeros(d, np.float32), "mean": np.zeros(d), "weights": [1.0 / size] * size,
                 "grouped": size > 1, **changes}
    kernel.exchange_steps(FeedbackExchange(**arguments))
    return kernel


def test_a_group_refuses_kernels_it_cannot_step_together():
    a, b = kernel_with_exchange(2, 0), kernel_with_exchange(2, 1)
    for kernels, message in [
        ([a], "a group takes two or more SGDSteps kernels"),
        ([a, object()], "a group takes two or more SGDSteps kernels"),
        ([a, a], "the kernels of a group must be distinct, each with a sampler of its own"),
        ([a, kernel_with_exchange(1)], "kernel 1 has no grouped exchange"),
        ([a, kernel_with_exchange(2, 1, feedback="none", error=None)], "kernel 1's exchange differs from kernel 0's"),
        ([a, kernel_with_exchange(2, 1, k=4)], "kernel 1's exchange differs from kernel 0's"),
        ([a, b, kernel_with_exchange(2, 0)], "kernel 0's exchange differs from kernel 0's .* not for 3 ranks"),
    ]:
        with pytest.raises(ValueError, match=message):
            SGDStepsGroup(kernels)
    shared = BatchSampler(30, 2, 0, 0)
    with pytest.raises(ValueError, match="each with a sampler of its own"):
        SGDStepsGroup([kernel_with_exchange(2, 0, sampler=shared), kernel_with_exchange(2, 1, sampler=shared)])
    group = SGDStepsGroup([a, b])
    with pytest.raises(ValueError, match=r"count must be in \[0, 4\], got 5"):
        group.run(5)
    group.run(2)  # (step sizes 0: only the memory moves)
    b.exchange_steps(FeedbackExchange(9, 3, 4, np.float32, np.float64, np.zeros(9, np.float32), np.zeros(9),
                                          [0.5, 0.5], grouped=True))
    with pytest.raises(ValueError, match="kernel 1's exchange changed since the group was made"):
        group.run(1)


def test_combine_runs_once_on_every_rank_s_contribution():
    calls = []

    def combine(parts):
        calls.append(list(parts))
        return sum(parts)

    assert inprocess.run(4, lambda comm: comm.Combine(comm.Get_rank() + 1, combine), timeout=TIMEOUT) == [10] * 4
    assert calls == [[1, 2, 3, 4]]
    with pytest.raises(RuntimeError, match="boom"):
        inprocess.run(3, lambda comm: comm.Combine(0, lambda parts: (_ for _ in ()).throw(RuntimeError("boom"))),
                      timeout=TIMEOUT)


@pytest.mark.parametrize("compressor", ["natural_compression", "biased_rounding", "top_k_natural_compression"])
@pytest.mark.parametrize("size", [1, 3])
def test_natural_compression_refuses_its_range_in_c_as_step_by_step(compressor, size):
    """A value natural compression cannot code (here a float32 gradient entry above 2^127, which
    would round up to inf) ends the run with NaturalCompression.check_range's own ValueError on
    both paths (one rank, and one rank of an in-process group)."""
    def body(fused, comm):
        objective, n = shard_objective("least_squares", "float64", "dense", comm.Get_rank(), comm.Get_size())
        algorithm = compressed_sgd(comm, objective, n, fused=fused, **COMPRESSORS[compressor],
                                   error_feedback="none")
        assert (algorithm.steps is not None) == fused
        if comm.Get_rank() == size - 1:
            algorithm.x[:] = 3e38  # gradient entries from about 1e36 to beyond float32's 3.4e38
        algorithm.run_steps(0, 5)

    messages = []
    for fused in (False, True):
        refusal = r"max\|x_i\| = .* would round up past the largest finite power"
        with pytest.raises(ValueError, match=refusal) as refused:
            inprocess.run(size, lambda comm: body(fused, comm), timeout=TIMEOUT)
        messages.append(str(refused.value))
    assert messages[0] == messages[1]


def test_each_rank_counts_its_own_part_as_computation():
    """A rank's compute seconds are its own draws, gradients and encodes; the rest of a grouped
    block (the other ranks' parts, the steps' ends) is communication, as waiting in a collective is.
    The K ranks' parts run one after another in one thread, so their compute seconds add up to at
    most the run's wall time, whatever the load (counting the whole block as each rank's
    computation would give about K times it)."""
    import time

    def body(comm):
        objective, n = shard_objective("logistic", "float64", "csr", comm.Get_rank(), comm.Get_size())
        algorithm = compressed_sgd(comm, objective, n, steps=4000, compressor="rand_k", k=4, error_feedback="none")
        algorithm.run_steps(0, 4000)
        stats = algorithm.worker.stats
        return stats.compute_seconds, stats.comm_seconds

    started = time.perf_counter()
    seconds = inprocess.run(4, body, timeout=TIMEOUT)
    wall = time.perf_counter() - started
    assert all(compute > 0.0 and comm > 0.0 for compute, comm in seconds)
    assert sum(compute for compute, _ in seconds) <= wall
