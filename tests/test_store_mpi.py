"""The RMA parameter store under mpiexec: no lost update, unique versions, exact delays,
bounded push latency while a host computes, clean shutdown, abort on error."""
import json

import pytest

from mpi_run import run_mpi_script

LAYOUTS = ["sharded", "server"]

SUM = """
import json, sys
import numpy as np
from mpi4py import MPI
from mpitrain.comm.store import ParameterStore
comm = MPI.COMM_WORLD
layout, d, n = sys.argv[1], 13, 25
with ParameterStore(comm, d, np.float64, layout=layout, x0=np.arange(d, dtype=float)) as store:
    versions = []
    if store.is_worker:
        out = np.empty(d)
        for i in range(n):
            store.pull(out)
            delta = (comm.rank + 1) * (i + 1) * np.arange(1, d + 1, dtype=float)
            versions.append(store.push(delta))
    everything = comm.gather(versions, root=0)
    comm.Barrier()
    check = None
    if comm.rank == store.workers[0]:
        store.pull(out)
        K = len(store.workers)
        scale = sum((r + 1) * (i + 1) for r in store.workers for i in range(n))
        expected = np.arange(d) + scale * np.arange(1, d + 1)
        check = {"equal": bool(np.array_equal(out, expected)), "version": store.version(), "total": K * n}
    check = comm.bcast(check, root=store.workers[0])  # rank 0 prints: two ranks' lines could interleave
    if comm.rank == 0:
        print(json.dumps(check))
        print(json.dumps({"versions": everything}))
"""


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("nprocs", [2, 4])
def test_no_lost_update_and_unique_versions(tmp_path, nprocs, layout):
    result = run_mpi_script(nprocs, SUM.replace("sys.argv[1]", repr(layout)), tmp_path, timeout=60)
    assert result.returncode == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    check = next(x for x in lines if "equal" in x)
    assert check["equal"] and check["version"] == check["total"]
    per_rank = [v for v in next(x for x in lines if "versions" in x)["versions"] if v]
    for versions in per_rank:
        assert all(a < b for a, b in zip(versions, versions[1:]))
    assert sorted(v for versions in per_rank for v in versions) == list(range(1, check["total"] + 1))


SCHEDULE = """
import json
import numpy as np
from mpi4py import MPI
from mpitrain.comm.store import ParameterStore
comm = MPI.COMM_WORLD
rng = np.random.default_rng(7)
with ParameterStore(comm, 5, layout=LAYOUT) as store:
    workers = store.workers
    # a fixed schedule of (worker, action); every rank draws the same one
    steps = [(int(rng.choice(workers)), str(rng.choice(["pull", "push"]))) for _ in range(60)]
    version, pulled, expected = 0, {}, {w: [] for w in workers}
    for worker, action in steps:      # the sequential model of the store
        if action == "pull":
            pulled[worker] = version
        else:
            version += 1
            if worker in pulled:
                expected[worker].append(version - 1 - pulled[worker])
    buf = np.ones(5)
    for worker, action in steps:      # the same schedule, one step at a time
        if comm.rank == worker:
            store.pull(buf) if action == "pull" else store.push(buf)
        comm.Barrier()
    ok = not store.is_worker or store.delays == expected[comm.rank]
    oks = comm.gather((ok, store.delays), root=0)
    if comm.rank == 0:
        print(json.dumps({"ok": all(o for o, _ in oks), "delays": [d for _, d in oks]}))
"""

SCRIPTED = """
import json
import numpy as np
from mpi4py import MPI
from mpitrain.comm.store import ParameterStore
comm = MPI.COMM_WORLD
with ParameterStore(comm, 5, layout="sharded") as store:
    buf = np.ones(5)
    if comm.rank == 1 % comm.size:
        store.pull(buf)                       # reads version 0
    comm.Barrier()
    if comm.rank == 0:
        for _ in range(3):
            store.pull(buf); store.push(buf)  # versions 1, 2, 3, each tau = 0
    comm.Barrier()
    if comm.rank == 1 % comm.size:
        print(json.dumps({"v": store.push(buf), "delays": store.delays}))
"""


@pytest.mark.parametrize("nprocs", [2, 4])
def test_delay_of_a_scripted_push(tmp_path, nprocs):
    result = run_mpi_script(nprocs, SCRIPTED, tmp_path, timeout=60)
    assert result.returncode == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"v": 4, "delays": [3]}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("nprocs", [2, 4])
def test_delays_follow_a_random_schedule_exactly(tmp_path, nprocs, layout):
    result = run_mpi_script(nprocs, SCHEDULE.replace("LAYOUT", repr(layout)), tmp_path, timeout=60)
    assert result.returncode == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"], report
    assert sum(len(d) for d in report["delays"]) > 10


