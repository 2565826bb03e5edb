"""K workers of a paper experiment: the real algorithm classes, one thread per rank, on the
in-process communicator (mpitrain.comm.inprocess).

An experiment runs many short jobs (one per K, H, seed, compressor, ...) on a machine with
few cores; ``mpiexec`` with K = 16 ranks on 2 cores would spend its time in the scheduler.
So the K ranks are K threads of one process, and each thread builds its parts exactly as
``mpiexec -n K python -m mpitrain train`` does (mpitrain.train.Trainer, mpitrain.problem):

- its shard: ``mpitrain.data.shard(full, rank, K, scheme, seed, alpha)`` of the whole data
  set, with the config's sharding fields (defaults: iid, data_seed 0);
- its objective over that shard, with lambda from the config's ``objective.l2`` on N rows;
- its Worker: weight n_k / N, ``BatchSampler(n_k, b, seed, rank)``, the step-size schedule,
  the run's seed (compressor streams derive from it), x_0 = 0 in the objective's dtype.

Then the algorithm is the one ``train.algorithm`` names, stepped unchanged; its averages are
Allreduce / Allgatherv calls that sum in rank order (tests/test_inprocess.py checks these
runs against ``mpiexec`` runs: the same bits at K = 2, to 1e-12 at K = 4).

Measurement is the experiment's own, not the training loop's: the model the algorithm
evaluates (``evaluation_point()``, collective) is scored by rank 0 on the whole data set
(F(x) - f*, f* solved once; the loss pass only, the same bits as mpitrain.evaluation), and
rank 0's verdict is broadcast so that all ranks stop at the same step. Scoring is most of an
experiment's time: a pass over w8a's 49,749 rows every few steps of b = 4 rows per worker.
"""
from __future__ import annotations

import json
import time

import numpy as np
from mpi4py import MPI

from ..algorithms.base import Worker
from ..comm import inprocess
from ..comm.accounting import CommStats
from ..config import load_config
from ..data import open_dataset, shard
from ..objectives import make_objective
from ..objectives.reference import reference_optimum
from ..sampling import BatchSampler


class Problem:
    """The full data set, its objective, f*, and the per-K shards (built once per K)."""

    def __init__(self, dataset: str, batch_size: int):
        self.config = load_config(None, [f"data.dataset={json.dumps(dataset)}", 'objective.l2="1/n"',
                                         f"train.batch_size={batch_size}"])
        self.full = open_dataset(dataset, dtype=np.float64)
        self.n = self.full.n_samples
        self.l2 = self.config.objective.l2_value(self.n)
        self.objective = make_objective("logistic", self.full.features, self.full.labels, self.l2)
        self.f_star = float(reference_optimum(self.objective, MPI.COMM_SELF, fingerprint=self.full.fingerprint).f_star)
        self._cache = {}

    def shards(self, workers: int):
        """(objectives, weights) of the K ranks, as mpitrain.problem builds them. Call it before
        the threads start (``run`` does): it replaces the cache."""
        if workers not in self._cache:
            data = self.config.data
            parts = [shard(self.full, k, workers, scheme=data.sharding, seed=data.data_seed,
                                 alpha=data.dirichlet_alpha) for k in range(workers)]
            objectives = [make_objective("logistic", p.features, p.labels, self.l2) for p in parts]
            weights = [p.n_samples / self.n for p in parts]
            self._cache = {workers: (objectives, weights)}
        return self._cache[workers]

    def suboptimality(self, x) -> float:
        """F(x) - f* on the whole data set, the bits of ``Evaluator.evaluate(x)["suboptimality"]``
        without its gradient pass (half the cost; evaluation is most of an experiment's time)."""
        x64 = x.astype(np.float64, copy=False)
        loss = self.objective.loss_sum(x) / self.n + 0.5 * self.objective.l2 * float(x64 @ x64)
        return float(loss - self.f_star)

    def worker(self, comm, *, step_size, batch_size: int, seed: int, steps: int) -> Worker:
        """This thread's Worker for a run on ``comm`` (built as mpitrain.train.Trainer builds it)."""
        rank, size = comm.Get_rank(), comm.Get_size()
        objectives, weights = self._cache[size]
        objective = objectives[rank]
        return Worker(comm=comm, objective=objective, n_global=self.n, weight=weights[rank],
                      sampler=BatchSampler(objective.n_samples, batch_size, seed, rank), step_size=step_size,
                      stats=CommStats(), x0=objective.initial_point(0), steps=steps,
                      seed=seed, batch_size=batch_size)

    def run(self, workers: int, function):
        """``function(comm)`` on ``workers`` threads, one per rank; rank 0's result."""
        self.shards(workers)
        return inprocess.run(workers, function)[0]

    def reached(self, comm, x, target: float):
        """(suboptimality, whether it is <= target): rank 0 scores x, every rank gets its verdict."""
        value = self.suboptimality(x) if comm.Get_rank() == 0 else None
        return comm.bcast((value, value is not None and value <= target), root=0)


def train_in_process(config, workers: int, timeout: float | None = None):
    """The configured job on ``workers`` threads: rank 0's (records, final model).

    Each thread builds ``mpitrain.train.Trainer(config, comm)`` on its in-process communicator
    (so its shard, objective, sampler, schedule and algorithm are those of ``mpiexec -n K
    python -m mpitrain train``) and steps the loop that ``Trainer.run`` steps for a lock-step
    algorithm: a record (``Trainer.evaluate``, collective) at step 0, every ``run.log_every``
    steps and after the last; the final model is ``evaluation_point()`` after ``finish()``,
    what ``parameters.npy`` holds. No run folder, checkpoints, signals, watchdog or fault
    injection: this is for experiments and tests, not a replacement for ``train``.
    """
    from ..train import Trainer

    def rank(comm):
        trainer = Trainer(config, comm)
        algorithm = trainer.algorithm
        if not algorithm.evaluates_in_loop:
            raise ValueError(f"{config.train.algorithm} is asynchronous: it needs a real MPI (point-to-point, RMA)")
        records = [trainer.evaluate(0)]
        t = 0
        while not algorithm.done(t):
            started = time.perf_counter()
            algorithm.step(t)
            trainer.train_seconds += time.perf_counter() - started
            t += 1
            if t % config.run.log_every == 0 or algorithm.done(t):
                records.append(trainer.evaluate(t))
        algorithm.finish()
        return records, algorithm.evaluation_point()

    return inprocess.run(workers, rank, timeout=timeout)[0]
