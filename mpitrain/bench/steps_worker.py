"""One K-rank run of ``bench steps``, started under mpiexec by mpitrain.bench.steps (not a user command).

    mpiexec -n K python -m mpitrain.bench.steps_worker --out result.json --seconds 1.5 --rounds 3
        --output-dir DIR

Every rank builds, for each training method of :data:`METHODS`, a
:class:`mpitrain.train.Trainer` on w8a (logistic regression, l2 = 1/n, b = 32, float64,
constant step size, no evaluation, no f*), and the references of :data:`REFERENCES` on its
own shard of the same rows. Then each item is timed:

1. warm-up: ``WARMUP`` steps, untimed (first touch, MPI buffers);
2. calibration: ``CALIBRATION`` steps timed; the slowest rank's time per step sets the step
   count of a round, ``seconds / rounds`` worth, rounded up to a multiple of ``UNIT`` (64:
   every period below divides it, so a round holds whole periods). Every rank computes the
   same count from the same Allreduce (lock-step methods need the same count on all ranks);
3. ``rounds`` rounds, the items interleaved within each round (so machine noise hits them
   alike): Barrier, run the count, keep the slowest rank's time.

Steps are taken as the training loop takes them, through ``algorithm.run_steps(t, count)``
(Local SGD runs a stretch of local steps in one C call, sync SGD a block of steps with its
Allreduces); a method marked ``one_step_per_call`` is stepped ``algorithm.step(t)`` once per
step instead, the path of ``MPITRAIN_BLOCKS=0`` (beside the fused row, it shows what fusing
gains). The rate kept is the median over rounds of count / slowest time; a synchronous
method's round is one call. A method with local steps gets one call per stretch of steps that
do not communicate (decided by the algorithm's own period rule), timed on its own, and one per
communicating step; the local-step rate is local steps / slowest rank's time in those calls.
Rank 0 writes one JSON object to ``--out``.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from mpi4py import MPI

from ..argparsing import ArgumentParser

from .steps_methods import (BATCH, CALIBRATION, COMMON, METHODS, STEP_SIZE, STEPS, UNIT,  # noqa: F401
                            WARMUP, Method)


@dataclass
class Item:
    """One thing to time: ``run(count)`` does count steps from where the last call stopped and
    returns (this rank's seconds, seconds in local steps, local steps)."""

    name: str
    kind: str  # "reference", "sync" or "local"
    run: Callable
    comm_fraction: float = 1.0  # share of steps that communicate (0 for the C loops)
    algorithm: object = None  # the method's Algorithm (None for the references)
    rates: list = field(default_factory=list)
    local_rates: list = field(default_factory=list)
    count: Optional[int] = None


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain.bench.steps_worker")
    p.add_argument("--out", required=True, help="JSON file rank 0 writes")
    p.add_argument("--seconds", type=float, required=True, help="time budget per measurement (all rounds)")
    p.add_argument("--rounds", type=int, required=True, help="interleaved rounds; the median is kept")
    p.add_argument("--output-dir", required=True, help="run.output_dir of the trainers (nothing is written)")
    return p.parse_args(argv)


def algorithm_item(comm, method: Method, output_dir: str) -> Item:
    """A Trainer for ``method`` (collective); its item steps ``algorithm.step(t)``."""
    from ..config import load_config
    from ..runtime import agree
    from ..train import Trainer

    assignments = [*COMMON, f"train.algorithm={method.algorithm}", *method.overrides,
                   f"run.output_dir={output_dir}/{method.algorithm}"]
    config = agree(comm, lambda: load_config(None, assignments), what="invalid configuration")
    trainer = Trainer(config, comm)
    algorithm = trainer.algorithm
    run_steps = one_step_per_call(algorithm) if method.one_step_per_call else algorithm.run_steps
    clock = time.perf_counter
    state = {"t": 0}

    def run_sync(count):
        t0 = state["t"]
        start = clock()
        run_steps(t0, count)
        state["t"] = t0 + count
        return clock() - start, 0.0, 0

    def run_local(count):
        t0 = state["t"]
        local = [not method.syncs(algorithm, t) for t in range(t0, t0 + count)]  # before the clock
        stretches = local_stretches(t0, local)
        local_seconds = 0.0
        start = clock()
        for t, length, is_local in stretches:
            before = clock()
            run_steps(t, length)
            if is_local:
                local_seconds += clock() - before
        state["t"] = t0 + count
        return clock() - start, local_seconds, sum(local)

    item = Item(method.name, "local" if method.local else "sync", run_local if method.local else run_sync,
                algorithm=algorithm)
    if method.local:
        item.comm_fraction = sum(method.syncs(algorithm, t) for t in range(UNIT)) / UNIT
    return item


def one_step_per_call(algorithm) -> Callable:
    """``run_steps(t, count)`` that calls ``algorithm.step`` once per step (MPITRAIN_BLOCKS=0's path)."""
    step = algorithm.step

    def run_steps(t, count):
        for i in range(t, t + count):
            step(i)
    return run_steps


def local_stretches(t0: int, local: list) -> list:
    """(first step, length, local?) of the maximal runs of local steps and of each communicating
    step in t0, t0 + 1, ... (``local[i]``: step t0 + i does not communicate)."""
    stretches = []
    for i, is_local in enumerate(local):
        if is_local and stretches and stretches[-1][2]:
            t, length, _ = stretches[-1]
            stretches[-1] = (t, length + 1, True)
        else:
            stretches.append((t0 + i, 1, is_local))
    return stretches


def reference_items(comm, objective, size: int) -> list:
    """The C loop on this rank's rows, one C step per Python call, the bare Allreduce, and
    (K > 1) a C step followed by the bare Allreduce, from Python, per step."""
    from .._native.reference_loop import reference_loop

    a = objective.features
    csr = (a.data, a.indices, a.indptr, objective.labels)
    lam = objective.l2
    seed = (0x5EED + comm.Get_rank()) << 32  # a different row stream per rank
    calls = {"n": 0}
    x_loop, x_step, x_both = (np.zeros(objective.n_features) for _ in range(3))
    g = np.zeros(objective.n_features)
    buf = np.zeros(objective.n_features)
    allreduce = comm.Allreduce
    clock = time.perf_counter

    def c_loop(count):
        calls["n"] += 1
        start = clock()
        reference_loop(*csr, x_loop, count, BATCH, STEP_SIZE, lam, seed + calls["n"])
        return clock() - start, 0.0, 0

    def c_steps(count):
        base = seed + (calls["n"] << 24)
        calls["n"] += 1
        start = clock()
        for t in range(count):
            reference_loop(*csr, x_step, 1, BATCH, STEP_SIZE, lam, base + t, g=g)
        return clock() - start, 0.0, 0

    def bare(count):
        start = clock()
        for _ in range(count):
            allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return clock() - start, 0.0, 0

    def c_steps_bare(count):
        base = seed + (calls["n"] << 24)
        calls["n"] += 1
        start = clock()
        for t in range(count):
            reference_loop(*csr, x_both, 1, BATCH, STEP_SIZE, lam, base + t, g=g)
            allreduce(MPI.IN_PLACE, g, op=MPI.SUM)
        return clock() - start, 0.0, 0

    items = [Item("C reference", "reference", c_loop, 0.0),
             Item("C step, one Python call a step", "reference", c_steps, 0.0)]
    if size > 1:
        items += [Item("bare Allreduce", "reference", bare, 1.0),
                  Item("C step + bare Allreduce", "reference", c_steps_bare, 1.0)]
    return items


def slowest(comm, seconds: float) -> float:
    return comm.allreduce(seconds, op=MPI.MAX)


def calibrate(comm, item: Item, per_round: float) -> None:
    """Warm up, then set ``item.count``: per_round seconds of steps, a multiple of UNIT."""
    item.run(WARMUP)
    comm.Barrier()
    per_step = max(slowest(comm, item.run(CALIBRATION)[0]) / CALIBRATION, 1e-9)
    item.count = UNIT * max(1, math.ceil(per_round / per_step / UNIT))


def time_round(comm, item: Item) -> None:
    comm.Barrier()
    seconds, local_seconds, local_steps = item.run(item.count)
    item.rates.append(item.count / slowest(comm, seconds))
    if item.kind == "local":
        item.local_rates.append(local_steps / max(slowest(comm, local_seconds), 1e-12))


def result_row(item: Item) -> dict:
    return {"name": item.name, "kind": item.kind, "count_per_round": item.count,
            "comm_fraction": item.comm_fraction,
            "steps_per_second": statistics.median(item.rates),
            "local_steps_per_second": statistics.median(item.local_rates) if item.local_rates else None,
            "round_rates": item.rates}


def main(argv) -> int:
    from ..runtime import JobError

    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    try:
        methods = [algorithm_item(comm, method, args.output_dir) for method in METHODS]
    except JobError as exc:
        if comm.Get_rank() == 0:
            print(f"mpitrain: error: {exc}", file=sys.stderr, flush=True)
        return getattr(exc, "code", 2)
    objective = methods[0].algorithm.worker.objective
    items = reference_items(comm, objective, comm.Get_size()) + methods
    per_round = args.seconds / args.rounds
    for item in items:
        calibrate(comm, item, per_round)
    for _ in range(args.rounds):
        for item in items:
            time_round(comm, item)
    for item in methods:
        item.algorithm.finish()  # collective (the hierarchy frees its communicators)
    if comm.Get_rank() == 0:
        result = {"ranks": comm.Get_size(), "n_features": objective.n_features,
                  "n_local_rows_rank0": objective.n_samples, "l2": objective.l2,
                  "rows": [result_row(item) for item in items]}
        with open(args.out, "w") as f:
            json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