BUSY = """
import json, time
import numpy as np
from mpi4py import MPI
from mpitrain.comm.store import ParameterStore
comm = MPI.COMM_WORLD
with ParameterStore(comm, 1000, layout=LAYOUT) as store:
    buf = np.ones(1000)
    comm.Barrier()
    if comm.rank == 0 and store.is_worker:
        start = time.perf_counter()           # hosts shard 0 and the counter; no MPI calls
        while time.perf_counter() - start < 2.0:
            sum(range(1000))
    elif comm.rank == 1:
        worst, start = 0.0, time.perf_counter()
        while time.perf_counter() - start < 1.5:
            t = time.perf_counter()
            store.pull(buf); store.push(buf)
            worst = max(worst, time.perf_counter() - t)
            time.sleep(0.01)
        print(json.dumps({"worst": worst}))
"""


@pytest.mark.parametrize("layout", LAYOUTS)
def test_push_latency_bounded_while_host_computes(tmp_path, layout):
    # MPIR_CVAR_NOLOCAL=1 makes MPICH use the network path between local ranks, the
    # path that needs the target's progress (as between nodes); other MPIs ignore it.
    result = run_mpi_script(2, BUSY.replace("LAYOUT", repr(layout)), tmp_path, timeout=60,
                            env={"MPIR_CVAR_NOLOCAL": "1"})
    assert result.returncode == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["worst"] < 0.5


SHUTDOWN = """
import time
import numpy as np
from mpi4py import MPI
from mpitrain.comm.store import ParameterStore
comm = MPI.COMM_WORLD
store = ParameterStore(comm, 100, layout="sharded")
buf = np.ones(100)
for _ in range(comm.rank * 20):    # ranks reach free() at different times, others in it
    store.push(buf)
time.sleep(0.1 * comm.rank)
store.free()
store.free()                       # idempotent
print("freed", comm.rank)
"""


def test_clean_shutdown(tmp_path):
    result = run_mpi_script(4, SHUTDOWN, tmp_path, timeout=60, env={"MPIR_CVAR_NOLOCAL": "1"})
    assert result.returncode == 0, result.output
    assert result.stdout.count("freed") == 4


RAISE = """
import numpy as np
from mpi4py import MPI
from mpitrain.comm.store import ParameterStore
comm = MPI.COMM_WORLD
with ParameterStore(comm, 100) as store:
    buf = np.ones(100)
    for i in range(50):
        store.push(buf)
        if comm.rank == 1 and i == 10:
            raise RuntimeError("worker failed")
    comm.Barrier()
"""


def test_a_rank_that_raises_ends_the_job(tmp_path):
    result = run_mpi_script(2, RAISE, tmp_path, timeout=60)
    assert result.returncode != 0
    assert "worker failed" in result.output


BUDGET = """
import json
import numpy as np
from mpi4py import MPI
from mpitrain.comm.store import ParameterStore
comm = MPI.COMM_WORLD
d, limit = 5, 37
with ParameterStore(comm, d, np.float64, layout="sharded") as store:
    out = np.empty(d)
    pushes, versions = 0, []
    while True:  # every rank races for the last versions of the budget
        store.pull(out)
        version = store.push(np.ones(d), limit=limit)
        if not version:
            break
        pushes += 1
        versions.append(version)
    comm.Barrier()
    version = store.pull(out)
    counts = comm.gather(pushes, root=0)
    every = comm.gather(versions, root=0)
    delays = comm.gather(len(store.delays), root=0)
    comm.Barrier()
    store.restore(out, version)  # a resume with a budget one larger
    comm.Barrier()
    more = comm.allreduce(int(bool(store.push(np.ones(d), limit=version + 1))))
    comm.Barrier()
    after = store.version()
    if comm.rank == 0:
        print(json.dumps({"counts": counts, "version": version, "x": out.tolist(), "delays": delays,
                          "versions": sorted(v for vs in every for v in vs), "more": more, "after": after}))
"""


@pytest.mark.parametrize("nprocs", [2, 4])
def test_pushes_within_a_budget_are_exactly_the_budget(tmp_path, nprocs):
    result = run_mpi_script(nprocs, BUDGET, tmp_path, timeout=60)
    assert result.returncode == 0, result.output
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    assert sum(report["counts"]) == report["version"] == 37 and report["x"] == [37.0] * 5
    assert report["versions"] == list(range(1, 38))  # refused versions were handed back
    assert report["delays"] == report["counts"]  # a refused push records no delay
    assert report["more"] == 1 and report["after"] == 38  # after a restore, one more within a larger budget
