"""The in-process communicator (mpitrain.comm.inprocess): K ranks as K greenlets of one thread.

First its collectives, one property each (sums in rank order, every buffer form the package
passes, copies for pickled objects, sub-communicators, no hang when a rank fails, leaves or
deadlocks);
then the real algorithm classes on it against ``mpiexec`` runs of ``python -m mpitrain
train``: the same parameters and metrics records bit for bit at K = 2 (a + b == b + a, so MPI
and the in-process sum agree), within 1e-12 at K = 4 (MPI may associate the sum differently).
"""
import functools
import json

import numpy as np
import pytest
from mpi4py import MPI

from mpi_run import run_mpi
from mpitrain.comm import inprocess

TIMEOUT = 60  # seconds: a collective that hangs fails the test instead


def run(size, function):
    return inprocess.run(size, function, timeout=TIMEOUT)


# -- the communicator ---------------------------------------------------------------------------------------------

def test_results_come_back_in_rank_order_and_size_one_needs_no_thread():
    assert run(5, lambda comm: (comm.Get_rank(), comm.Get_size(), comm.rank, comm.size)) == \
        [(r, 5, r, 5) for r in range(5)]
    assert run(1, lambda comm: comm.allreduce(3)) == [3]


@pytest.mark.parametrize("size", [2, 3, 4, 7])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_allreduce_sums_in_rank_order_with_every_buffer_form(size, dtype):
    rng = np.random.default_rng(size)
    data = [(rng.standard_normal(101) * 10.0 ** rng.integers(-8, 8, 101)).astype(dtype) for _ in range(size)]
    expected = functools.reduce(lambda a, b: a + b, data)  # ((b_0 + b_1) + b_2) + ...

    def body(comm):
        mine = data[comm.rank]
        in_place = mine.copy()
        comm.Allreduce(MPI.IN_PLACE, in_place, op=MPI.SUM)
        out = np.empty_like(mine)
        comm.Allreduce(mine, out)  # default op: SUM
        listed = mine.copy()
        comm.Allreduce(MPI.IN_PLACE, [listed, MPI.DOUBLE if dtype == np.float64 else MPI.FLOAT], op=MPI.SUM)
        top = mine.copy()
        comm.Allreduce(MPI.IN_PLACE, top, op=MPI.MAX)
        return in_place, out, listed, top

    for in_place, out, listed, top in run(size, body):
        for got in (in_place, out, listed):
            assert got.dtype == dtype and got.tobytes() == expected.tobytes()
        np.testing.assert_array_equal(top, np.max(data, axis=0))


def test_rank_order_is_the_order_of_the_sum():
    """1e16 + 1 rounds to 1e16: only the order ((1e16 + 1) - 1e16) + 1 gives exactly 1."""
    values = [1e16, 1.0, -1e16, 1.0]

    def body(comm):
        buf = np.array([values[comm.rank]])
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return buf[0]

    assert run(4, body) == [1.0] * 4


def test_reduce_bcast_allgather_and_allgatherv():
    def body(comm):
        r, size = comm.rank, comm.size
        total = np.zeros(3)
        comm.Reduce(np.full(3, r + 1.0), total, op=MPI.SUM, root=1)
        in_place = np.full(2, r + 1.0)
        if r == 0:
            comm.Reduce(MPI.IN_PLACE, in_place, op=MPI.SUM, root=0)
        else:
            comm.Reduce(in_place, None, op=MPI.SUM, root=0)
        shared = np.arange(4.0) if r == 2 else np.zeros(4)
        comm.Bcast(shared, root=2)
        gathered = np.empty(2 * size, dtype=np.int32)
        comm.Allgather(np.array([r, -r], dtype=np.int32), gathered)
        counts = [k + 1 for k in range(size)]  # rank k sends k + 1 bytes
        displacements = list(np.concatenate(([0], np.cumsum(counts)[:-1])))
        received = np.zeros(sum(counts), dtype=np.uint8)
        comm.Allgatherv(np.full(r + 1, r, dtype=np.uint8), [received, counts, displacements, MPI.BYTE])
        return total, in_place, shared, gathered, received

    results = run(3, body)
    np.testing.assert_array_equal(results[1][0], [6.0, 6.0, 6.0])
    np.testing.assert_array_equal(results[0][0], [0.0, 0.0, 0.0])  # not the root: untouched
    np.testing.assert_array_equal(results[0][1], [6.0, 6.0])
    np.testing.assert_array_equal(results[1][1], [2.0, 2.0])
    for total, in_place, shared, gathered, received in results:
        np.testing.assert_array_equal(shared, [0.0, 1.0, 2.0, 3.0])
        np.testing.assert_array_equal(gathered, [0, 0, 1, -1, 2, -2])
        np.testing.assert_array_equal(received, [0, 1, 1, 2, 2, 2])


