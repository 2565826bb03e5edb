"""Steps per second of mpitrain's training methods beside a plain C loop of the same math.

    python -m mpitrain bench steps [--seconds 1.5] [--rounds 3] [--ranks 1,2] [--json]

The problem is one SGD step on LIBSVM w8a (49,749 x 300, sparse): L2-regularised logistic
regression (lambda = 1/n), mini-batch b = 32 per rank, float64, a constant step size, no
evaluation and no f* inside the timed part. Start it without mpiexec: for every K of
``--ranks`` it launches ``mpiexec -n K python -m mpitrain.bench.steps_worker`` (the mpiexec
beside this Python, else the one on PATH; OMP_NUM_THREADS=1) with a time limit, so it cannot
hang; a job that overruns is killed and reported. The worker's docstring says how each
figure is timed: a warm-up, a step count fitted to ``--seconds / --rounds``, ``--rounds``
interleaved rounds in the same job (so machine noise hits every row alike), the slowest
rank's time, the median over rounds. The machine is shared and noisy: read the ratios, which
compare rows of the same run, not the absolute rates. The bench measures; it asserts nothing.

Rows, per K (each rank steps on its own shard of w8a):

- ``C reference``: the textbook SGD loop in C (``pyx/reference_loop.pyx``: draw b rows,
  sparse dot, sigmoid, sparse axpy into a dense g, g/b + lambda x, x -= eta g), many steps in
  one call without the GIL: what one step of this math costs with nothing around it.
- ``C step, one Python call a step``: the same loop called from Python once per step.
- ``bare Allreduce`` (K > 1): ``comm.Allreduce(MPI.IN_PLACE, g)`` of d = 300 float64 numbers
  in a Python loop (mpi4py, nothing else); its rate is Allreduces per second.
- ``C step + bare Allreduce`` (K > 1): one C step and one bare Allreduce of its gradient
  buffer per iteration, from Python: a synchronous step with nothing of mpitrain in it (the
  Allreduce follows the update here; the cost is that of gradient, Allreduce, update).
- the methods: ``algorithm.step(t)`` of a :class:`mpitrain.train.Trainer` built from the
  config (see ``steps_methods.METHODS``): sync_sgd (blocks of steps in one C call, Allreduce
  included) and beside it sync_sgd stepped one Python call a step (``MPITRAIN_BLOCKS=0``, the
  path networks take); local_sgd with H = 8 and H = 64;
  compressed_sgd with Top-k (k = 30) and with the w8a job's Top-k + natural dithering
  (k = 15, s = 4), both with error feedback; compressed_local_sgd (H = 8, Top-k k = 30);
  hierarchical_local_sgd (a node average every 4 steps, a global one every 16; one machine
  is one node). The asynchronous methods are left out: their workers are not in lock step,
  so one rank's step rate says little about the run (``bench scale`` runs them).

Columns:

- ``comm``: the share of a method's steps that communicate (1: every step; 1/8: one step in
  eight averages; 0: none). At K = 1 nothing travels, but the steps are the same code.
- ``steps/s``: steps per second over whole rounds, communicating steps included (the
  slowest rank's; for ``bare Allreduce``, Allreduces per second).
- ``local steps/s``: methods with local steps only: the steps that do not communicate,
  per second of the time spent in them (each step timed on its own; the clock reads add
  about 0.1 us a step). The Local SGD speed work is about this figure.
- ``/ C``: the method's rate over the C reference's rate at the same K: steps/s for
  synchronous methods, local steps/s for local ones (1.0 would be "as fast as plain C";
  at K = 2 both ranks share the machine's cores, and the C reference ran under the same load).
- ``/ floor`` (K > 1): steps/s over 1 / (t_C + comm x t_AR), where t_C = 1 / (C reference
  rate) and t_AR = 1 / (bare Allreduce rate): what a step that computes like the C loop and
  communicates by one bare Allreduce (every step, or once a period) could reach. It is a
  yardstick, not a strict bound for the compressed methods (they send an Allgatherv of a
  smaller payload) nor for the hierarchical one (a global average is Reduce + Allreduce + Bcast).

``--json`` prints one JSON object: the header fields, and per K the rows with every figure
above (``ratio_c``, ``ratio_floor``, ``floor_steps_per_second``) and the rates of each round.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from ..argparsing import ArgumentParser, seconds, size_list
from ..progress import Countdown
from .launch import run_worker
from .machine import incomplete, print_provenance, provenance
from .steps_methods import BATCH, METHODS, STEP_SIZE

REFERENCE_ROWS = 4  # C loop, C step from Python, bare Allreduce, C step + bare Allreduce


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain bench steps", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=seconds, default=1.5,
                   help="time budget of each measurement, over all its rounds (default 1.5)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is kept (default 3)")
    p.add_argument("--ranks", type=size_list, default=[1, 2], help="comma-separated K values (default 1,2)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    return args


def mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def time_limit(seconds: float) -> float:
    """Seconds one K-rank job may take: set-up (data, trainers) plus every measurement, thrice."""
    return 180.0 + 3.0 * (len(METHODS) + REFERENCE_ROWS) * seconds


def launch(ranks: int, args, folder: Path) -> dict:
    """Run one steps_worker job on ``ranks`` ranks; its result plus ``completed`` and ``error``."""
    out = folder / f"K{ranks}.json"
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpitrain.bench.steps_worker", "--out", str(out),
           "--seconds", repr(args.seconds), "--rounds", str(args.rounds), "--output-dir", str(folder / f"runs-K{ranks}")]
    started = time.time()
    code, error, result = run_worker(cmd, out, time_limit(args.seconds))
    if code == 0 and not result:
        error = "the worker wrote no result"
    run = {"ranks": ranks, "completed": bool(result), "returncode": code, "error": error,
           "wall_seconds": time.time() - started, **result}
    if result:
        add_ratios(run["rows"], ranks)
    return run


def add_ratios(rows: list, ranks: int) -> None:
    """Add ``ratio_c`` and, for K > 1, ``floor_steps_per_second`` and ``ratio_floor`` (module doc)."""
    by_name = {row["name"]: row for row in rows}
    c_rate = by_name["C reference"]["steps_per_second"]
    t_ar = 1.0 / by_name["bare Allreduce"]["steps_per_second"] if ranks > 1 else None
    for row in rows:
        row["ratio_c"] = row["ratio_floor"] = row["floor_steps_per_second"] = None
        if row["name"] == "bare Allreduce":
            continue
        rate = row["local_steps_per_second"] if row["kind"] == "local" else row["steps_per_second"]
        row["ratio_c"] = rate / c_rate
        if t_ar is not None and row["comm_fraction"] > 0:
            row["floor_steps_per_second"] = 1.0 / (1.0 / c_rate + row["comm_fraction"] * t_ar)
            row["ratio_floor"] = row["steps_per_second"] / row["floor_steps_per_second"]


def header(args, argv) -> dict:
    return {**provenance("steps", argv), "dataset": "w8a", "objective": "logistic, l2 = 1/n",
            "batch_size": BATCH, "dtype": "float64", "step_size": STEP_SIZE, "seconds": args.seconds,
            "rounds": args.rounds, "ranks": args.ranks}


def _number(value, digits=0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _share(fraction: float) -> str:
    return str(Fraction(fraction).limit_denominator(1000))


def print_table(head: dict, runs: list) -> None:
    print(f"bench steps: w8a, {head['objective']}, b = {head['batch_size']}, {head['dtype']}, "
          f"constant eta = {head['step_size']}; median of {head['rounds']} interleaved rounds, "
          f"{head['seconds']} s per measurement, slowest rank")
    print_provenance(head)
    for run in runs:
        print()
        if incomplete(run):
            print(incomplete(run))
            continue
        print(f"K = {run['ranks']} ({run['n_local_rows_rank0']:,} rows on rank 0)")
        print(f"{'':<44} {'comm':>5} {'steps/s':>10} {'local steps/s':>13} {'/ C':>6} {'/ floor':>7}")
        for row in run["rows"]:
            print(f"{row['name']:<44} {_share(row['comm_fraction']):>5} {_number(row['steps_per_second']):>10} "
                  f"{_number(row['local_steps_per_second']):>13} {_number(row['ratio_c'], 3):>6} "
                  f"{_number(row['ratio_floor'], 3):>7}")
        rows = {row["name"]: row for row in run["rows"]}
        t_c = 1e6 / rows["C reference"]["steps_per_second"]
        line = f"t_C = {t_c:.2f} us a C step"
        if "bare Allreduce" in rows:
            line += f", t_AR = {1e6 / rows['bare Allreduce']['steps_per_second']:.2f} us a bare Allreduce"
        print(line)


def main(argv) -> int:
    args = parse_args(argv)
    head = header(args, argv)
    with tempfile.TemporaryDirectory(prefix="mpitrain-steps-") as folder:
        countdown, runs = Countdown(len(args.ranks)), []
        for ranks in args.ranks:  # one mpiexec job each; the table comes at the end, on stdout
            runs.append(launch(ranks, args, Path(folder)))
            print(f"bench steps: K = {ranks} {countdown.tick()}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({**head, "runs": runs}))
    else:
        print_table(head, runs)
    return 0 if all(run["completed"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
