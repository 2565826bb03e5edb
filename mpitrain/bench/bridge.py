"""Per-step time of mpitrain's methods through the PyTorch bridge beside plain PyTorch and DDP/gloo.

    python -m mpitrain bench bridge [--sizes 1e4,1e5,1e6,1e7] [--ranks 1,2] [--rounds 7]
                                    [--block-seconds 0.4] [--quick] [--json]

The model: an MLP d -> h -> h -> C (Linear, ReLU, Linear, ReLU, Linear), d = 128 dense float32
inputs (standard normal), C = 10 classes (uniform labels), mean cross-entropy, h chosen so that
the parameter count is about each of ``--sizes``; b = 32 rows per rank and step, plain SGD with
a constant eta = 0.05, no weight decay. Every contender starts from the same weights and trains
on the same rows (this rank's shard of 4,096). For every K of ``--ranks`` the bench launches one
job, ``mpiexec -n K python -m mpitrain.bench.bridge_worker`` (the mpiexec beside this Python,
else the one on PATH; OMP_NUM_THREADS=1 and ``torch.set_num_threads(1)``: one thread per rank;
one machine), with a time limit, so it cannot hang. In it, per size (the worker's docstring has
the details):

- ``plain``: plain PyTorch, no communication (forward, backward, ``torch.optim.SGD(fused=True)``);
- ``DDP/gloo`` (K > 1): the same module in ``DistributedDataParallel`` over a gloo group of the
  same K processes (started by the same mpiexec, RANK and WORLD_SIZE from MPI);
- ``bridge sync_sgd``: ``algorithm.run_steps`` of a ``mpitrain.train.Trainer`` on the module's
  ``TorchObjective``, as ``mpitrain.torch.train`` runs it: batch gradient by autograd into the
  flat buffer, one in-place MPI Allreduce of it (K > 1), ``scaled_update``;
- ``bridge local_sgd`` (K > 1): the same with Local SGD, H = 8 (one Allreduce of x per 8 steps),
  for context: it does less communication than the others.

An agreement check comes first: equal weights, and the bridge's loss and (rank-averaged) gradient
on the same batch equal to plain PyTorch's (K = 1) or DDP's (K > 1) within 1e-4 relative; a
mismatch ends the job (exit status 1). Then a warm-up, a block of steps (a multiple of 8) fitted
so that the slowest contender takes about ``--block-seconds``, and ``--rounds`` rounds of one
block of each contender in turn, the order reversed every other round, a Barrier before each
block; a block's time is the slowest rank's. ``ms/step`` is the median over rounds; a ratio is the
median over rounds of the ratio of the two blocks of that round (paired: slow phases of a shared
machine hit both alike). ``cpu`` figures are rank 0's process CPU time per step (they leave out
the time the process waited for a core; at K > 1 they include MPI's and gloo's polling threads).

Targets (issue): with one rank the bridge's overhead over plain PyTorch, bridge / plain - 1, is
at most 10 % at 1e6 parameters; on 2 ranks sync_sgd through the bridge is at least as fast as
DDP/gloo (ratio sync_sgd / DDP <= 1) at every size. The bench measures; ``met`` reports, nothing
is asserted. ``--json`` prints one JSON object: the header, and per K its sizes with every round
(``overhead`` and ``cpu_overhead``, sync_sgd / plain - 1, are there at every K; at K > 1 they
include the Allreduce).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ..argparsing import ArgumentParser, seconds, size_list, user_error
from . import bridge_setup as worker
from .launch import run_worker
from .machine import incomplete, print_provenance, provenance

OVERHEAD_TARGET = 0.10  # bridge / plain - 1 on one rank, at OVERHEAD_SIZE parameters
OVERHEAD_SIZE = 1_000_000
DDP_TARGET = 1.0  # sync_sgd / DDP per-step time on every size, K > 1
NAMES = {"plain": "plain torch", "ddp": "DDP/gloo", "sync_sgd": "bridge sync_sgd",
         "local_sgd": f"bridge local_sgd H={worker.PERIOD}"}
FULL = {"rounds": 7, "block_seconds": 0.4}
QUICK = {"rounds": 2, "block_seconds": 0.02}
NO_TORCH = ("bench bridge needs PyTorch: `pip install 'mpitrain[torch]'`, or `make .venv-torch/.deps` and run "
            "`PYTHONPATH=$PWD .venv-torch/bin/python -m mpitrain bench bridge`")


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain bench bridge", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=size_list, default=[10_000, 100_000, 1_000_000, 10_000_000],
                   help="parameter counts of the MLPs (default 1e4,1e5,1e6,1e7)")
    p.add_argument("--ranks", type=size_list, default=[1, 2], help="comma-separated K values (default 1,2)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7; 2 with --quick)")
    p.add_argument("--block-seconds", type=seconds, default=None,
                   help="the slowest contender's time per block (default 0.4; 0.02 with --quick)")
    p.add_argument("--timeout", type=seconds, default=1200.0, help="seconds one K-rank job may take (default 1200)")
    p.add_argument("--quick", action="store_true", help="short blocks and few rounds (a smoke test)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    args.rounds = defaults["rounds"] if args.rounds is None else args.rounds
    args.block_seconds = defaults["block_seconds"] if args.block_seconds is None else args.block_seconds
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    return args


def mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def paired_ratio(numerator: list, denominator: list) -> float:
    """Median over rounds of numerator[r] / denominator[r]."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def add_ratios(size: dict, ranks: int) -> None:
    """Overhead over plain torch (K = 1), ratios to DDP (K > 1), and whether each target is met."""
    wall, cpu_ms = size["rounds_ms"], size["cpu_rounds_ms_rank0"]
    size["overhead"] = paired_ratio(wall["sync_sgd"], wall["plain"]) - 1.0
    size["cpu_overhead"] = paired_ratio(cpu_ms["sync_sgd"], cpu_ms["plain"]) - 1.0
    size["sync_over_ddp"] = size["local_over_ddp"] = size["met"] = None
    if ranks == 1:
        if size["target"] == OVERHEAD_SIZE:
            size["met"] = size["overhead"] <= OVERHEAD_TARGET
    else:
        size["sync_over_ddp"] = paired_ratio(wall["sync_sgd"], wall["ddp"])
        size["local_over_ddp"] = paired_ratio(wall["local_sgd"], wall["ddp"])
        size["met"] = size["sync_over_ddp"] <= DDP_TARGET