def test_apply_calls_compute_once_and_give_every_rank_the_result():
    """Allgatherv_apply / Allreduce_apply: the function of the last rank to arrive runs once, on
    the parts in rank order (or on the sum in rank order, which the buffer also receives)."""
    ran = []

    def body(comm):
        r = comm.rank
        payload = np.full(r + 1, r, dtype=np.uint8)  # rank k sends k + 1 bytes
        joined = comm.Allgatherv_apply(payload, [1, 2, 3], lambda parts: (ran.append(r), np.concatenate(parts))[1])
        values = np.array([0.1 * (r + 1), 1e16 if r == 0 else 1.0])
        summed = comm.Allreduce_apply(values, lambda total: (ran.append(r), total * 2)[1])
        return joined, values, summed

    results = run(3, body)
    assert len(ran) == 2  # once per call, not once per rank
    expected_sum = (np.array([0.1, 1e16]) + np.array([0.2, 1.0])) + np.array([0.30000000000000004, 1.0])
    for joined, values, summed in results:
        assert joined is results[0][0]  # one object, every rank
        np.testing.assert_array_equal(joined, [0, 1, 1, 2, 2, 2])
        np.testing.assert_array_equal(values, expected_sum)  # rank order: 1e16 + 1 + 1 == 1e16
        np.testing.assert_array_equal(summed, 2 * expected_sum)


def test_apply_calls_check_counts_and_abort_on_a_failing_function():
    def wrong_count(comm):
        comm.Allgatherv_apply(np.zeros(2, np.uint8), [1] * comm.size, len)

    with pytest.raises(ValueError, match="sends 2 bytes, counts say 1"):
        run(2, wrong_count)

    def counts_checked_every_call(comm):  # the counts of a call seen before are not trusted blindly
        counts = [1] * comm.size
        comm.Allgatherv_apply(np.zeros(1, np.uint8), counts, len)
        counts[:] = [3] * comm.size  # the same list, changed: checked again
        comm.Allgatherv_apply(np.zeros(3, np.uint8), counts, len)
        comm.Allgatherv_apply(np.zeros(2, np.uint8), counts, len)  # the same counts, a wrong size

    with pytest.raises(ValueError, match="sends 2 bytes, counts say 3"):
        run(2, counts_checked_every_call)

    def failing(comm):
        comm.Allgatherv_apply(np.zeros(1, np.uint8), [1] * comm.size, lambda parts: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        run(3, failing)


def test_pickled_objects_are_copies_per_rank():
    def body(comm):
        got = comm.bcast({"list": [1, 2]} if comm.rank == 0 else None, root=0)
        comm.Barrier()
        got["list"].append(comm.rank)  # each rank changes its own copy only
        comm.Barrier()
        return (got, comm.allgather(comm.rank * 10), comm.gather(comm.rank, root=1),
                comm.allreduce(comm.rank), comm.allreduce(comm.rank, op=MPI.MAX), comm.allreduce([comm.rank]))

    results = run(3, body)
    for rank, (got, gathered, at_root, total, top, joined) in enumerate(results):
        assert got == {"list": [1, 2, rank]}
        assert gathered == [0, 10, 20] and total == 3 and top == 2 and joined == [0, 1, 2]
        assert at_root == ([0, 1, 2] if rank == 1 else None)


def test_split_split_type_and_dup():
    from mpitrain.comm.hierarchy import NodeHierarchy

    def body(comm):
        odd = comm.Split(comm.rank % 2, -comm.rank)  # key reverses the order
        buf = np.array([float(comm.rank)])
        odd.Allreduce(MPI.IN_PLACE, buf)
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)  # one process: one node
        dup = comm.Dup()
        fake = NodeHierarchy(comm, ranks_per_node=2)  # the helper hierarchical Local SGD uses
        leaders = fake.leaders.Get_size() if fake.leaders != MPI.COMM_NULL else None
        fake.free()
        dup.Free()
        return odd.rank, odd.size, buf[0], node.size, node.rank, dup.rank, fake.n_nodes, leaders

    results = run(4, body)
    assert [r[:3] for r in results] == [(1, 2, 2.0), (1, 2, 4.0), (0, 2, 2.0), (0, 2, 4.0)]
    assert [r[3:] for r in results] == [(4, 0, 0, 2, 2), (4, 1, 1, 2, None), (4, 2, 2, 2, 2), (4, 3, 3, 2, None)]


