"""``python -m mpitrain experiment async-stragglers [--quick]``: one slow worker, three methods.

Erickson and Johansson 2026 (docs/papers.md s.3): with one worker slowed down so that
tau_max >> tau_C, constant-step ASGD pays for tau_max, clipped ASGD at the same step size
should not. Logistic regression on w8a (l2 = 1/N), 4 workers, worker 3 slowed by x1, x4,
x16, x64; final suboptimality F(x) - f* (median and 90th percentile over seeds) of
unclipped ASGD, clipped ASGD (same gamma) and synchronous SGD, at equal wall time.

What runs where (stated in the output too):
- the table: the discrete-event simulation of mpitrain.algorithms.async_simulation (one
  process, simulated clock: a gradient takes 1 time unit, x slowdown for worker 3, with
  +-10% uniform jitter; the same kernels, sampling streams, clipping and delay
  definition as the MPI algorithm), for every shard scheme asked for;
- the check: real ``mpiexec -n 4 python -m mpitrain train`` runs of async_sgd (config
  jobs/configs/async_sgd_stragglers.toml, equal wall time ``max_seconds``) for a subset
  of slowdowns, unclipped and clipped (full mode; ``--mpi`` / ``--no-mpi`` override).

Writes <out>/async_stragglers.md (tables + command), <out>/async_stragglers.png and
<out>/delays_x64.png (the simulated delay histogram at the largest slowdown).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from ..algorithms.async_rule import UpdateRule
from ..algorithms.async_simulation import Simulation
from ..algorithms.delays import delay_metrics, plot_delays
from ..argparsing import ArgumentParser, user_error
from ..atomic import write_text
from ..plot import save_figure
from . import outputs
from ..progress import Countdown

SLOWDOWNS = (1, 4, 16, 64)
METHODS = ("asgd", "clipped asgd", "sync sgd")
RESULTS = ("async_stragglers.md", "async_stragglers.png", "delays_x*.png", "mpi-x*")
ROOT = Path(__file__).resolve().parents[2]
REAL_CONFIG = ROOT / "jobs" / "configs" / "async_sgd_stragglers.toml"


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain experiment async-stragglers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer seeds, shorter horizon, iid only, no MPI runs")
    p.add_argument("--seeds", type=int, help="seeds per cell (default 10, quick 5)")
    p.add_argument("--horizon", type=float, help="simulated wall time in units of one fast gradient (default 1000, quick 300)")
    p.add_argument("--step-size", type=float, default=8.0, help="gamma, the same for all methods (default 8)")
    p.add_argument("--clip", type=float, default=0.1, help="lambda of clipped ASGD (default 0.1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--sharding", action="append", choices=("iid", "label", "dirichlet"),
                   help="shard scheme(s) (default: iid and label; quick: iid)")
    p.add_argument("--mpi", dest="mpi", action="store_true", default=None, help="also run the real MPI subset")
    p.add_argument("--no-mpi", dest="mpi", action="store_false")
    p.add_argument("--mpi-seconds", type=float, default=3.0, help="wall time of each real run")
    outputs.add_arguments(p, "runs/async-stragglers")
    args = p.parse_args(argv)
    args.seeds = args.seeds or (5 if args.quick else 10)
    args.horizon = args.horizon or (300.0 if args.quick else 1000.0)
    args.sharding = args.sharding or (["iid"] if args.quick else ["iid", "label"])
    args.mpi = (not args.quick) if args.mpi is None else args.mpi
    if args.seeds < 1 or args.horizon <= 0 or args.step_size <= 0 or args.clip <= 0:
        p.error("--seeds, --horizon, --step-size and --clip must be > 0")
    return args


def load_problem(scheme, workers=4):
    """(full objective, f*, per-worker objectives) of w8a logistic regression, l2 = 1/N."""
    from ..data import open_dataset, shard
    from ..objectives import make_objective
    from ..objectives.reference import reference_optimum

    full = open_dataset("w8a")
    l2 = 1.0 / full.n_samples
    objective = make_objective("logistic", full.features, full.labels, l2)
    f_star = reference_optimum(objective, MPI.COMM_SELF, fingerprint=full.fingerprint).f_star
    shards = [shard(full, k, workers, scheme=scheme, seed=0) for k in range(workers)]
    return objective, f_star, [make_objective("logistic", s.features, s.labels, l2) for s in shards]


def simulate_cell(args, objective, f_star, workers, slowdown, seed):
    """{method: suboptimality} and the async delay metrics of one (slowdown, seed)."""
    slowdowns = [1.0] * (len(workers) - 1) + [float(slowdown)]
    sim = Simulation(workers, slowdowns, lambda v: args.step_size, args.batch_size, seed, jitter=0.1)
    x0 = objective.initial_point(seed)  # n_params entries (zeros for logistic regression)
    out, taus = {}, {}
    for method, clip in (("asgd", None), ("clipped asgd", args.clip)):
        rule = UpdateRule(clip, workers=len(workers))
        result = sim.run_async(x0, args.horizon, rule)
        out[method] = objective.loss(result.x) - f_star
        out[method + " max_norm_sent"] = result.counts["max_norm_sent"]
        taus = result.taus
    out["sync sgd"] = objective.loss(sim.run_sync(x0, args.horizon).x) - f_star
    return out, taus


def simulate_table(args, scheme):
    objective, f_star, workers = load_problem(scheme)
    cells, delays, last_taus = {}, {}, {}
    for slowdown in SLOWDOWNS:
        runs = []
        for seed in range(args.seeds):
            result, taus = simulate_cell(args, objective, f_star, workers, slowdown, seed)
            runs.append(result)
            delays.setdefault(slowdown, []).append(delay_metrics([t for v in taus.values() for t in v]))
            last_taus[slowdown] = taus
        cells[slowdown] = {m: [r[m] for r in runs] for m in METHODS}
        cells[slowdown]["max_norm_sent"] = max(r["clipped asgd max_norm_sent"] for r in runs)
        print(f"  {scheme} x{slowdown}: " + ", ".join(
            f"{m} median {np.median(cells[slowdown][m]):.3e}" for m in METHODS) + f"  {args.countdown.tick()}", flush=True)
    return cells, delays, last_taus


def real_run(args, clip, slowdown, seed, out_dir):
    """One ``mpiexec -n 4 python -m mpitrain train`` of async_sgd; its last metrics record."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    run_dir = out_dir / f"mpi-x{slowdown}-{'clip' if clip else 'noclip'}-s{seed}"
    clip_value = clip if clip else '"none"'
    cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", "4", sys.executable, "-m", "mpitrain", "train",
           "--config", str(REAL_CONFIG), "--set", f"run.output_dir={run_dir}",
           "--set", f"async_sgd.clip={clip_value}", "--set", f"async_sgd.slowdown_factor={slowdown}",
           "--set", f"async_sgd.max_seconds={args.mpi_seconds}", "--set", f"step_size.value={args.step_size}",
           "--set", f"train.batch_size={args.batch_size}", "--set", f"train.seed={seed}",
           *(["--overwrite"] if args.overwrite else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def quantiles(values):
    return float(np.median(values)), float(np.percentile(values, 90))


def write_report(args, tables, delays, real, path, seconds):
    lines = ["# Async SGD with one straggler (Erickson and Johansson 2026)", "",
             f"Command: `python -m mpitrain experiment async-stragglers {' '.join(sys.argv[3:])}`".rstrip(), "",
             f"w8a logistic regression (l2 = 1/N), 4 workers, worker 3 slowed down; gamma = {args.step_size} "
             f"for all methods, clipped ASGD lambda = {args.clip}, batch {args.batch_size}; final F(x) - f* "
             f"after {args.horizon:g} time units (a fast gradient = 1 unit, +-10% jitter), "
             f"median / 90th percentile over {args.seeds} seeds.", "",
             "**Simulated** (discrete-event simulation of the same algorithm, one process; "
             "mpitrain.algorithms.async_simulation).", ""]
    for scheme, cells in tables.items():
        lines += [f"Shards: {scheme}", "",
                  "| slowdown | tau_max | mean tau | ASGD median | ASGD p90 | clipped median | clipped p90 | "
                  "sync median | sync p90 | max clipped norm |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for slowdown, cell in cells.items():
            d = delays[scheme][slowdown]
            row = [f"x{slowdown}", f"{np.median([m['tau_max'] for m in d]):.0f}", f"{np.median([m['tau_mean'] for m in d]):.2f}"]
            for m in METHODS:
                row += [f"{q:.3e}" for q in quantiles(cell[m])]
            row.append(f"{cell['max_norm_sent']:.4f}")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    if real:
        lines += [f"**Real MPI** (`mpiexec -n 4 python -m mpitrain train --config {REAL_CONFIG.relative_to(ROOT)}`, "
                  f"{args.mpi_seconds:g} s wall time each, rank 3 slowed by the factor, iid shards, one seed):", "",
                  "| slowdown | method | updates | tau_max | mean tau | F(x) - f* |", "|---|---|---|---|---|---|"]
        for (slowdown, method), rec in real.items():
            lines.append(f"| x{slowdown} | {method} | {rec['updates']} | {rec['tau_max']} | {rec['tau_mean']:.2f} | "
                         f"{rec['suboptimality']:.3e} |")
        lines.append("")
    lines.append(f"Total time {seconds:.0f} s.")
    write_text(path, "\n".join(lines) + "\n")


def plot_tables(tables, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 4.2), squeeze=False)
    for ax, (scheme, cells) in zip(axes[0], tables.items()):
        for method in METHODS:
            med = [np.median(cells[s][method]) for s in SLOWDOWNS]
            p90 = [np.percentile(cells[s][method], 90) for s in SLOWDOWNS]
            line, = ax.loglog(SLOWDOWNS, med, marker="o", label=f"{method} (median)")
            ax.loglog(SLOWDOWNS, p90, marker="^", linestyle="--", color=line.get_color(), label=f"{method} (p90)")
        ax.set_xlabel("slowdown of worker 3")
        ax.set_ylabel("final F(x) - f*")
        ax.set_title(f"w8a, 4 workers, {scheme} shards (simulated)")
        ax.set_xticks(SLOWDOWNS, [f"x{s}" for s in SLOWDOWNS])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path, dpi=110)