def launch(ranks: int, args, folder: Path) -> dict:
    """One bridge_worker job on ``ranks`` ranks; its result plus ``completed`` and ``error``."""
    out = folder / f"K{ranks}.json"
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpitrain.bench.bridge_worker", "--out", str(out),
           "--sizes", ",".join(map(str, args.sizes)), "--block-seconds", repr(args.block_seconds),
           "--rounds", str(args.rounds), "--output-dir", str(folder / f"runs-K{ranks}")]
    started = time.time()
    code, error, result = run_worker(cmd, out, args.timeout)
    if code == 0 and not result:
        error = "the worker wrote no result"
    run = {"ranks": ranks, "completed": bool(result), "returncode": code, "error": error,
           "wall_seconds": time.time() - started, **result}
    for size in run.get("sizes", []):
        add_ratios(size, ranks)
    return run


def targets(runs: list) -> dict:
    """Each target: met (True/False), or None when no run measured it."""
    one = [s for r in runs if r["completed"] and r["ranks"] == 1 for s in r["sizes"] if s["met"] is not None]
    many = [s for r in runs if r["completed"] and r["ranks"] == 2 for s in r["sizes"]]
    return {"overhead_1e6_one_rank": all(s["met"] for s in one) if one else None,
            "sync_sgd_vs_ddp_two_ranks": all(s["met"] for s in many) if many else None}


