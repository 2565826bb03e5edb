"""``python -m mpitrain experiment async-stragglers-mlp [--quick]``: one slow worker, a non-convex MLP.

Erickson and Johansson 2026 (docs/papers.md s.3) in the setting of their theorem: a non-convex
objective, sub-Weibull gradient noise, one worker slowed so that tau_max >> tau_C. Two problems,
4 workers, iid shards:

- w8a: an MLP 300 -> 32 tanh -> 1 with the logistic head (labels -1/+1), l2 = 1/N;
- synthetic: ``synthetic-multiclass`` (4000 rows, 32 features, C = 10 classes from a random
  teacher network), an MLP 32 -> 32 tanh -> 10 with the softmax head, l2 = 1/N.

Each stochastic gradient gets additive sub-Weibull(theta) noise of scale sigma
(mpitrain.algorithms.noise: direction uniform on the sphere, length sigma E^theta, E ~ Exp(1)),
theta in {0.5, 1, 2}; worker 3 is slowed x1, x4, x16, x64. sigma = lambda = 1 by default: about
the median mini-batch gradient norm at the start (1.2 on w8a, 2.1 on synthetic, batch 8). Methods, on the discrete-event
simulation of mpitrain.algorithms.async_simulation (the same kernels, sampling streams, clipping
and delay definition as the MPI algorithm; each run starts at ``initial_point(seed)``):

- asgd: constant-step asynchronous SGD, x <- x - gamma g;
- clipped asgd: x <- x - gamma clip_lambda(g) (lambda fixed, ``--clip``);
- delay-adaptive asgd: x <- x - gamma min(1, tau_C / tau) g with tau_C = K, the number of
  workers (the measured concurrency mean(tau) + 1 is K here); the form of Koloskova, Stich,
  Jaggi 2022 and Mishchenko et al. 2022, which the paper compares against;
- sync sgd: every round waits for the slowest worker (mpitrain.algorithms.sync_sgd).

Step sizes (the field's practice, docs/papers.md): each method's gamma is tuned at x1 over the
powers of two 2^lo .. 2^hi (``--grid``; the least median final loss over ``--tune-seeds``
seeds that are not among the reported ones) and then held at every slowdown; "asgd re-tuned"
is unclipped ASGD tuned again at every slowdown. Reported per (problem, theta, slowdown):
tau_max and tau_C = mean(tau) + 1 (median over seeds), the final training loss F(x) (median,
90th percentile) and training accuracy (median, 10th percentile: the worse tail) over
``--seeds`` seeds, all methods at equal simulated wall time ``--horizon`` (a fast gradient
takes 1 unit, +-10% jitter). A diverged run (x not finite) counts as loss inf, accuracy 0.

Writes <out>/async_stragglers_mlp.md (tables, command), results.json (every seed's numbers,
the tuned steps and the tuning scores) and async_stragglers_mlp.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..algorithms.async_rule import UpdateRule
from ..algorithms.async_simulation import Simulation
from ..algorithms.delays import delay_metrics
from ..argparsing import ArgumentParser, user_error
from ..atomic import write_text
from ..plot import save_figure
from . import outputs
from ..progress import Countdown

SLOWDOWNS = (1, 4, 16, 64)
RESULTS = ("async_stragglers_mlp.md", "results.json", "async_stragglers_mlp.png")
THETAS = (0.5, 1.0, 2.0)
PROBLEMS = ("w8a", "synthetic")
WORKERS = 4
TUNE_SEED0 = 1000  # tuning seeds are TUNE_SEED0, TUNE_SEED0 + 1, ...: disjoint from the reported 0 .. seeds-1


@dataclass(frozen=True)
class Method:
    name: str
    clip: bool = False              # clip_lambda each gradient
    step_rule: str = "constant"     # UpdateRule step rule
    synchronous: bool = False       # sync SGD instead of the async server


METHODS = (Method("asgd"), Method("clipped asgd", clip=True), Method("delay-adaptive asgd", step_rule="delay_adaptive"),
           Method("sync sgd", synchronous=True))
RETUNED = "asgd re-tuned"
COLUMNS = tuple(m.name for m in METHODS) + (RETUNED,)


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain experiment async-stragglers-mlp", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="theta 2 only, 3 seeds, 1 tuning seed, grid 2^-4..2^-2, "
                   "horizon 100 (13 s of CPU here)")
    p.add_argument("--problem", action="append", choices=PROBLEMS, help="problem(s) (default: both)")
    p.add_argument("--theta", action="append", type=float, help="noise tail parameter(s) (default 0.5, 1, 2)")
    p.add_argument("--seeds", type=int, help="reported seeds per cell (default 10, quick 3)")
    p.add_argument("--tune-seeds", type=int, help="seeds per tuning point (default 3, quick 1)")
    p.add_argument("--grid", type=int, nargs=2, metavar=("LO", "HI"), help="step grid 2^LO .. 2^HI (default -7 1)")
    p.add_argument("--horizon", type=float, help="simulated wall time, units of one fast gradient (default 500)")
    p.add_argument("--noise-sigma", type=float, default=1.0, help="noise scale sigma (default 1)")
    p.add_argument("--clip", type=float, default=1.0, help="lambda of clipped ASGD (default 1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--hidden", type=int, default=32, help="tanh units of the hidden layer (default 32)")
    outputs.add_arguments(p, "runs/async-stragglers-mlp")
    args = p.parse_args(argv)
    args.problem = args.problem or list(PROBLEMS)
    args.theta = args.theta or ([2.0] if args.quick else list(THETAS))
    args.seeds = args.seeds or (3 if args.quick else 10)
    args.tune_seeds = args.tune_seeds or (1 if args.quick else 3)
    lo, hi = args.grid or ((-4, -2) if args.quick else (-7, 1))
    args.grid = [2.0 ** e for e in range(lo, hi + 1)]
    args.horizon = args.horizon or (100.0 if args.quick else 500.0)
    if min(args.seeds, args.tune_seeds, args.batch_size, args.hidden) < 1 or not args.grid:
        p.error("--seeds, --tune-seeds, --batch-size, --hidden must be >= 1 and --grid LO <= HI")
    if not (args.horizon > 0 and args.clip > 0 and args.noise_sigma >= 0 and min(args.theta) > 0):
        p.error("--horizon, --clip and every --theta must be > 0, --noise-sigma >= 0")
    return args


@dataclass
class Problem:
    name: str
    full: object      # the objective on all rows (scores the final x)
    workers: list     # the objectives of the K workers' iid shards

    def score(self, x, accuracy=True):
        """(F(x), training accuracy or None); (inf, 0) for a non-finite x."""
        if not np.all(np.isfinite(x)):
            return float("inf"), 0.0
        with np.errstate(over="ignore", invalid="ignore"):
            loss = float(self.full.loss(x))
            correct = self.full.correct_sum(x) / self.full.n_samples if accuracy else None
        return (loss if np.isfinite(loss) else float("inf")), correct


def load_problem(name, hidden):
    """The Problem ``name``: data, the full objective and 4 iid shards' objectives."""
    from ..data import Dataset, all_distinct_labels, classes_of_union, open_dataset, shard, to_class_indices
    from ..objectives import make_objective

    if name == "w8a":
        data, model = open_dataset("w8a"), {"head": "logistic"}
    else:
        raw = open_dataset("synthetic-multiclass", synthetic=dict(n_samples=4000, n_features=32, n_classes=10, seed=0))
        classes = classes_of_union([all_distinct_labels(raw.labels)])
        data = Dataset(raw.features, to_class_indices(raw.labels, classes), raw.name, raw.fingerprint)
        model = {"head": "softmax", "n_classes": len(classes)}
    l2 = 1.0 / data.n_samples

    def objective(d):
        return make_objective("mlp", d.features, d.labels, l2, hidden=(hidden,), activation="tanh", **model)

    return Problem(name, objective(data), [objective(shard(data, k, WORKERS, scheme="iid", seed=0))
                                           for k in range(WORKERS)])


