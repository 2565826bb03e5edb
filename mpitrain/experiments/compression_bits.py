"""Bits to a target for every compressor, with and without error feedback (Beznosikov et al.
2020, arXiv 2002.12410, docs/papers.md s.2: "biased compressors beat their unbiased
counterparts; Top-k with natural dithering beats every other compressor").

    python -m mpitrain experiment compression-bits [--quick] [--out DIR]

L2-regularised logistic regression on LIBSVM w8a (lambda = 1/n), K = 4 workers, mini-batch
b = 32 per worker, constant step size gamma. For each compressor and feedback rule ("ef":
error feedback; "none": x <- x - gamma mean_k C(g_k)), the suboptimality F(x) - f* is
recorded against the bits one worker has sent (``payload_bits`` per exchange; Rand-k
sends only its values, the subset comes from a seed shared by all ranks), and the bits
needed to first reach the target (checked every ``--check`` steps) are tabulated.

Step size: gamma* is tuned ONCE for the uncompressed baseline (identity, 32-bit values) on
the grid ``--tune-grid`` (full run; ``--quick`` uses the default gamma* = 4, what that grid
picked); every compressor then runs with gamma in {gamma*, gamma*/2, gamma*/4} (full) or
gamma* only (quick), and its best is reported with the gamma used. With error feedback an
unbiased compressor C runs as C / (1 + omega) (contractive, as EF needs; docs/papers.md s.2).

A second table compares compressed Local SGD (model changes compressed every H steps, with
EF) against uncompressed Local SGD (the identity, 32-bit), in rounds and bits to the target.

The K workers are the real :class:`~mpitrain.algorithms.compressed_sgd.CompressedSGD` (and
:class:`~mpitrain.algorithms.compressed_local_sgd.CompressedLocalSGD`) on K greenlets of one
thread (mpitrain.experiments.workers, mpitrain.comm.inprocess): the same shards, sampling
streams, compressors, seeds, feedback memories and kernels as ``mpiexec -n 4 python -m
mpitrain train`` with ``train.algorithm = "compressed_sgd"`` (tests/test_inprocess.py checks
such runs against real MPI runs). ``bits`` are the algorithm's own ``bits_sent`` (per worker).
Runs of a biased compressor without error feedback print the algorithm's divergence warning.

Runs go to ``--jobs`` processes at once (default: the usable cores, at most 8; mpitrain.experiments.parallel),
each run whole on one of them, so the tables do not depend on ``--jobs``. A run at gamma*/2 or
gamma*/4 that can no longer need fewer bits than the best run before it is cut short
(:class:`GammaSearch`), and a run the tuning made already is not made again: the tables are
those of running every run to its end.

Writes DIR/bits.md (tables and conclusions), DIR/bits.json, DIR/bits.png.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..algorithms.compressed_local_sgd import CompressedLocalSGD
from ..algorithms.compressed_sgd import CompressedSGD
from ..argparsing import ArgumentParser, positive_float_list, positive_int, user_error
from ..atomic import write_json, write_text
from ..plot import log_scale, save_figure
from . import outputs
from ..config import build_section
from ..progress import Countdown
from ..schedules import Constant
from .parallel import MAX_DEFAULT_JOBS, RunPool, default_jobs
from .workers import Problem, checked_run

K_KEPT = 15  # k of the sparsifiers: 5% of d = 300
LEVELS = 4  # s of the ditherings
# name -> (parameters, biased?, its unbiased counterpart)
COMPRESSORS = {
    "identity": ({}, False, None),
    "top_k": ({"k": K_KEPT}, True, "rand_k"),
    "rand_k_unscaled": ({"k": K_KEPT}, True, "rand_k"),
    "rand_k": ({"k": K_KEPT}, False, None),
    "biased_rounding": ({}, True, "natural_compression"),
    "natural_compression": ({}, False, None),
    "scaled_sign": ({}, True, "ternary"),
    "ternary": ({}, False, None),
    "top_k_natural_dithering": ({"k": K_KEPT, "levels": LEVELS}, True, "natural_dithering"),
    "top_k_natural_compression": ({"k": K_KEPT}, True, "natural_compression"),
    "natural_dithering": ({"levels": LEVELS}, False, None),
    "standard_dithering": ({"levels": LEVELS}, False, None),
}
FULL = dict(steps=4000, divisors=(1, 2, 4), tune=True)
QUICK = dict(steps=1500, divisors=(1,), tune=False)
RESULTS = ("bits.md", "bits.json", "bits.png")
DEFAULTS = dict(target=0.01, gamma=4.0, workers=4, batch_size=32, check=50, period=4)


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain experiment compression-bits", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps, gamma* only, no tuning (about 4 s on 2 cores)")
    outputs.add_arguments(p, "runs/compression-bits")
    p.add_argument("--dataset", default="w8a")
    p.add_argument("--target", type=float, default=DEFAULTS["target"], help="target suboptimality")
    p.add_argument("--gamma", type=float, default=DEFAULTS["gamma"], help="gamma* when not tuned")
    p.add_argument("--tune-grid", type=positive_float_list, default="1,2,4,8,16", help="gamma grid for the identity baseline (full run)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--check", type=int, default=DEFAULTS["check"], help="evaluate every this many steps")
    p.add_argument("--period", type=int, default=DEFAULTS["period"], help="H of the Local SGD comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=positive_int, default=default_jobs(),
                   help=f"runs at once, each in a process of its own (default: the usable cores, at most "
                        f"{MAX_DEFAULT_JOBS}; %(default)s here); the tables are the same for any value")
    return p.parse_args(argv)


class Run:
    """One run of K in-process ranks: the curve (step, bits per worker, suboptimality) and bits/rounds to target.

    ``budget``: the last step that may be checked (default ``args.steps``; a multiple of
    ``args.check`` when smaller, see :class:`GammaSearch`)."""

    def __init__(self, problem, name, feedback, gamma, args, period=None, budget=None):
        params, _, _ = COMPRESSORS[name]
        cls = CompressedSGD if period is None else CompressedLocalSGD
        values = {"compressor": name, "error_feedback": feedback, **params}
        if period is not None:
            values["period"] = period
        opts = build_section(cls.options, values, cls.name)
        self.name, self.feedback, self.gamma = name, feedback, gamma
        self.budget = args.steps if budget is None else budget

        def ends(value):  # diverged, or the target reached
            return not np.isfinite(value) or value > 1e3 or value <= args.target

        def worker(comm):
            method = cls(problem.worker(comm, step_size=Constant(gamma), batch_size=DEFAULTS["batch_size"],
                                        seed=args.seed, steps=args.steps), opts)
            # the step, the bits sent and the exchanges so far at each check (rank 0 scores on threads of its own)
            scored = checked_run(comm, problem, method, check=args.check, max_steps=self.budget, stop=ends,
                                 tag=lambda t: (t, method.averager.bits_sent, method.syncs if period else t),
                                 score_initial=True)
            if scored is None:  # not rank 0
                return None
            curve = [(t, bits, value) for (t, bits, _), value in scored]
            (t, bits, exchanges), value = scored[-1]
            reached = bool(np.isfinite(value) and value <= args.target)
            bits_to_target, rounds_to_target = (bits, exchanges) if reached else (None, None)
            return curve, bits_to_target, rounds_to_target, bits // max(1, exchanges)

        self.curve, self.bits_to_target, self.rounds_to_target, self.bits_per_exchange = \
            problem.run(DEFAULTS["workers"], worker)
        self.final = self.curve[-1][2]


_PROBLEMS = {}  # (dataset, f*) -> this process's Problem


def problem_for(dataset: str, f_star: float) -> Problem:
    """This process's Problem (built once per process; f* comes from the process that solved it)."""
    key = (dataset, f_star)
    if key not in _PROBLEMS:
        _PROBLEMS[key] = Problem(dataset, DEFAULTS["batch_size"], f_star=f_star)
    return _PROBLEMS[key]


