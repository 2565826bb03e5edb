"""One measured training run, started by ``bench scale`` under mpiexec (not a user command).

    mpiexec -n K python -m mpitrain.bench.scale_worker --out result.json [--launched EPOCH]
        [--probes 1000,10000] -- --config FILE --set SECTION.FIELD=VALUE ...

Every rank loads the config, builds the :class:`mpitrain.train.Trainer` and runs it as
``python -m mpitrain train`` would; around that it measures, on every rank:

- ``baseline_mb``: resident memory after MPI start-up and the imports a run needs (SciPy,
  the objectives, data readers, algorithms), before the problem and the algorithm are built
  (``/proc/self/statm``);
- ``peak_mb``: the process's peak resident memory at the end (``getrusage`` ``ru_maxrss``);
- ``probe_mb``: resident memory right after this rank's steps named in ``--probes``
  (1-based step counts; the last one is also taken after the final step when the rank
  stops earlier), for the steady-memory check;
- ``startup_seconds`` (rank 0): from ``--launched`` (the launcher's ``time.time()`` just
  before mpiexec started) until every rank has built its Trainer (a Barrier);
- ``train_seconds``: the loop's training time (evaluation excluded), the slowest rank's.

Rank 0 gathers them and writes one JSON object to ``--out``; other ranks stay quiet.
"""
from __future__ import annotations

import json
import sys
import time

from mpi4py import MPI

from ..argparsing import ArgumentParser
from ..memory import current_rss_mb, peak_rss_mb


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain.bench.scale_worker")
    p.add_argument("--out", required=True, help="JSON file rank 0 writes")
    p.add_argument("--launched", type=float, default=None, help="launcher's time.time() before mpiexec")
    p.add_argument("--probes", default="", help="comma-separated step counts after which RSS is read")
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    return p.parse_args(argv)


class StepProbe:
    """Wraps ``algorithm.step`` and ``algorithm.run_steps`` to read this rank's RSS after the steps
    named in ``probes``. A block of steps taken in one kernel call (sync and Local SGD) is read
    after the block that holds the probe's step: nothing runs in between that could allocate."""

    def __init__(self, algorithm, probes):
        self.probes = sorted(set(probes))
        self.readings = {}
        self.steps = 0
        self._step = algorithm.step
        self._run_steps = algorithm.run_steps
        algorithm.step = self
        algorithm.run_steps = self.run_steps

    def __call__(self, t):
        self._step(t)
        self.steps += 1
        if self.steps in self.probes:
            self.readings[self.steps] = current_rss_mb()

    def run_steps(self, t, count):
        before = self.steps
        taken = self._run_steps(t, count)
        if self.steps == before:  # a block in one kernel call: step() was not called
            self.steps += taken
            for probe in self.probes:
                if before < probe <= self.steps and probe not in self.readings:
                    self.readings[probe] = current_rss_mb()
        return taken

    def finish(self):
        """Read the last probe at the end when this rank stopped before reaching it."""
        if self.probes and self.probes[-1] not in self.readings:
            self.readings[self.probes[-1]] = current_rss_mb()


def main(argv) -> int:
    from .. import algorithms, data, objectives  # noqa: F401  (imported before the baseline)
    from ..config import load_config
    from ..runtime import JobError, agree
    from ..train import Trainer
    import scipy.sparse  # noqa: F401

    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    config = agree(comm, lambda: load_config(args.config, args.set), what="invalid configuration")
    baseline = current_rss_mb()
    try:
        trainer = Trainer(config, comm)
        probe = StepProbe(trainer.algorithm, [int(s) for s in args.probes.split(",") if s])
        comm.Barrier()
        ready = time.time()
        summary = trainer.run()
    except JobError as exc:
        if rank == 0:
            print(f"mpitrain: error: {exc}", file=sys.stderr, flush=True)
        return getattr(exc, "code", 2)
    probe.finish()
    per_rank = comm.gather({"baseline_mb": baseline, "peak_mb": peak_rss_mb(), "probe_mb": probe.readings,
                            "steps": probe.steps}, root=0)
    train_seconds = comm.allreduce(trainer.train_seconds, op=MPI.MAX)
    if rank == 0:
        result = {"ranks": comm.Get_size(), "algorithm": config.train.algorithm,
                  "n_features": summary["n_features"], "steps": summary["steps"],
                  "final_loss": summary["final_loss"], "train_seconds": train_seconds,
                  "startup_seconds": None if args.launched is None else ready - args.launched,
                  "per_rank": per_rank}
        with open(args.out, "w") as f:
            json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