def run(args, problem, method, gamma, slowdown, theta, seed, accuracy=True):
    """One simulated run: {"loss", "accuracy", "diverged", "taus"} (taus: every applied delay, async only)."""
    slowdowns = [1.0] * (WORKERS - 1) + [float(slowdown)]
    sim = Simulation(problem.workers, slowdowns, lambda v: gamma, args.batch_size, seed, jitter=0.1,
                     noise_sigma=args.noise_sigma, noise_theta=theta)
    x0 = problem.full.initial_point(seed)
    if method.synchronous:
        result = sim.run_sync(x0, args.horizon)
    else:
        rule = UpdateRule(args.clip if method.clip else None, method.step_rule, workers=WORKERS)
        with np.errstate(over="ignore", invalid="ignore"):
            result = sim.run_async(x0, args.horizon, rule)
    loss, correct = problem.score(result.x, accuracy)
    taus = [t for k in sorted(result.taus) for t in result.taus[k]]
    return {"loss": loss, "accuracy": correct, "diverged": bool(result.diverged or not np.isfinite(loss)), "taus": taus}


def tune(args, problem, method, slowdown, theta):
    """(the gamma of the grid with the least median final loss over the tuning seeds, {gamma: score})."""
    seeds = range(TUNE_SEED0, TUNE_SEED0 + args.tune_seeds)
    scores = {gamma: float(np.median([run(args, problem, method, gamma, slowdown, theta, s, accuracy=False)["loss"]
                                      for s in seeds])) for gamma in args.grid}
    return min(args.grid, key=lambda gamma: (scores[gamma], gamma)), scores


