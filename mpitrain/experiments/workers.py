"""K workers of a paper experiment: the real algorithm classes, one greenlet per rank, on the
in-process communicator (mpitrain.comm.inprocess).

An experiment runs many short jobs (one per K, H, seed, compressor, ...) on a machine with
few cores; ``mpiexec`` with K = 16 ranks on 2 cores would spend its time in the scheduler.
So the K ranks are K greenlets of one thread, and each builds its parts exactly as
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
rank 0's verdict is broadcast so that all ranks stop at the same step. Scoring was most of the
Local SGD experiment's time (a pass over w8a's 49,749 rows every 10 steps of b = 4 rows per
worker), so :func:`checked_run` scores on two threads of their own (:class:`Scorer`, two
models at once) while the workers step on: the three overlap on two cores. The verdicts are
the same (each checked model scored whole, values taken in turn, first hit wins); the workers
only run up to ``depth`` checks past it.
"""
from __future__ import annotations

import json
import queue
import threading
import time

import numpy as np
from mpi4py import MPI

from ..algorithms.base import Worker
from ..comm import inprocess
from ..comm.accounting import CommStats
from ..config import load_config
from ..data import open_dataset, shard
from ..objectives import make_objective
from ..objectives.distinct_rows import DistinctLossSum
from ..objectives.reference import reference_optimum
from ..sampling import BatchSampler


