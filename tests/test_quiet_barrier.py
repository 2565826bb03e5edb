"""mpitrain.comm.quiet: waiting ranks sleep instead of spinning, and still wait for everyone."""
import json

import pytest

from mpi_run import run_mpi_script

WAIT = """
import json, time
from mpi4py import MPI
from mpitrain.comm.quiet import quiet_barrier
comm = MPI.COMM_WORLD
comm.Barrier()
wall, cpu = time.perf_counter(), time.process_time()
if comm.rank == 0:
    time.sleep(1.0)              # the working rank; the others wait for it
quiet_barrier(comm)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
report = comm.gather({"wall": wall, "cpu": cpu}, root=0)
if comm.rank == 0:
    print(json.dumps(report))
"""


def test_waiting_ranks_sleep_until_the_last_arrives(tmp_path):
    result = run_mpi_script(3, WAIT, tmp_path, timeout=90)
    assert result.returncode == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for r in report[1:]:
        assert r["wall"] >= 0.95          # it did wait for rank 0
        assert r["cpu"] < 0.25 * r["wall"]  # a blocking Barrier spins: about the whole wall time


def test_bad_sleeps_are_refused():
    from mpi4py import MPI

    from mpitrain.comm.quiet import quiet_barrier

    with pytest.raises(ValueError, match="first_sleep"):
        quiet_barrier(MPI.COMM_SELF, first_sleep=0.0)
    quiet_barrier(MPI.COMM_SELF)  # one rank: returns at once