def cells_of(args, problem, theta):
    """Tune, then run every (slowdown, method) over the reported seeds: the results of one theta."""
    steps, retuned, tuning = {}, {}, {}
    for method in METHODS:
        steps[method.name], tuning[method.name] = tune(args, problem, method, 1, theta)
    retuned[1] = steps["asgd"]
    for slowdown in SLOWDOWNS[1:]:
        retuned[slowdown], tuning[f"{RETUNED} x{slowdown}"] = tune(args, problem, METHODS[0], slowdown, theta)
    print(f"  {problem.name} theta {theta:g}: tuned " + ", ".join(f"{k} {v:g}" for k, v in steps.items())
          + "; re-tuned " + ", ".join(f"x{k} {v:g}" for k, v in retuned.items()) + f"  {args.countdown.tick()}",
          flush=True)
    cells = {}
    for slowdown in SLOWDOWNS:
        cell, delays = {}, []
        for method in METHODS:
            runs = [run(args, problem, method, steps[method.name], slowdown, theta, s) for s in range(args.seeds)]
            cell[method.name] = runs
            if method.clip:
                delays = [delay_metrics(r["taus"]) for r in runs]
        cell[RETUNED] = cell["asgd"] if retuned[slowdown] == steps["asgd"] else [
            run(args, problem, METHODS[0], retuned[slowdown], slowdown, theta, s) for s in range(args.seeds)]
        cells[slowdown] = {"tau_max": [d["tau_max"] for d in delays], "tau_C": [d["concurrency"] for d in delays],
                           **{name: {key: [r[key] for r in runs] for key in ("loss", "accuracy", "diverged")}
                              for name, runs in cell.items()}}
        print(f"    x{slowdown}: tau_max {np.median(cells[slowdown]['tau_max']):.0f}, " + ", ".join(
            f"{name} {np.median(cells[slowdown][name]['loss']):.4f}" for name in COLUMNS) + f"  {args.countdown.tick()}",
            flush=True)
    return {"steps": steps, "retuned": retuned, "tuning": tuning, "cells": cells}


def fmt(value):
    return "inf" if not np.isfinite(value) else f"{value:.4f}"


def loss_cell(c):
    text = f"{fmt(np.median(c['loss']))} / {fmt(np.percentile(c['loss'], 90))}"
    return text + (f" ({sum(c['diverged'])} div.)" if any(c["diverged"]) else "")


def accuracy_cell(c):
    return f"{np.median(c['accuracy']):.3f} / {np.percentile(c['accuracy'], 10):.3f}"


def step_text(args, gamma):
    edge = gamma in (args.grid[0], args.grid[-1]) and len(args.grid) > 1
    return f"2^{int(np.log2(gamma))}" + (" (edge)" if edge else "")


