"""The Local SGD speedup experiment (Stich 2019, arXiv 1805.09767, Section 4 / Figure "speedup").

    python -m mpitrain experiment local-sgd-speedup [--quick] [--out DIR]

L2-regularised logistic regression on LIBSVM w8a (lambda = 1/n, b = 4). For K workers and
period H, T(K, H) is the number of steps per worker until the suboptimality of the average
model sum_k w_k x^k first drops to the target eps (checked every ``--check`` steps, so T is
rounded up to a multiple of it), averaged over ``--seeds`` sampling seeds; the speedup is
T(K = 1) / T(K, H), the paper's definition. Ideal: speedup = K.

The K workers are the real :class:`~mpitrain.algorithms.local_sgd.LocalSGD` on K greenlets of
one thread of this process (mpitrain.experiments.workers, mpitrain.comm.inprocess): each builds its shard,
sampling stream, objective and weight as ``mpiexec -n K python -m mpitrain train`` with
``train.algorithm = "local_sgd"`` does, and averages by an Allreduce summed in rank order
(tests/test_inprocess.py checks such runs against real MPI runs). One process rather than K MPI
ranks, because K = 16 ranks on a 2-core machine would be far too slow.

Step size: Stich's decreasing form eta_t = c / (a + t) (``step_size.schedule =
"inverse_time"``) with c and a fixed once for all (K, H) (not tuned per point). The theory's
own constants (eta_t = 4 / (mu (a + t)), mu = lambda = 1/n, a > 16 kappa) give a step
that is constant in practice (a ~ 1e7 >> T) and tiny; see the module's output for the values.

Only "at or below the target yet?" is asked of each check, so a check is scored exactly only
when a lower bound of its suboptimality (the loss by a table instead of exp and log1p, about
half the cost; mpitrain.experiments.workers.Problem.screened_suboptimality) does not already
put it above the target: the same T, bit for bit (145 of the full run's 26,751 checks needed
the exact value, 2026-12-01).

Writes ``DIR/speedup.md`` (the table), ``DIR/speedup.json`` (all numbers) and
``DIR/speedup.png`` (speedup against K for each H, with the ideal line).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..algorithms.local_sgd import LocalSGD, LocalSGDOptions
from ..argparsing import ArgumentParser, size_list, user_error
from ..atomic import write_json, write_text
from ..plot import log_scale, save_figure
from . import outputs
from ..progress import Countdown
from ..schedules import InverseTime
from .workers import Problem, checked_run

FULL = dict(workers=(1, 2, 4, 8, 16), periods=(1, 2, 4, 8, 16, 32, 64), seeds=3)
QUICK = dict(workers=(1, 2, 4, 8, 16), periods=(1, 4, 16, 64), seeds=1)
RESULTS = ("speedup.md", "speedup.json", "speedup.png")


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain experiment local-sgd-speedup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer periods and one seed (about 15-30 s on 2 cores)")
    outputs.add_arguments(p, "runs/local-sgd-speedup")
    p.add_argument("--dataset", default="w8a", help="data set name (default w8a)")
    p.add_argument("--target", type=float, default=None, help="target suboptimality eps (default: see module)")
    p.add_argument("--c", type=float, default=None, help="step size eta_t = c / (a + t): c")
    p.add_argument("--a", type=float, default=None, help="step size eta_t = c / (a + t): a")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=None, help="give up on a point after this many steps")
    p.add_argument("--check", type=int, default=None, help="evaluate the average model every this many steps")
    p.add_argument("--seeds", type=int, default=None, help="sampling seeds to average T over")
    p.add_argument("--workers", type=size_list, default=None, help="comma-separated K values (K = 1, the reference, is always run)")
    p.add_argument("--periods", type=size_list, default=None, help="comma-separated H values")
    return p.parse_args(argv)


# eta_0 = c / a = 10 decaying to 4 at t = 3000; chosen by a short manual search on K = 1 and 4, H = 1
DEFAULTS = dict(target=0.01, c=20000.0, a=2000.0, max_steps=40000, check=10)


def steps_to_target(problem, workers, period, seed, args) -> int | None:
    """Steps per worker until the average model reaches ``args.target`` (None: not within max_steps)."""

    def reached(value):
        return value <= args.target

    def worker(comm):
        method = LocalSGD(problem.worker(comm, step_size=InverseTime(args.c, args.a), batch_size=args.batch_size,
                                        seed=seed, steps=args.max_steps), LocalSGDOptions(period=period))
        # LocalSGD takes its local steps in one nogil C call; rank 0 scores on threads of its own,
        # exactly only where a lower bound of F(x) - f* does not already say "above the target"
        scored = checked_run(comm, problem, method, check=args.check, max_steps=args.max_steps, stop=reached,
                             screen=args.target)
        if scored is None:  # not rank 0
            return None
        t, value = scored[-1]
        return t if reached(value) else None

    return problem.run(workers, worker)


def markdown_table(workers, periods, steps, speedup) -> str:
    head = "| K | " + " | ".join(f"H={h}" for h in periods) + " |"
    rule = "|---|" + "---|" * len(periods)
    lines = [head, rule]
    for k in workers:
        cells = []
        for h in periods:
            t, s = steps[k][h], speedup[k][h]
            cells.append("not reached" if t is None else f"{s:.2f} ({t:.0f})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(workers, periods, speedup, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(workers, workers, "k--", label="ideal (speedup = K)")
    for h in periods:
        ks = [k for k in workers if speedup[k][h] is not None]
        ax.plot(ks, [speedup[k][h] for k in ks], "o-", label=f"H = {h}")
    log_scale(ax, "x", base=2)
    log_scale(ax, "y", base=2)
    ax.set_xlabel("workers K")
    ax.set_ylabel("speedup T(K=1) / T(K, H)")
    ax.set_title("Local SGD on w8a (K workers in one process)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    save_figure(fig, path, dpi=120)


def main(argv) -> int:
    args = parse_args(argv)
    preset = QUICK if args.quick else FULL
    workers = args.workers or list(preset["workers"])
    if 1 not in workers:  # T(K = 1) is the reference of every speedup
        workers = [1, *workers]
    periods = args.periods or list(preset["periods"])
    seeds = args.seeds or preset["seeds"]
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    out = Path(args.out)
    refused = outputs.refusal(out, RESULTS, args.overwrite)
    if refused:
        return user_error(refused)
    started = time.perf_counter()
    problem = Problem(args.dataset, args.batch_size)
    print(f"local-sgd-speedup: {args.dataset}, n = {problem.n}, lambda = 1/n = {problem.l2:.3e}, b = {args.batch_size}, "
          f"f* = {problem.f_star:.10f}; target suboptimality {args.target:g}; eta_t = {args.c:g} / ({args.a:g} + t); "
          f"{seeds} seed(s); K workers in one process (LocalSGD on the in-process "
          f"communicator)", flush=True)
    steps = {k: {} for k in workers}
    countdown = Countdown(sum(1 for k in workers for h in periods if not (k == 1 and h != periods[0])))
    for k in workers:
        for h in periods:
            if k == 1 and h != periods[0]:  # one worker never averages: H changes nothing
                steps[k][h] = steps[k][periods[0]]
                continue
            found = [steps_to_target(problem, k, h, seed, args) for seed in range(seeds)]
            steps[k][h] = None if any(t is None for t in found) else float(np.mean(found))
            print(f"  K = {k:2d}  H = {h:2d}  T = {steps[k][h]}  (seeds: {found})  {countdown.tick()}", flush=True)
    speedup = {k: {h: (None if steps[k][h] is None or steps[1].get(h) is None
                       else _reference(steps) / steps[k][h]) for h in periods} for k in workers}
    table = markdown_table(workers, periods, steps, speedup)
    note = (f"Speedup T(K=1) / T(K, H) (T = steps per worker to suboptimality {args.target:g}, in brackets) on "
            f"{args.dataset}, lambda = 1/n, b = {args.batch_size}, eta_t = {args.c:g} / ({args.a:g} + t), "
            f"mean over {seeds} seed(s); T(K=1) is the K = 1 run (the same for every H). "
            f"The K workers are mpitrain's LocalSGD as K ranks of one process (the in-process "
            f"communicator: same shards, sampling, kernels and averaging as an MPI run).")
    print(table + "\n\n" + note, flush=True)
    write_text(out / "speedup.md", table + "\n\n" + note + "\n")
    write_json(out / "speedup.json", {"workers": workers, "periods": periods, "steps": steps, "speedup": speedup,
                                      "target": args.target, "c": args.c, "a": args.a, "seeds": seeds,
                                      "f_star": problem.f_star})
    plot(workers, periods, speedup, out / "speedup.png")
    print(f"wrote {out}/speedup.md, speedup.json, speedup.png in {time.perf_counter() - started:.0f} s")
    return 0


def _reference(steps) -> float:
    """T(K = 1), the same for every H (one worker never averages)."""
    return next(iter(steps[1].values()))


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