def main(argv) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    refused = outputs.refusal(out, RESULTS, args.overwrite)
    if refused:
        return user_error(refused)
    tables, delays = {}, {}
    args.countdown = Countdown(len(args.sharding) * len(SLOWDOWNS) + (4 if args.mpi else 0))
    for scheme in args.sharding:
        print(f"simulating: {scheme} shards, {args.seeds} seeds, horizon {args.horizon:g}", flush=True)
        tables[scheme], delays[scheme], taus = simulate_table(args, scheme)
        if scheme == args.sharding[0]:
            plot_delays(taus[SLOWDOWNS[-1]], out / f"delays_x{SLOWDOWNS[-1]}.png",
                        title=f"simulated delays, worker 3 slowed x{SLOWDOWNS[-1]} ({scheme} shards, last seed)")
    real = {}
    if args.mpi:
        for slowdown in (1, 16):
            for method, clip in (("asgd", None), ("clipped asgd", args.clip)):
                print(f"real MPI run: x{slowdown} {method}", flush=True)
                real[(slowdown, method)] = real_run(args, clip, slowdown, 0, out)
                print(f"  done  {args.countdown.tick()}", flush=True)
    plot_tables(tables, out / "async_stragglers.png")
    write_report(args, tables, delays, real, out / "async_stragglers.md", time.perf_counter() - started)
    print((out / "async_stragglers.md").read_text())
    print(f"wrote {out}/async_stragglers.md, async_stragglers.png, delays_x{SLOWDOWNS[-1]}.png")
    return 0
