"""Averaging step versus a bare in-place Allreduce of the same buffer.

    mpiexec -n 4 python -m mpitrain bench allreduce [--json] [--sizes 1e3,1e4,...] [--repeats R]

For every d, the three operations below run interleaved in the same job (so machine noise
hits them alike), ``repeats`` times each, on a float64 buffer of d numbers:

- ``bare``:      ``comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)`` (mpi4py, nothing else);
- ``averager``:  ``Averager.average(buf)`` (pre-scale by the rank weight, then the Allreduce),
                 the averaging of synchronous SGD and of Local SGD;
- ``hierarchical``: ``HierarchicalAverager.average_global(buf)`` with one fake node of all
                 ranks on a 1-node job (Reduce + Bcast), shown for reference.

Each timing is the slowest rank's (a collective ends when its last rank does), after a
Barrier; the figure kept is the median over repeats. The ratio averager / bare is what the
target (<= 1.10 for d >= 1e5) is about.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

DEFAULT_SIZES = "1e3,1e4,1e5,1e6,1e7"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m mpitrain bench allreduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma-separated d values (default {DEFAULT_SIZES})")
    p.add_argument("--repeats", type=int, default=0, help="timings per operation and d (default: by size)")
    return p.parse_args(argv)


def default_repeats(d: int) -> int:
    return 200 if d <= 1e4 else 60 if d <= 1e5 else 20 if d <= 1e6 else 7


def timed(comm, buf, fill, op) -> float:
    """Slowest rank's seconds for ``op(buf)`` after refilling ``buf`` (not timed) and a Barrier."""
    from mpi4py import MPI

    buf[...] = fill
    comm.Barrier()
    start = time.perf_counter()
    op(buf)
    elapsed = time.perf_counter() - start
    return comm.allreduce(elapsed, op=MPI.MAX)


def measure(comm, d: int, repeats: int) -> dict:
    from mpi4py import MPI

    from ..comm.averaging import Averager
    from ..comm.hierarchy import HierarchicalAverager, NodeHierarchy

    size = comm.Get_size()
    weight = 1.0 / size
    averager = Averager(comm, weight)
    hierarchy = NodeHierarchy(comm, ranks_per_node=size)
    hierarchical = HierarchicalAverager(hierarchy, weight)
    ops = {
        "bare": lambda b: comm.Allreduce(MPI.IN_PLACE, b, op=MPI.SUM),
        "averager": averager.average,
        "hierarchical": hierarchical.average_global,
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
            "ratio_averager": med["averager"] / med["bare"], "ratio_hierarchical": med["hierarchical"] / med["bare"]}


def main(argv) -> int:
    from mpi4py import MPI

    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    rows = [measure(comm, d, args.repeats or default_repeats(d)) for d in sizes]
    if comm.Get_rank() != 0:
        return 0
    if args.json:
        print(json.dumps({"ranks": comm.Get_size(), "dtype": "float64", "rows": rows}))
        return 0
    print(f"allreduce bench: {comm.Get_size()} ranks, float64, median of repeats, slowest rank")
    print(f"{'d':>10} {'bare (s)':>12} {'averager (s)':>13} {'ratio':>7} {'hierarchical (s)':>17} {'ratio':>7}")
    for r in rows:
        print(f"{r['d']:>10} {r['bare_seconds']:>12.3e} {r['averager_seconds']:>13.3e} {r['ratio_averager']:>7.3f} "
              f"{r['hierarchical_seconds']:>17.3e} {r['ratio_hierarchical']:>7.3f}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