def test_an_exception_in_one_rank_is_raised_in_the_caller_and_nobody_hangs():
    def body(comm):
        comm.Barrier()
        if comm.rank == 2:
            raise KeyError("rank 2's own error")
        comm.Allreduce(MPI.IN_PLACE, np.zeros(3))  # the others wait here for rank 2

    with pytest.raises(KeyError, match="rank 2's own error") as info:
        run(4, body)
    assert "(in-process rank 2 of 4)" in info.value.__notes__


def test_a_rank_that_returns_while_others_wait_aborts_the_run():
    def body(comm):
        if comm.rank == 1:
            return "left early"
        comm.Barrier()

    with pytest.raises(inprocess.Aborted, match="rank 1 returned"):
        run(3, body)


def test_buffers_that_disagree_across_ranks_are_refused():
    def body(comm):
        comm.Allreduce(MPI.IN_PLACE, np.zeros(3 + comm.rank))

    with pytest.raises(ValueError, match="buffers differ across ranks"):
        run(2, body)
    with pytest.raises(TypeError, match="NumPy arrays"):
        run(2, lambda comm: comm.Allreduce(MPI.IN_PLACE, [1.0, 2.0]))


def test_a_timeout_aborts_instead_of_hanging():
    import threading

    release = threading.Event()

    def body(comm):
        if comm.rank == 0:
            release.wait(10)  # never joins the barrier in time
        comm.Barrier()

    with pytest.raises(TimeoutError, match="did not finish within 0.5 s"):
        inprocess.run(2, body, timeout=0.5)
    release.set()


@pytest.mark.parametrize("timeout", [None, TIMEOUT], ids=["caller-thread", "driver-thread"])
def test_a_deadlock_aborts_the_run_instead_of_hanging(timeout):
    def body(comm):
        pair = comm.Split(0 if comm.rank < 2 else 1, comm.rank)
        if comm.rank == 0:
            pair.Barrier()  # waits for rank 1, which waits in the world's barrier for rank 0
        comm.Barrier()
        if comm.rank == 1:
            pair.Barrier()

    with pytest.raises(inprocess.Aborted, match=r"deadlock: ranks \[0, 1, 2\] wait in collectives"):
        inprocess.run(3, body, timeout=timeout)


def test_a_rank_parked_outside_the_communicator_aborts_the_run_instead_of_spinning():
    import greenlet

    def body(comm):
        if comm.rank == 1:
            greenlet.getcurrent().parent.switch()  # parks itself where no collective will wake it
        comm.Barrier()

    with pytest.raises(inprocess.Aborted, match="deadlock"):
        run(2, body)