def report(args, results, seconds, command):
    lo, hi = int(np.log2(args.grid[0])), int(np.log2(args.grid[-1]))
    lines = ["# Async SGD with one straggler on a non-convex MLP (Erickson and Johansson 2026)", "",
             f"Command: `{command}`", "",
             f"4 workers (iid shards), worker 3 slowed x{', x'.join(map(str, SLOWDOWNS))}; MLP with {args.hidden} tanh "
             f"units; sub-Weibull gradient noise sigma = {args.noise_sigma:g}; clipped ASGD lambda = {args.clip:g}; "
             f"batch {args.batch_size}; equal simulated wall time {args.horizon:g} units. Steps tuned at x1 over "
             f"2^{lo} .. 2^{hi} (median final loss over {args.tune_seeds} tuning seed(s)) and held; 'asgd re-tuned' "
             f"is tuned again at every slowdown. Median / p90 of the final training loss, median / p10 of the "
             f"training accuracy, over {args.seeds} seeds; tau_max and tau_C = mean(tau) + 1 are medians over "
             "seeds. **Simulated** (mpitrain.algorithms.async_simulation).", ""]
    for name, by_theta in results.items():
        head = "| theta | slowdown | tau_max | tau_C | " + " | ".join(COLUMNS) + " |"
        rule = "|" + "---|" * (4 + len(COLUMNS))
        for title, cell_text in (("final loss, median / p90", loss_cell), ("accuracy, median / p10", accuracy_cell)):
            lines += [f"{name}: {title}", "", head, rule]
            for theta, res in by_theta.items():
                for slowdown, c in res["cells"].items():
                    taus = f"| {theta:g} | x{slowdown} | {np.median(c['tau_max']):.0f} | {np.median(c['tau_C']):.2f} | "
                    lines.append(taus + " | ".join(cell_text(c[m]) for m in COLUMNS) + " |")
            lines.append("")
    lines += ["Tuned steps (at x1; re-tuned ASGD at x4 / x16 / x64)", "",
              "| problem | theta | " + " | ".join(m.name for m in METHODS) + " | re-tuned x4 / x16 / x64 |",
              "|" + "---|" * (3 + len(METHODS))]
    for name, by_theta in results.items():
        for theta, res in by_theta.items():
            lines.append(f"| {name} | {theta:g} | " + " | ".join(step_text(args, res["steps"][m.name]) for m in METHODS)
                         + " | " + " / ".join(step_text(args, res["retuned"][s]) for s in SLOWDOWNS[1:]) + " |")
    lines += ["", f"Total time {seconds:.0f} s."]
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thetas = sorted({theta for by_theta in results.values() for theta in by_theta})
    fig, axes = plt.subplots(len(results), len(thetas), figsize=(5 * len(thetas), 3.8 * len(results)), squeeze=False)
    for row, (name, by_theta) in zip(axes, results.items()):
        for ax, theta in zip(row, thetas):
            cells = by_theta[theta]["cells"]
            for method in COLUMNS:
                losses = [cells[s][method]["loss"] for s in SLOWDOWNS]
                line, = ax.semilogx(SLOWDOWNS, [np.median(v) for v in losses], marker="o", label=f"{method} median")
                ax.semilogx(SLOWDOWNS, [np.percentile(v, 90) for v in losses], marker="^", linestyle="--",
                            color=line.get_color(), label=f"{method} p90")
            ax.set_title(f"{name}, theta {theta:g} (simulated)")
            ax.set_xlabel("slowdown of worker 3")
            ax.set_ylabel("final training loss")
            ax.set_xticks(SLOWDOWNS, [f"x{s}" for s in SLOWDOWNS])
            ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=6)
    save_figure(fig, path, dpi=100)


def main(argv) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    refused = outputs.refusal(out, RESULTS, args.overwrite)
    if refused:
        return user_error(refused)
    results = {}
    args.countdown = Countdown(len(args.problem) * len(args.theta) * (1 + len(SLOWDOWNS)))  # tuning, then each slowdown
    for name in args.problem:
        problem = load_problem(name, args.hidden)
        print(f"{name}: {problem.full!r}", flush=True)
        results[name] = {theta: cells_of(args, problem, theta) for theta in args.theta}
    seconds = time.perf_counter() - started
    command = " ".join(["python -m mpitrain experiment async-stragglers-mlp", *argv]).rstrip()
    text = report(args, results, seconds, command)
    write_text(out / "async_stragglers_mlp.md", text)
    write_text(out / "results.json", json.dumps({"grid": args.grid, "seconds": seconds, "command": command,
                                                 "results": results}, indent=1, default=float))
    plot(results, out / "async_stragglers_mlp.png")
    print(text)
    print(f"wrote {out}/async_stragglers_mlp.md, results.json, async_stragglers_mlp.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