def run_job(problem_key, name, feedback, gamma, args, period=None, budget=None) -> Run:
    """One :class:`Run`, in whichever process of the pool takes it (a module-level function)."""
    return Run(problem_for(*problem_key), name, feedback, gamma, args, period, budget)


class GammaSearch:
    """The runs of one compressor and feedback rule at ``gammas`` (gamma*, gamma*/2, ...) and the
    best of them (:func:`best`, which prefers the earlier run on a tie).

    Cutting short. Every step of compressed SGD sends the same bits (``bits_per_exchange``), so a
    run that reaches the target at check t has sent t * bits_per_exchange. Once an earlier run
    (a larger gamma) has reached it with B bits, a later one can be the best only by reaching it
    with fewer, that is at a check t with t * bits_per_exchange < B; so it stops after the last
    such check (:meth:`budget`, a multiple of ``check``: checks it would make anyway). It reaches
    the target within that budget exactly when the whole run would, with the same curve up to
    there; otherwise it cannot be the best. So the best run and its curve (all that the tables,
    the JSON and the plot show) are those of running every run to its end. While no earlier
    run has reached the target, the best may be the lowest final value: nothing is cut. The
    first run is made alone, the others then side by side, each cut by what ran before it.
    """

    def __init__(self, gammas, steps: int, check: int):
        self.gammas, self.steps, self.check = list(gammas), int(steps), int(check)
        self.runs = [None] * len(self.gammas)

    def budget(self, index: int) -> int:
        """The last step run ``index`` may check, from the runs before it known now."""
        reached = [run for run in self.runs[:index] if run is not None and run.bits_to_target is not None]
        if not reached:
            return self.steps
        fewest = min(run.bits_to_target for run in reached)
        per_check = reached[0].bits_per_exchange * self.check
        return min(self.steps, self.check * ((fewest - 1) // per_check))

    def add(self, index: int, run) -> None:
        self.runs[index] = run

    @property
    def complete(self) -> bool:
        return all(run is not None for run in self.runs)

    def best(self):
        return best(self.runs)


def best(runs):
    """The run that reached the target with the fewest bits (else the lowest final value)."""
    reached = [r for r in runs if r.bits_to_target is not None]
    if reached:
        return min(reached, key=lambda r: r.bits_to_target)
    return min(runs, key=lambda r: r.final if np.isfinite(r.final) else np.inf)


def fmt_bits(run) -> str:
    if run.bits_to_target is None:
        return f"not reached (final {run.final:.2e}, gamma {run.gamma:g})"
    return f"{run.bits_to_target:.3g} (gamma {run.gamma:g})"


def conclusions(results) -> list:
    lines = []
    reached = {key: run for key, run in results.items() if run.bits_to_target is not None and key[0] != "identity"}
    if reached:
        winner = min(reached.items(), key=lambda kv: kv[1].bits_to_target)
        (name, fb), run = winner
        verdict = "YES" if name == "top_k_natural_dithering" else "NO"
        lines.append(f"- Top-k + natural dithering needs the fewest bits: {verdict} (fewest: {name} with "
                     f"feedback '{fb}', {run.bits_to_target:.3g} bits).")
    wins, pairs = 0, []
    for name, (_, biased, counterpart) in COMPRESSORS.items():
        if not biased:
            continue
        b = results[(name, "ef")]
        u = results[(counterpart, "none")]  # used as an unbiased compressor (with EF it runs as C / (1 + omega))
        ok = b.bits_to_target is not None and (u.bits_to_target is None or b.bits_to_target < u.bits_to_target)
        wins += ok
        pairs.append(f"{name}+EF {'<' if ok else '>='} {counterpart} ({fmt_bits(b)} vs {fmt_bits(u)})")
    verdict = "YES" if wins == len(pairs) else ("MOSTLY" if 2 * wins > len(pairs) else "NO")
    lines.append(f"- Biased compressors (with EF) need fewer bits than their unbiased counterparts (without EF): "
                 f"{verdict}, {wins} of {len(pairs)} pairs: " + "; ".join(pairs) + ".")
    return lines


def markdown(results, local, args, gamma_star, tuning) -> str:
    rows = ["| compressor | class | bits / step / worker | EF: bits to target | no EF: bits to target |",
            "|---|---|---|---|---|"]
    for name, (_, biased, _) in COMPRESSORS.items():
        ef, none = results[(name, "ef")], results[(name, "none")]
        kind = "biased (B3)" if biased else ("none" if name == "identity" else "unbiased (U)")
        rows.append(f"| {name} | {kind} | {none.bits_per_exchange} | {fmt_bits(ef)} | {fmt_bits(none)} |")
    local_rows = [f"| method (H = {args.period}) | bits / round / worker | rounds to target | bits to target |",
                  "|---|---|---|---|"]
    for label, run in local.items():
        rounds = "not reached" if run.rounds_to_target is None else str(run.rounds_to_target)
        bits = "not reached" if run.bits_to_target is None else f"{run.bits_to_target:.3g}"
        local_rows.append(f"| {label} | {run.bits_per_exchange} | {rounds} | {bits} |")
    tune = ("gamma* tuned on the identity over " + ", ".join(f"{g:g}: {s}" for g, s in tuning) +
            " (steps to target)") if tuning else f"gamma* = {gamma_star:g} fixed (--quick; the full run tunes it)"
    note = (f"{args.dataset}, logistic regression, lambda = 1/n, K = {DEFAULTS['workers']} workers (ranks of "
            f"one process), b = {DEFAULTS['batch_size']}, {args.steps} steps at most, target suboptimality "
            f"{args.target:g} (checked every {args.check} steps), k = {K_KEPT} of d = 300, s = {LEVELS}, "
            f"32-bit values. {tune}; each compressor's best gamma of {{gamma*/{', gamma*/'.join(map(str, args.divisors))}}} "
            f"(gamma* = {gamma_star:g}). With EF an unbiased C runs as C / (1 + omega). Bits per worker; "
            f"Rand-k counts only its values (the shared seed does not travel).")
    return "\n".join(["## Compressed SGD: bits per worker to the target", "", *rows, "",
                      "## Compressed Local SGD (EF on the model change) versus Local SGD", "", *local_rows, "",
                      note, "", "Conclusions:", *conclusions(results), ""])


def import_matplotlib():
    """matplotlib.pyplot with the Agg backend (imported here, not with the module: a process of
    the pool that never plots does not pay its 0.4 s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(results, gamma_star, args, path):
    plt = import_matplotlib()

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, fb in zip(axes, ("ef", "none")):
        for name, (_, biased, _) in COMPRESSORS.items():
            run = results[(name, fb)]
            bits = [b for _, b, _ in run.curve[1:]]
            vals = [v for _, _, v in run.curve[1:]]
            ax.plot(bits, vals, "-" if biased else "--", label=f"{name} (gamma {run.gamma:g})")
        ax.axhline(args.target, color="k", lw=0.8, ls=":")
        log_scale(ax, "x")
        log_scale(ax, "y")
        ax.set_xlabel("bits sent per worker")
        ax.set_title("with error feedback" if fb == "ef" else "without error feedback")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("suboptimality F(x) - f*")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Compressed SGD on {args.dataset}, K = 4 (ranks in one process), solid: biased, dashed: unbiased")
    save_figure(fig, path, dpi=120, margins=dict(left=0.06, right=0.99, bottom=0.11, top=0.86, wspace=0.05))


def tune(pool, problem_key, args, countdown, known):
    """gamma* (fewest steps to the target of the identity over ``--tune-grid``) and the
    [(gamma, steps or "not reached")] of the grid; the runs go into ``known``."""
    for gamma in args.tune_grid:
        pool.submit(gamma, run_job, problem_key, "identity", "none", gamma, args)
    import_matplotlib()  # see main: with runs queued, the child runs one meanwhile
    steps = {}
    for gamma, run in pool.results():
        known[("identity", "none", gamma)] = run
        steps[gamma] = run.rounds_to_target if run.bits_to_target is not None else "not reached"
        print(f"  tune identity gamma = {gamma:g}: steps to target {steps[gamma]}  {countdown.tick()}", flush=True)
    tuning = [(gamma, steps[gamma]) for gamma in args.tune_grid]
    reached = [(s, g) for g, s in tuning if s != "not reached"]
    return (min(reached)[1] if reached else args.gamma), tuning


def main(argv) -> int:
    args = parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.steps = args.steps or preset["steps"]
    args.divisors = preset["divisors"]
    out = Path(args.out)
    refused = outputs.refusal(out, RESULTS, args.overwrite)
    if refused:
        return user_error(refused)
    started = time.perf_counter()
    with RunPool(args.jobs) as pool:
        pool.start(__name__)  # the children import this module while this process loads the data
        problem = Problem(args.dataset, DEFAULTS["batch_size"])
        problem_key = (args.dataset, problem.f_star)  # what the other processes build theirs from
        _PROBLEMS[problem_key] = problem
        # The plot's import (about 0.3 s) comes once the first runs are queued, while a child
        # runs one (tune, or before the results below): at the end, when it is needed, it
        # would run alone, with the other cores idle.
        print(f"compression-bits: {args.dataset}, n = {problem.n}, lambda = 1/n, f* = {problem.f_star:.10f}, "
              f"K = 4 workers as ranks of one process, target {args.target:g}, {args.jobs} run(s) at once",
              flush=True)
        gamma_star, tuning = args.gamma, []
        configs = [(name, fb) for name in COMPRESSORS for fb in ("ef", "none")
                   if not (name == "identity" and fb == "ef")]
        rows = (len(args.tune_grid) if preset["tune"] else 0) + len(configs) + 3
        countdown = Countdown(rows)
        known = {}  # (name, feedback, gamma) -> a Run made already (a whole run can stand in for a cut one)
        if preset["tune"]:
            gamma_star, tuning = tune(pool, problem_key, args, countdown, known)
        searches = {config: GammaSearch([gamma_star / div for div in args.divisors], args.steps, args.check)
                    for config in configs}
        results = {}

        def start(config, index):
            """Queue run ``index`` of ``config``, cut by the runs before it known now (or take it
            from ``known``, the tuning's whole runs)."""
            search = searches[config]
            gamma = search.gammas[index]
            if (*config, gamma) in known:
                finished(config, index, known[(*config, gamma)])
            else:
                pool.submit((config, index), run_job, problem_key, *config, gamma, args, None, search.budget(index))

        def finished(config, index, run):
            """Record run ``index``; after the first, queue the others; print the row once all have run."""
            search = searches[config]
            search.add(index, run)
            for later in (range(1, len(search.gammas)) if index == 0 else ()):
                start(config, later)
            if search.complete and config not in results:
                results[config] = search.best()
                name, fb = config
                print(f"  {name:26s} {fb:4s} bits to target {fmt_bits(results[config])}  {countdown.tick()}",
                      flush=True)

        local_labels = {"Local SGD (identity, 32-bit)": "identity",
                        "compressed Local SGD, top_k_natural_dithering + EF": "top_k_natural_dithering",
                        "compressed Local SGD, top_k + EF": "top_k"}
        for label, name in local_labels.items():
            pool.submit(("local", label), run_job, problem_key, name, "ef", gamma_star, args, args.period)
        for config in configs:
            start(config, 0)
        import_matplotlib()  # (imported by tune already, in a full run)
        local_runs = {}
        for key, run in pool.results():
            if key[0] == "local":
                local_runs[key[1]] = run
                print(f"  {key[1]}: rounds {run.rounds_to_target}, bits {run.bits_to_target}  {countdown.tick()}",
                      flush=True)
            else:
                finished(*key, run)
    # in the order of the table, whatever order the runs ended in (ties in the conclusions go to the first)
    results = {config: results[config] for config in configs}
    results[("identity", "ef")] = results[("identity", "none")]
    local = {label: local_runs[label] for label in local_labels}
    text = markdown(results, local, args, gamma_star, tuning)
    print("\n" + text, flush=True)
    write_text(out / "bits.md", text)
    write_json(out / "bits.json", {
        "target": args.target, "gamma_star": gamma_star, "tuning": tuning, "steps": args.steps,
        "runs": {f"{n}/{fb}": {"gamma": r.gamma, "bits_to_target": r.bits_to_target, "final": r.final,
                               "bits_per_step": r.bits_per_exchange, "curve": r.curve}
                 for (n, fb), r in results.items()},
        "local": {label: {"rounds_to_target": r.rounds_to_target, "bits_to_target": r.bits_to_target,
                          "bits_per_round": r.bits_per_exchange} for label, r in local.items()},
    }, indent=1)
    plot(results, gamma_star, args, out / "bits.png")
    print(f"wrote {out}/bits.md, bits.json, bits.png in {time.perf_counter() - started:.0f} s")
    return 0
