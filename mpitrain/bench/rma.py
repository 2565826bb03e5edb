"""Benchmark the RMA parameter store against bare mpi4py RMA, and push latency while a
host computes: ``mpiexec -n 4 python -m mpitrain bench rma [--json]``.

Throughput: for each size d, every worker repeats pull + push for ``--seconds``; the
store (each layout) and a bare ``Lock(0); Get; Accumulate; Unlock(0)`` epoch on a
d-vector hosted by rank 0 run in the same job, one after the other. Reported: pushes per
second over all workers, mean pull+push latency, and the ratios store / bare.

Progress: rank 0 (a host) runs a pure-Python busy loop for ``--compute`` seconds with no
MPI call while rank 1 pulls and pushes a ``--progress-d`` vector every 10 ms; reported is
the longest pull+push, for the store with its progress thread, without it, and for the
bare lock/unlock epoch. Between nodes (or with ``MPIR_CVAR_NOLOCAL=1`` on one node) MPICH
needs the target's progress; inside a node its shared-memory path does not.
Rank 0 prints a table or, with ``--json``, one JSON object; other ranks print nothing.
"""
import json
import os
import sys
import time

import numpy as np
from mpi4py import MPI

from mpitrain.argparsing import ArgumentParser, size_list
from mpitrain.comm.store import ParameterStore

SIZES = "1000,10000,100000,1000000,10000000"


def parse(argv):
    p = ArgumentParser(prog="mpitrain bench rma", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--sizes", type=size_list, default=SIZES, help="comma-separated d values")
    p.add_argument("--layouts", default="sharded,server", help="store layouts to measure")
    p.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    p.add_argument("--compute", type=float, default=0.5, help="host compute time (s)")
    p.add_argument("--progress-d", type=int, default=1000, help="d of the progress test")
    return p.parse_args(argv)


def repeat(comm, active, step, seconds):
    """Run ``step`` on active ranks for ``seconds`` (at least 3 times); return
    (ops per second over all ranks, mean seconds per op)."""
    count, elapsed = 0, 0.0
    comm.Barrier()
    if active:
        start = time.perf_counter()
        while count < 3 or time.perf_counter() - start < seconds:
            step()
            count += 1
        elapsed = time.perf_counter() - start
    total = comm.allreduce(count)
    longest = comm.allreduce(elapsed, op=MPI.MAX)
    busy = comm.allreduce(elapsed)
    return total / longest, busy / total


def bare_window(comm, d):
    return MPI.Win.Allocate(d * 8 if comm.rank == 0 else 0, 8, comm=comm)


def measure_sizes(comm, sizes, layouts, seconds):
    rows = []
    for d in sizes:
        x, delta = np.empty(d), np.full(d, 1.0)
        row = {"d": d}
        win = bare_window(comm, d)

        def bare():
            win.Lock(0, MPI.LOCK_SHARED)
            win.Get(x, 0)
            win.Accumulate(delta, 0, op=MPI.SUM)
            win.Unlock(0)

        row["bare_pushes_per_s"], row["bare_latency_s"] = repeat(comm, True, bare, seconds)
        win.Free()
        for layout in layouts:
            with ParameterStore(comm, d, layout=layout) as store:
                def step():
                    store.pull(x)
                    store.push(delta)
                rate, latency = repeat(comm, store.is_worker, step, seconds)
            row[f"{layout}_pushes_per_s"], row[f"{layout}_latency_s"] = rate, latency
            row[f"{layout}_ratio_pushes"] = rate / row["bare_pushes_per_s"]
            row[f"{layout}_ratio_latency"] = latency / row["bare_latency_s"]
        rows.append(row)
    return rows


def busy(seconds):
    """Compute without MPI calls, as a gradient would."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        sum(range(1000))


def worst_latency(comm, compute, step):
    """Longest ``step`` on rank 1 while rank 0 computes for ``compute`` seconds."""
    comm.Barrier()
    worst = 0.0
    if comm.rank == 0:
        busy(compute)
    elif comm.rank == 1:
        start = time.perf_counter()
        while time.perf_counter() - start < 0.75 * compute:
            t = time.perf_counter()
            step()
            worst = max(worst, time.perf_counter() - t)
            time.sleep(0.01)
    return comm.allreduce(worst, op=MPI.MAX)


def measure_progress(comm, d, compute):
    x, delta = np.empty(d), np.ones(d)
    result = {"compute_s": compute, "d": d}
    for progress in ("thread", "none"):
        if progress == "thread" and MPI.Query_thread() < MPI.THREAD_MULTIPLE:
            continue
        with ParameterStore(comm, d, layout="sharded", progress=progress) as store:
            result[f"store_{progress}_worst_s"] = worst_latency(
                comm, compute, lambda: (store.pull(x), store.push(delta)))
    win = bare_window(comm, d)

    def bare():
        win.Lock(0, MPI.LOCK_SHARED)
        win.Get(x, 0)
        win.Accumulate(delta, 0, op=MPI.SUM)
        win.Unlock(0)

    result["bare_lock_worst_s"] = worst_latency(comm, compute, bare)
    win.Free()
    return result


def table(report):
    lines = [f"ranks {report['nprocs']}  MPIR_CVAR_NOLOCAL={report['nolocal']}"]
    header = f"{'d':>9} {'bare push/s':>12} {'bare lat ms':>11}"
    for layout in report["layouts"]:
        header += f" {layout + ' push/s':>15} {'lat ms':>8} {'ratio push/s':>12} {'ratio lat':>9}"
    lines.append(header)
    for r in report["sizes"]:
        line = f"{r['d']:>9} {r['bare_pushes_per_s']:>12.1f} {1e3 * r['bare_latency_s']:>11.3f}"
        for layout in report["layouts"]:
            line += (f" {r[layout + '_pushes_per_s']:>15.1f} {1e3 * r[layout + '_latency_s']:>8.3f}"
                     f" {r[layout + '_ratio_pushes']:>12.2f} {r[layout + '_ratio_latency']:>9.2f}")
        lines.append(line)
    p = report["progress"]
    lines.append(f"longest pull+push (d={p['d']}) while rank 0 computes {p['compute_s']} s: "
                 + ", ".join(f"{k[:-2]} {v:.4f} s" for k, v in p.items() if k.endswith("_worst_s")))
    return "\n".join(lines)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        if comm.rank == 0:
            print("bench rma needs at least 2 ranks (mpiexec -n 4 ...)", file=sys.stderr)
        return 2
    sizes = args.sizes
    layouts = [s for s in args.layouts.split(",") if s]
    report = {
        "nprocs": comm.size,
        "nolocal": os.environ.get("MPIR_CVAR_NOLOCAL", ""),
        "thread_level": MPI.Query_thread(),
        "layouts": layouts,
        "sizes": measure_sizes(comm, sizes, layouts, args.seconds),
        "progress": measure_progress(comm, args.progress_d, args.compute),
    }
    if comm.rank == 0:
        print(json.dumps(report) if args.json else table(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
