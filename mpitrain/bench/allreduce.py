"""Averaging step versus a bare in-place Allreduce of the same buffer.

    mpiexec -n 4 python -m mpitrain bench allreduce [--json] [--sizes 1e3,1e4,...] [--repeats R]

For every d, the operations below run interleaved in the same job (so machine noise hits
them alike), ``repeats`` times each, on float64 buffers of d numbers. An averaging round of
Local SGD is "last local step, then average"; mpitrain folds the rank weight w_k = n_k / N
into that step (one fused pass, ``scaled_update``), so the average itself is a bare Allreduce:

- ``bare``:      the plain step ``x -= eta g``, then ``comm.Allreduce(MPI.IN_PLACE, x)``
                 (mpi4py, nothing else): what averaging cannot cost less than;
- ``averager``:  the weighted step ``x = w (x - eta g)``, then ``Averager.average(x,
                 prescaled=True)``: the averaging round as sync SGD and Local SGD run it;
- ``unfused``:   the plain step, then ``Averager.average(x)`` scaling x in a pass of its own
                 (what the weighting costs when it is not folded), for reference;
- ``hierarchical``: the plain step, then ``HierarchicalAverager.average_global(x)`` with one
                 fake node of all ranks on a 1-node job (Reduce + Bcast), for reference.

Each timing is the slowest rank's (a collective ends when its last rank does), after a
Barrier; the figure kept is the median over repeats. The ratio averager / bare is what the
target (<= 1.10 for d >= 1e5) is about; ``allreduce_seconds`` is the Allreduce alone.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from mpi4py import MPI

from ..argparsing import ArgumentParser, size_list

DEFAULT_SIZES = "1e3,1e4,1e5,1e6,1e7"


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain bench allreduce", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--sizes", type=size_list, default=DEFAULT_SIZES, help=f"comma-separated d values (default {DEFAULT_SIZES})")
    p.add_argument("--repeats", type=int, default=0, help="timings per operation and d (default: by size)")
    return p.parse_args(argv)


def default_repeats(d: int) -> int:
    return 200 if d <= 1e4 else 60 if d <= 1e5 else 20 if d <= 1e6 else 7


def timed(comm, buf, fill, op) -> float:
    """Slowest rank's seconds for ``op(buf)`` after refilling ``buf`` (not timed) and a Barrier."""
    buf[...] = fill
    comm.Barrier()
    start = time.perf_counter()
    op(buf)
    elapsed = time.perf_counter() - start
    return comm.allreduce(elapsed, op=MPI.MAX)


def measure(comm, d: int, repeats: int) -> dict:
    from .._native.vector import scaled_update
    from ..comm.averaging import Averager
    from ..comm.hierarchy import HierarchicalAverager, NodeHierarchy

    size = comm.Get_size()
    weight = 1.0 / size
    averager = Averager(comm, weight)
    hierarchy = NodeHierarchy(comm, ranks_per_node=size)
    hierarchical = HierarchicalAverager(hierarchy, weight)
    g = np.random.default_rng(comm.Get_rank()).standard_normal(d)
    eta = 0.01

    def bare(x):
        scaled_update(x, g, -eta)
        comm.Allreduce(MPI.IN_PLACE, x, op=MPI.SUM)

    def averaged(x):
        scaled_update(x, g, -eta, weight)
        averager.average(x, prescaled=True)

    def unfused(x):
        scaled_update(x, g, -eta)
        averager.average(x)

    def hier(x):
        scaled_update(x, g, -eta)
        hierarchical.average_global(x)

    ops = {
        "bare": bare,
        "averager": averaged,
        "unfused": unfused,
        "hierarchical": hier,
        "allreduce": lambda x: comm.Allreduce(MPI.IN_PLACE, x, op=MPI.SUM),
    }
    buf = np.empty(d, dtype=np.float64)
    fill = float(comm.Get_rank() + 1)
    times = {name: [] for name in ops}
    for name, op in ops.items():  # warm-up: first-touch pages, MPI internal buffers
        timed(comm, buf, fill, op)
    for _ in range(repeats):
        for name, op in ops.items():
            times[name].append(timed(comm, buf, fill, op))
    hierarchy.free()
    med = {name: statistics.median(values) for name, values in times.items()}
    return {"d": d, "repeats": repeats, **{f"{name}_seconds": med[name] for name in ops},
            "ratio_averager": med["averager"] / med["bare"], "ratio_unfused": med["unfused"] / med["bare"],
            "ratio_hierarchical": med["hierarchical"] / med["bare"]}


def main(argv) -> int:
    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    sizes = args.sizes
    rows = [measure(comm, d, args.repeats or default_repeats(d)) for d in sizes]
    if comm.Get_rank() != 0:
        return 0
    if args.json:
        print(json.dumps({"ranks": comm.Get_size(), "dtype": "float64", "rows": rows}))
        return 0
    print(f"allreduce bench: {comm.Get_size()} ranks, float64, median of repeats, slowest rank")
    print(f"{'d':>10} {'allreduce (s)':>13} {'step+bare (s)':>14} {'step+averager (s)':>18} {'ratio':>6} "
          f"{'unfused ratio':>13} {'hierarchical ratio':>18}")
    for r in rows:
        print(f"{r['d']:>10} {r['allreduce_seconds']:>13.3e} {r['bare_seconds']:>14.3e} {r['averager_seconds']:>18.3e} "
              f"{r['ratio_averager']:>6.3f} {r['ratio_unfused']:>13.3f} {r['ratio_hierarchical']:>18.3f}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