def header(args, argv) -> dict:
    return {**provenance("bridge", argv),
            "model": f"MLP {worker.N_FEATURES} -> h -> h -> {worker.N_CLASSES} (ReLU), cross-entropy, float32",
            "batch_size": worker.BATCH, "step_size": worker.STEP_SIZE, "period": worker.PERIOD,
            "n_rows": worker.N_ROWS, "rounds": args.rounds, "block_seconds": args.block_seconds,
            "sizes": args.sizes, "ranks": args.ranks, "overhead_target": OVERHEAD_TARGET,
            "overhead_size": OVERHEAD_SIZE, "ddp_target": DDP_TARGET}


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3g}" if value < 10 else f"{value:.1f}"


def _yes(value) -> str:
    return "-" if value is None else ("yes" if value else "no")


def print_table(head: dict, runs: list) -> None:
    print(f"bench bridge: {head['model']}, b = {head['batch_size']} per rank, SGD eta = {head['step_size']:g}; "
          f"ms per step, median of {head['rounds']} interleaved blocks (~{head['block_seconds']:g} s), slowest rank")
    print_provenance(head)
    for run in runs:
        print()
        if incomplete(run):
            print(incomplete(run))
            continue
        print(f"K = {run['ranks']} (torch {run['torch']}, {run['torch_threads']} thread per rank)")
        if run["ranks"] == 1:
            print(f"{'params':>11} {'h':>5} {'plain torch':>12} {'bridge sync_sgd':>16} {'overhead':>9} "
                  f"{'cpu overhead':>13} {'met':>4}")
            for s in run["sizes"]:
                ms = s["ms_per_step"]
                print(f"{s['n_params']:>11,} {s['hidden']:>5} {_ms(ms['plain']):>12} {_ms(ms['sync_sgd']):>16} "
                      f"{s['overhead']:>+9.0%} {s['cpu_overhead']:>+13.0%} {_yes(s['met']):>4}")
        else:
            print(f"{'params':>11} {'h':>5} {'plain torch':>12} {'DDP/gloo':>9} {'bridge sync_sgd':>16} "
                  f"{'sync/DDP':>9} {'met':>4} {NAMES['local_sgd']:>20} {'local/DDP':>10}")
            for s in run["sizes"]:
                ms = s["ms_per_step"]
                print(f"{s['n_params']:>11,} {s['hidden']:>5} {_ms(ms['plain']):>12} {_ms(ms['ddp']):>9} "
                      f"{_ms(ms['sync_sgd']):>16} {s['sync_over_ddp']:>9.2f} {_yes(s['met']):>4} "
                      f"{_ms(ms['local_sgd']):>20} {s['local_over_ddp']:>10.2f}")
    found = targets(runs)
    print()
    print(f"target: bridge overhead <= {head['overhead_target']:.0%} over plain torch at {head['overhead_size']:,.0f} "
          f"parameters, one rank: {_met(found['overhead_1e6_one_rank'])}")
    print(f"target: bridge sync_sgd / DDP/gloo <= {head['ddp_target']:g} at every size, 2 ranks: "
          f"{_met(found['sync_sgd_vs_ddp_two_ranks'])}")


def _met(value) -> str:
    return "not measured" if value is None else ("met" if value else "not met")


def main(argv) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("torch") is None:
        return user_error(NO_TORCH)
    head = header(args, argv)
    with tempfile.TemporaryDirectory(prefix="mpitrain-bridge-") as folder:
        runs = []
        for ranks in args.ranks:
            runs.append(launch(ranks, args, Path(folder)))
            run = runs[-1]
            state = "done" if run["completed"] else f"not completed ({run['error']})"
            print(f"bench bridge: K = {ranks}: {state} in {run['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({**head, "runs": runs, "targets": targets(runs)}))
    else:
        print_table(head, runs)
    return 0 if all(run["completed"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