def test_the_ranks_take_turns_in_an_order_the_program_fixes():
    order = []

    def body(comm):
        for step in range(3):
            order.append((step, comm.rank))
            comm.Allreduce(MPI.IN_PLACE, np.zeros(1))
        return len(order)

    run(3, body)
    first, order[:] = list(order), []
    assert sorted(first) == [(step, rank) for step in range(3) for rank in range(3)]
    assert [step for step, _ in first] == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # no rank passes a collective alone
    run(3, body)
    assert order == first  # the same interleaving every time


# -- the real algorithms: in-process equals mpiexec --------------------------------------------------------------

SMALL = ["data.n_samples=2000", "data.n_features=50", "train.steps=48", "train.batch_size=8",
         "step_size.value=0.5", "run.log_every=12", "run.reference=false", "run.progress=false"]
#: metrics fields that measure time
WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}
#: every synchronous method; the stochastic compressor (natural dithering) draws from (seed, rank, step)
METHODS = {
    "sync_sgd": ["train.algorithm=sync_sgd"],
    "local_sgd-constant-inverse_time": ["train.algorithm=local_sgd", "local_sgd.period=4",
                                        "step_size.schedule=inverse_time", "step_size.c=20", "step_size.a=10"],
    "local_sgd-post_local": ["train.algorithm=local_sgd", "local_sgd.schedule=post_local",
                             "local_sgd.warmup_steps=8", "local_sgd.period=4"],
    "local_sgd-growing-weighted": ["train.algorithm=local_sgd", "local_sgd.schedule=growing", "local_sgd.period=2",
                                   "local_sgd.output=weighted"],
    "compressed_sgd-top_k-ef": ["train.algorithm=compressed_sgd", "compressed_sgd.compressor=top_k",
                                "compressed_sgd.k=5", "compressed_sgd.error_feedback=ef"],
    "compressed_sgd-natural_dithering": ["train.algorithm=compressed_sgd",
                                         "compressed_sgd.compressor=natural_dithering", "compressed_sgd.levels=3",
                                         "compressed_sgd.error_feedback=none"],
    "compressed_sgd-rand_k-float64": ["train.algorithm=compressed_sgd", "compressed_sgd.compressor=rand_k",
                                      "compressed_sgd.k=10", "compressed_sgd.error_feedback=none",
                                      "compressed_sgd.wire_dtype=float64", "step_size.value=0.1"],
    "compressed_local_sgd": ["train.algorithm=compressed_local_sgd", "compressed_local_sgd.period=4",
                             "compressed_local_sgd.compressor=top_k_natural_dithering", "compressed_local_sgd.k=10",
                             "compressed_local_sgd.levels=2"],
    "hierarchical_local_sgd": ["train.algorithm=hierarchical_local_sgd", "hierarchical_local_sgd.node_period=2",
                               "hierarchical_local_sgd.global_period=4", "hierarchical_local_sgd.ranks_per_node=2"],
}


def train_mpi(out, ranks, overrides):
    args = ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}",
            *[arg for o in overrides for arg in ("--set", o)]]
    result = run_mpi(ranks, args, timeout=120)
    assert result.returncode == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return np.load(out / "parameters.npy"), records


def train_threads(ranks, overrides):
    from mpitrain.config import load_config
    from mpitrain.experiments.workers import train_in_process

    records, x = train_in_process(load_config(None, overrides), ranks, timeout=TIMEOUT)
    return x, [json.loads(json.dumps(r)) for r in records]  # as metrics.jsonl holds them


def assert_same_run(threads, mpi, ranks):
    """Bit for bit at K = 2; at K = 4 integers equal and floats to 1e-12 (relative)."""
    (x_threads, rec_threads), (x_mpi, rec_mpi) = threads, mpi
    assert x_threads.dtype == x_mpi.dtype and x_threads.shape == x_mpi.shape
    assert len(rec_threads) == len(rec_mpi)
    if ranks == 2:
        assert x_threads.tobytes() == x_mpi.tobytes()
    else:
        np.testing.assert_allclose(x_threads, x_mpi, rtol=1e-12, atol=1e-15)
    for a, b in zip(rec_threads, rec_mpi):
        a = {k: v for k, v in a.items() if k not in WALL_TIME}
        b = {k: v for k, v in b.items() if k not in WALL_TIME}
        assert a.keys() == b.keys()
        if ranks == 2:
            assert a == b
        for key in a:
            if isinstance(a[key], float):
                assert a[key] == pytest.approx(b[key], rel=1e-12, abs=1e-15), (key, a["step"])
            else:
                assert a[key] == b[key], (key, a["step"])