class Problem:
    """The full data set, its objective, f*, and the per-K shards (built once per K)."""

    def __init__(self, dataset: str, batch_size: int, f_star: float | None = None):
        """``f_star``: F's minimum when known (a process that solved it passes it on; the
        solve is a collective over MPI.COMM_SELF, and the children of mpitrain.experiments.parallel
        have no MPI)."""
        self.config = load_config(None, [f"data.dataset={json.dumps(dataset)}", 'objective.l2="1/n"',
                                         f"train.batch_size={batch_size}"])
        self.full = open_dataset(dataset, dtype=np.float64)
        self.n = self.full.n_samples
        self.l2 = self.config.objective.l2_value(self.n)
        self.objective = make_objective("logistic", self.full.features, self.full.labels, self.l2)
        if f_star is None:
            f_star = reference_optimum(self.objective, MPI.COMM_SELF, fingerprint=self.full.fingerprint).f_star
        self.f_star = float(f_star)
        self._loss_sum = DistinctLossSum(self.objective)  # the same bits as objective.loss_sum
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
        without its gradient pass (half the cost; evaluation is most of an experiment's time),
        each distinct row's loss computed once (mpitrain.objectives.distinct_rows)."""
        return self._suboptimality(self._loss_sum(x), x)

    def _suboptimality(self, loss_sum: float, x) -> float:
        """F - f* from a loss sum over all n rows: loss_sum / n + (l2/2)||x||^2 - f*, each step
        rounded monotonically (so a smaller loss sum never gives a larger value)."""
        x64 = x.astype(np.float64, copy=False)
        return float(loss_sum / self.n + 0.5 * self.objective.l2 * float(x64 @ x64) - self.f_star)

    def screened_suboptimality(self, x, threshold: float) -> float:
        """F(x) - f* (:meth:`suboptimality`, the same float), or a lower bound of it when that
        bound is already above ``threshold``; so the value is <= threshold exactly when F(x) - f*
        is. The bound (``DistinctLossSum.lower_bound``: the loss by a table, about half the
        cost) goes through the same float operations, which round monotonically, so it never
        exceeds the exact value; a model near the threshold, or one the bound cannot handle, is
        scored exactly."""
        lower = self._loss_sum.lower_bound(x)
        if lower is not None:
            bound = self._suboptimality(lower, x)
            if bound > threshold:
                return bound
        return self.suboptimality(x)

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


class Scorer:
    """F(x) - f* of the models handed to :meth:`submit`, in order, on threads of their own.

    ``stop(value)`` says which value ends the run (the target reached, a divergence); the
    models submitted after the first such one are not kept. At most ``depth`` models are
    outstanding (queued, being scored, or scored and waiting for an earlier one), so the
    workers, stepping on meanwhile, run at most ``depth`` checks past the one that ends the
    run. ``threads`` models are scored at once, each by one call of the loss kernel (its
    ``nogil`` loop: the same bits as scoring them one after the other), and the values are
    taken in submission order; on two cores the scorers and the workers' steps overlap. Rank 0
    owns it. ``screen``: a threshold for :meth:`Problem.screened_suboptimality` (a run that
    only asks "at or below it yet?"): values above it may be lower bounds, not F(x) - f*.
    """

    def __init__(self, problem: Problem, stop, depth: int = 6, threads: int = 2, screen: float | None = None):
        self.problem, self.stop, self.screen = problem, stop, screen
        self.scored = []  # (tag, value) in submission order, up to the first that met stop
        self.done = threading.Event()  # set once a value met stop
        self._room = threading.Semaphore(depth)  # one slot per outstanding model
        self._pending = queue.Queue()
        self._submitted = 0
        self._values = {}  # index -> (tag, value, final), scored but not yet taken in order
        self._lock = threading.Lock()  # guards _values, scored, done and _error between scorers
        self._error = None
        self._threads = [threading.Thread(target=self._score, name=f"experiment-scorer-{i}", daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def _score(self):
        while (item := self._pending.get()) is not None:
            index, tag, x, final = item
            if self.done.is_set() or self._error is not None:
                self._room.release()  # past the end of the run, or failed: drain
                continue
            try:
                value = (self.problem.suboptimality(x) if self.screen is None
                         else self.problem.screened_suboptimality(x, self.screen))
            except BaseException as exc:  # noqa: BLE001 -- re-raised by submit / close
                with self._lock:
                    self._error = self._error or exc
                    self._discard_waiting()
                self._room.release()
                continue
            with self._lock:
                if self.done.is_set() or self._error is not None:
                    self._room.release()
                    continue
                self._values[index] = (tag, value, final)
                self._take_in_order()

    def _take_in_order(self):
        """Move the values that follow the last one taken into ``scored``, freeing their slots;
        stop at the first that ends the run (called under ``_lock``)."""
        while len(self.scored) in self._values:
            tag, value, final = self._values.pop(len(self.scored))
            self.scored.append((tag, value))
            self._room.release()
            if final and self.stop(value):
                self.done.set()
                self._discard_waiting()
                return

    def _discard_waiting(self):
        """The run ended (or failed): values scored after it are dropped (called under ``_lock``)."""
        for _ in self._values:
            self._room.release()
        self._values.clear()

    def submit(self, tag, x, *, final: bool = True) -> bool:
        """Queue a copy of ``x`` (blocks while ``depth`` are outstanding); whether the run has
        ended. ``final=False``: score it, but its value never ends the run (the initial point)."""
        self._raise()
        self._room.acquire()
        self._pending.put((self._submitted, tag, np.array(x, copy=True), final))
        self._submitted += 1
        return self.done.is_set()

    def close(self) -> list:
        """Wait for the models queued; [(tag, value)] up to the one that ended the run."""
        for _ in self._threads:
            self._pending.put(None)
        for thread in self._threads:
            thread.join()
        self._raise()
        return self.scored

    def _raise(self):
        if self._error is not None:
            raise self._error


def checked_run(comm, problem: Problem, method, *, check: int, max_steps: int, stop, tag=None,
                score_initial: bool = False, screen: float | None = None):
    """Step ``method`` ``check`` steps at a time, at most ``max_steps``; score the model it
    evaluates (``evaluation_point()``, collective) after each block, and end at the first
    whose F(x) - f* meets ``stop``. Collective over ``comm``.

    Returns, on rank 0, [(tag, value)] of the checks up to and including that one (all of them
    if none did), ``tag(t)`` called at each check (default: the step t); with
    ``score_initial`` the model before the first step comes first (it never ends the run).
    None on the other ranks. The same list as scoring each check before the next block.
    ``screen``: see :class:`Scorer` (``stop`` must then be "value <= screen").
    """
    tag = tag or (lambda t: t)
    scorer = Scorer(problem, stop, screen=screen) if comm.Get_rank() == 0 else None
    try:
        if score_initial:
            point = method.evaluation_point()
            if scorer is not None:
                scorer.submit(tag(0), point, final=False)
        t = 0
        while t < max_steps:
            t += method.run_steps(t, check)
            point = method.evaluation_point()
            ended = scorer.submit(tag(t), point) if scorer is not None else None
            if comm.bcast(ended, root=0):
                break
    finally:
        scored = scorer.close() if scorer is not None else None
    return scored


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
