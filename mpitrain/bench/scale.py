"""Load and memory of the four training methods: many ranks, a large model, many steps.

    python -m mpitrain bench scale ranks  [--ranks 64] [--steps 200] [--algorithms ...] [--json]
    python -m mpitrain bench scale memory [--d 1e7] [--steps 300] [--ranks 2] [--json]
    python -m mpitrain bench scale steady [--d 1e5] [--steps 10000] [--ranks 2] [--json]

Start it without mpiexec: for every algorithm (default sync_sgd, local_sgd, compressed_sgd,
async_sgd; ``--algorithms`` also takes compressed_local_sgd) it launches
``mpiexec -n K python -m mpitrain.bench.scale_worker`` (the
mpiexec beside this Python, else the one on PATH), one job at a time, with a time limit
(a job that overruns is killed and reported as not completed), and prints one table.

- ``ranks``:  the w8a job of ``jobs/configs/w8a_<algorithm>.toml`` (else ``<algorithm>.toml``)
  for ``--steps`` steps per worker (async_sgd: ``max_updates`` = steps x K) on K ranks.
  Reports whether it completed, the wall time of the whole mpiexec, the start-up time (until every rank has built its
  problem and algorithm), the training time (slowest rank, evaluation excluded), and the
  peak resident memory per rank (max and median over ranks, MB = 2^20 bytes).
- ``memory``: a sparse synthetic logistic regression with d features and few samples (10
  nonzeros a row), so the d-sized vectors dominate. Reports, per algorithm, the peak
  resident memory minus the same process's before the problem was built, as a multiple of
  the parameter vector's 8d bytes (float64; max over ranks), and the part already held once
  the problem and the algorithm are built ("held", the rest are temporaries of a step or
  an evaluation).
- ``steady``: the same problem with d features for ``--steps`` steps; reports the growth
  of every rank's resident memory between step ``--from-step`` and the last step, and over
  the second half of that span (max over ranks; a one-off rise early on shows in the
  first figure only, a leak in both). Evaluations run every 1000 steps as in a normal run; async_sgd keeps no
  snapshots here (its rank 0 stores one copy of x every ``run.log_every`` versions by
  design, which would be growth by intent).

One-shot numbers: each job runs once.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ..argparsing import ArgumentParser
from .launch import run_worker


ALGORITHMS = ("sync_sgd", "local_sgd", "compressed_sgd", "async_sgd")
EXTRA_ALGORITHMS = ("compressed_local_sgd",)  # accepted by --algorithms, not run by default
CONFIGS = Path(__file__).resolve().parents[2] / "jobs" / "configs"
QUIET = ["run.progress=false", "run.save_parameters=false"]


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain bench scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    defaults = {"ranks": dict(ranks=64, steps=200, d=None), "memory": dict(ranks=2, steps=300, d="1e7"),
                "steady": dict(ranks=2, steps=10000, d="1e5")}
    for mode, values in defaults.items():
        q = sub.add_parser(mode)
        q.add_argument("--ranks", type=int, default=values["ranks"], help=f"mpiexec -n (default {values['ranks']})")
        q.add_argument("--steps", type=int, default=values["steps"], help=f"steps per worker (default {values['steps']})")
        q.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated (default: all four)")
        q.add_argument("--timeout", type=float, default=900.0, help="seconds per job before it is killed")
        q.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        if values["d"] is not None:
            q.add_argument("--d", default=values["d"], help=f"number of features (default {values['d']})")
            q.add_argument("--samples", type=int, default=200, help="synthetic samples in all (default 200)")
        if mode == "steady":
            q.add_argument("--from-step", type=int, default=1000, help="growth is measured from this step")
    args = p.parse_args(argv)
    for name in args.algorithms.split(","):
        if name not in ALGORITHMS + EXTRA_ALGORITHMS:
            p.error(f"--algorithms: unknown algorithm {name!r}; known: {', '.join(ALGORITHMS + EXTRA_ALGORITHMS)}")
    if args.ranks < 1 or args.steps < 1:
        p.error("--ranks and --steps must be >= 1")
    if getattr(args, "from_step", 1) >= args.steps:
        p.error(f"--from-step ({args.from_step}) must be below --steps ({args.steps})")
    return args


def mpiexec():
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def config_file(name: str) -> Path:
    """The w8a job of ``name``: ``w8a_<name>.toml``, or ``<name>.toml`` where only that exists."""
    w8a = CONFIGS / f"w8a_{name}.toml"
    return w8a if w8a.exists() else CONFIGS / f"{name}.toml"


def launch(ranks: int, overrides: list, probes: list, timeout: float, folder: Path, name: str) -> dict:
    """Run one scale_worker job; return its result dict plus ``completed`` and ``wall_seconds``."""
    out = folder / f"{name}.json"
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpitrain.bench.scale_worker",
           "--out", str(out), "--probes", ",".join(map(str, probes)),
           "--config", str(config_file(name))]
    for assignment in [*QUIET, f"run.output_dir={folder / name}", *overrides]:
        cmd += ["--set", assignment]
    started = time.time()
    cmd[cmd.index("--out"):cmd.index("--out")] = ["--launched", repr(started)]
    code, error, result = run_worker(cmd, out, timeout)
    return {"algorithm": name, "completed": bool(result), "wall_seconds": time.time() - started, "returncode": code,
            "error": error, **result}


def synthetic(d: int, samples: int) -> list:
    """Overrides for a sparse synthetic problem with d features, 10 nonzeros a row, f* not computed."""
    return ["data.dataset=synthetic-classification", f"data.n_features={d}", f"data.n_samples={samples}",
            f"data.density={min(1.0, 10.0 / d)!r}", "run.reference=false",
            "step_size.schedule=constant", "step_size.value=0.5"]


def budget(name: str, steps: int, ranks: int, snapshots: bool = True) -> list:
    """Step-count overrides: train.steps, and for async_sgd a budget of steps x K updates."""
    out = [f"train.steps={steps}"]
    if name == "async_sgd":
        out += [f"async_sgd.max_updates={steps * ranks}", "async_sgd.max_seconds=3600.0"]
        if not snapshots:
            out += [f"run.log_every={steps * ranks + 1}"]
    return out


def peaks(row: dict) -> list:
    return [r["peak_mb"] for r in row.get("per_rank", [])]


def run_ranks(args, folder: Path) -> list:
    rows = []
    for name in args.algorithms.split(","):
        row = launch(args.ranks, budget(name, args.steps, args.ranks), [], args.timeout, folder, name)
        if row["completed"]:
            p = peaks(row)
            row.update(peak_mb_max=max(p), peak_mb_median=statistics.median(p))
        rows.append(row)
    return rows


def run_memory(args, folder: Path) -> list:
    d = int(float(args.d))
    vector_mb = 8 * d / 2**20
    rows = []
    for name in args.algorithms.split(","):
        overrides = [*synthetic(d, args.samples), *budget(name, args.steps, args.ranks, snapshots=False)]
        if name != "async_sgd":
            overrides.append(f"run.log_every={args.steps}")
        row = launch(args.ranks, overrides, [1], args.timeout, folder, name)
        if row["completed"]:
            ranks = row["per_rank"]
            row.update(vector_mb=vector_mb,
                       multiple=max((r["peak_mb"] - r["baseline_mb"]) / vector_mb for r in ranks),
                       held_multiple=max((r["probe_mb"]["1"] - r["baseline_mb"]) / vector_mb for r in ranks))
        rows.append(row)
    return rows


def growth(ranks: list, first: int, last: int):
    """The largest growth of resident memory (MB) from step ``first`` to step ``last`` over ranks."""
    return max((r["probe_mb"][str(last)] - r["probe_mb"][str(first)] for r in ranks), default=None)


def run_steady(args, folder: Path) -> list:
    d = int(float(args.d))
    rows = []
    for name in args.algorithms.split(","):
        overrides = [*synthetic(d, args.samples), *budget(name, args.steps, args.ranks, snapshots=False)]
        if name != "async_sgd":
            overrides.append("run.log_every=1000")
        middle = (args.from_step + args.steps) // 2
        row = launch(args.ranks, overrides, [args.from_step, middle, args.steps], args.timeout, folder, name)
        if row["completed"]:
            ranks = [r for r in row["per_rank"] if str(middle) in r["probe_mb"]]  # ranks that got that far
            row.update(growth_mb_max=growth(ranks, args.from_step, args.steps),
                       second_half_growth_mb_max=growth(ranks, middle, args.steps),
                       last_step_min=min(r["steps"] for r in row["per_rank"]))
        rows.append(row)
    return rows


def _mb(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _status(row) -> str:
    return "yes" if row["completed"] else f"no ({row['error']})"


def print_table(args, rows) -> None:
    if args.mode == "ranks":
        print(f"bench scale ranks: w8a, {args.ranks} ranks, {args.steps} steps per worker (one run each)")
        print(f"{'algorithm':<15} {'completed':>9} {'wall s':>8} {'start-up s':>10} {'train s':>8} "
              f"{'peak RSS max MB':>15} {'median MB':>9}")
        for r in rows:
            if not r["completed"]:
                print(f"{r['algorithm']:<15} {_status(r)}  after {r['wall_seconds']:.1f} s")
                continue
            print(f"{r['algorithm']:<15} {'yes':>9} {r['wall_seconds']:>8.1f} {r['startup_seconds']:>10.1f} "
                  f"{r['train_seconds']:>8.1f} {r['peak_mb_max']:>15.1f} {r['peak_mb_median']:>9.1f}")
    elif args.mode == "memory":
        d = int(float(args.d))
        print(f"bench scale memory: synthetic logistic, d = {d}, {args.ranks} ranks, {args.steps} steps; "
              f"peak RSS above the pre-problem baseline, in units of 8d = {8 * d / 2**20:.1f} MB (max over ranks)")
        print(f"{'algorithm':<15} {'completed':>9} {'peak / 8d':>9} {'held / 8d':>9} {'peak MB':>9}")
        for r in rows:
            if not r["completed"]:
                print(f"{r['algorithm']:<15} {_status(r)}")
                continue
            print(f"{r['algorithm']:<15} {'yes':>9} {r['multiple']:>9.2f} {r['held_multiple']:>9.2f} "
                  f"{max(peaks(r)):>9.1f}")
    else:
        print(f"bench scale steady: synthetic logistic, d = {int(float(args.d))}, {args.ranks} ranks; "
              f"resident memory growth from step {args.from_step} to step {args.steps} (max over ranks)")
        middle = (args.from_step + args.steps) // 2
        print(f"{'algorithm':<15} {'completed':>9} {'growth MB':>10} {f'from {middle} MB':>14} {'steps run':>9} "
              f"{'train s':>8}")
        for r in rows:
            if not r["completed"]:
                print(f"{r['algorithm']:<15} {_status(r)}")
                continue
            print(f"{r['algorithm']:<15} {'yes':>9} {_mb(r['growth_mb_max']):>10} "
                  f"{_mb(r['second_half_growth_mb_max']):>14} {r['last_step_min']:>9} {r['train_seconds']:>8.1f}")


RUNNERS = {"ranks": run_ranks, "memory": run_memory, "steady": run_steady}


def main(argv) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mpitrain-scale-") as folder:
        rows = RUNNERS[args.mode](args, Path(folder))
    if args.json:
        print(json.dumps({"mode": args.mode, "ranks": args.ranks, "steps": args.steps,
                          "d": getattr(args, "d", None), "rows": rows}))
    else:
        print_table(args, rows)
    return 0 if all(r["completed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