@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_in_process_run_equals_the_mpiexec_run(tmp_path, method, ranks):
    overrides = [*SMALL, *METHODS[method]]
    threads = train_threads(ranks, overrides)
    mpi = train_mpi(tmp_path / method, ranks, overrides)
    assert_same_run(threads, mpi, ranks)
    assert mpi[1][-1]["loss"] < mpi[1][0]["loss"]
    if method == "hierarchical_local_sgd" and ranks == 4:  # Reduce in a node of 2 + Allreduce of 2: MPI's order
        assert threads[0].tobytes() == mpi[0].tobytes()


W8A = ["data.dataset=w8a", 'objective.l2="1/n"', "run.reference=false", "run.progress=false"]


@pytest.mark.parametrize("ranks", [2, 4])
def test_the_experiments_parts_equal_the_mpiexec_run(tmp_path, monkeypatch, ranks):
    """What the paper experiments step (mpitrain.experiments.workers: shards of the whole w8a
    built once per K, the real LocalSGD / CompressedSGD) is the job ``mpitrain train`` runs."""
    from pathlib import Path

    from mpitrain.algorithms.compressed_sgd import CompressedSGD, CompressedSGDOptions
    from mpitrain.algorithms.local_sgd import LocalSGD, LocalSGDOptions
    from mpitrain.evaluation import Evaluator
    from mpitrain.experiments.workers import Problem
    from mpitrain.schedules import Constant, InverseTime

    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (data / "w8a").exists():
        pytest.skip("w8a not available")
    monkeypatch.setenv("MPITRAIN_DATA", str(data))
    problem = Problem("w8a", 4)
    cases = {  # name: (overrides, build(worker))
        "local_sgd": (["train.algorithm=local_sgd", "local_sgd.period=4", "train.batch_size=4", "train.steps=60",
                       "step_size.schedule=inverse_time", "step_size.c=20000", "step_size.a=2000"],
                      lambda comm: LocalSGD(problem.worker(comm, step_size=InverseTime(20000, 2000), batch_size=4,
                                                           seed=0, steps=60), LocalSGDOptions(period=4))),
        "compressed_sgd": (["train.algorithm=compressed_sgd", "compressed_sgd.compressor=top_k_natural_dithering",
                            "compressed_sgd.k=15", "compressed_sgd.levels=4", "train.batch_size=32",
                            "train.steps=60", "step_size.value=4"],
                           lambda comm: CompressedSGD(problem.worker(comm, step_size=Constant(4.0), batch_size=32,
                                                                     seed=0, steps=60),
                                                      CompressedSGDOptions(compressor="top_k_natural_dithering",
                                                                           k=15, levels=4))),
    }
    for name, (overrides, build) in cases.items():
        def body(comm):
            method = build(comm)
            method.run_steps(0, 60)
            return method.evaluation_point()

        x_threads = problem.run(ranks, body)
        x_mpi, _ = train_mpi(tmp_path / name, ranks, [*W8A, *overrides, "run.log_every=60"])
        if ranks == 2:
            assert x_threads.tobytes() == x_mpi.tobytes(), name
        else:
            np.testing.assert_allclose(x_threads, x_mpi, rtol=1e-12, atol=1e-15, err_msg=name)
        # the experiments score a model by its loss alone: the same bits as the full evaluation
        full = Evaluator(MPI.COMM_SELF, problem.objective, problem.n, problem.f_star).evaluate(x_threads)
        assert problem.suboptimality(x_threads) == full["suboptimality"]
