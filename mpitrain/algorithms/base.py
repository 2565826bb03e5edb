"""What every algorithm sees (:class:`Worker`) and must provide (:class:`Algorithm`).

The training loop (mpitrain.train) owns timing, evaluation, metrics and checkpoints; an
algorithm owns only its math and its communication. An algorithm is built from parts, not
from a config: ``ALGORITHMS[name](worker, options)``, where the :class:`Worker` carries the
communicator, the objective, the sampler, the step-size schedule, the step budget and the
seed, and ``options`` is the algorithm's option section (a frozen dataclass; None for an
algorithm without options). mpitrain.train is the one place that reads a ``Config`` and builds
these; from Python (or an experiment) any algorithm is built and stepped in a few lines::

    worker = Worker(comm=MPI.COMM_WORLD, objective=objective, n_global=n, weight=n_local / n,
                    sampler=BatchSampler(n_local, 32, seed, rank), step_size=Constant(0.5),
                    stats=CommStats(), x0=np.zeros(d), steps=1000, seed=0)
    algorithm = LocalSGD(worker, LocalSGDOptions(period=8))
    for t in range(1000):
        algorithm.step(t)

Every algorithm has a ``name``: the key of mpitrain.algorithms.ALGORITHMS, the name of its
config section and the prefix of its config errors. One ``step(t)`` is one iteration of one
worker; ``run_steps(t, count)`` takes ``count`` of them in one call (the loop calls it with the
steps up to its next evaluation, checkpoint or stop check; an algorithm may fuse them, as Local
SGD runs its local steps in C; the default steps one at a time); ``done(t)`` says whether this
worker stops before step ``t`` (synchronous methods: after ``train.steps`` steps; asynchronous
ones on a budget of total updates or wall time);
``evaluation_point()`` is the model the loop evaluates (for Local SGD the weighted
average, for example); ``state_dict()`` / ``load_state_dict()`` hold everything a resumed
run needs beyond the parameters and the sampler.

Device arrays (``train.device = "gpu"``): ``x0`` may be a device array (mpitrain.backend); an
algorithm then allocates what it holds through ``xp = backend.array_module(x0)``, so parameters,
gradients and memories stay on the device, steps with :func:`update` (the fused Cython kernels
take host arrays only), and hands MPI its buffers through mpitrain.comm.device_buffers. The loop
copies to the host what it evaluates and checkpoints.

Evaluation is collective. A synchronous algorithm (``evaluates_in_loop = True``) lets the
loop evaluate between steps every ``run.log_every`` steps. An asynchronous one cannot stop
its peers for that: it sets ``evaluates_in_loop = False`` and hands the loop, after
``finish()``, a ``trajectory()`` of recorded points to evaluate together.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import backend
from .._native.vector import scaled_update
from ..comm.accounting import CommStats
from ..comm.averaging import Averager
from ..sampling import BatchSampler
from ..schedules import Constant, InverseTime

EXACT_INTEGERS = 2 ** 53  # integers below this are exact doubles


@dataclass
class Worker:
    """One rank's share of the problem and its tools."""

    comm: Any  # the mpi4py communicator of all workers
    objective: Any  # mpitrain.objectives.Objective over this rank's rows
    n_global: int  # N, total samples over all ranks
    weight: float  # n_local / N, this rank's weight in averages
    sampler: BatchSampler  # draws local mini-batches, seeded from (seed, rank)
    step_size: Callable[[int], float]  # eta_t
    stats: CommStats  # compute/communication accounting
    x0: np.ndarray  # starting point (same on every rank)
    steps: int  # T, the step budget of a synchronous method (steps per worker)
    seed: int  # the run's seed (streams of compressors, noise, stragglers derive from it)
    batch_size: int = 1  # b, the mini-batch per step (Local SGD's automatic period uses it)
    eval_every: int = 100  # steps between evaluations (an asynchronous method snapshots x this often)

    @property
    def rank(self) -> int:
        return self.comm.Get_rank()

    @property
    def size(self) -> int:
        return self.comm.Get_size()

    def averager(self) -> Averager:
        return Averager(self.comm, self.weight, self.stats)


class Algorithm:
    """Base class: holds ``x`` and a gradient buffer; subclasses implement ``step``."""

    #: the algorithm's name: its registry key, config section and error prefix
    name = ""
    #: option section class (a frozen dataclass) of this algorithm, or None
    options = None
    #: whether the loop may evaluate (collectively) between steps; see the module doc
    evaluates_in_loop = True
    #: (x, grad, the objective's gradient kernel for them or None), made at the first gradient
    _prepared_gradient = None

    def __init__(self, worker: Worker, options=None):
        self.worker = worker
        self.opts = options if options is not None or self.options is None else self.options()
        self.xp = backend.array_module(worker.x0)  # numpy, or the device's array module
        self.x = worker.x0.copy()
        self.grad = self.xp.empty_like(self.x)

    @classmethod
    def validate(cls, config):
        """Cross-section checks on the config (raise mpitrain.config.ConfigError)."""

    def step(self, t: int) -> None:
        raise NotImplementedError

    def run_steps(self, t: int, count: int) -> int:
        """Steps t, t + 1, ..., t + count - 1, or fewer if ``done`` first; returns how many were
        taken. The iterates, draws and metrics are those of ``step`` called for each."""
        done = self.done
        if type(self).done is Algorithm.done:  # the step budget alone decides: no call a step
            count, done = max(0, min(count, self.worker.steps - t)), None
        for i in range(count):
            if done is not None and done(t + i):
                return i
            self.step(t + i)
        return count

    def done(self, t: int) -> bool:
        """Whether this worker stops before step ``t`` (here: after ``train.steps`` steps)."""
        return t >= self.worker.steps

    def planned_steps(self) -> int:
        """The step count the progress line shows as its total."""
        return self.worker.steps

    def trajectory(self) -> list:
        """After ``finish()``, when ``evaluates_in_loop`` is False: the points to evaluate,
        as dicts ``{"step", "time", "x"}`` in order, the same count on every rank; the
        last one is the final model."""
        return []

    def write_outputs(self, out_dir) -> None:
        """Rank 0 only, after the run: extra files (plots) in ``out_dir``."""

    def stochastic_gradient(self) -> np.ndarray:
        """grad on a fresh local mini-batch at self.x, into self.grad (timed as compute).

        Where the objective has one (linear models on the CPU), a kernel prepared for this x and
        grad (``objective.gradient_kernel``) draws and computes in one call, the bits of
        ``batch_gradient(x, sampler.draw(), grad)`` without its per-call checks; it is made again
        if x or grad is ever rebound."""
        started = time.perf_counter()
        self.fresh_gradient()
        self.worker.stats.compute_seconds += time.perf_counter() - started
        return self.grad

    def fresh_gradient(self) -> np.ndarray:
        """What :meth:`stochastic_gradient` computes, untimed: for a step that times itself as a
        whole (compressed SGD: its time less its exchange's)."""
        prepared = self._prepared_gradient
        if prepared is None or prepared[0] is not self.x or prepared[1] is not self.grad:
            w = self.worker
            make = getattr(w.objective, "gradient_kernel", None)
            kernel = make(self.x, self.grad, w.sampler) if make is not None else None
            prepared = self._prepared_gradient = (self.x, self.grad, kernel)
        if prepared[2] is not None:
            prepared[2].gradient()
        else:
            w = self.worker
            w.objective.batch_gradient(self.x, w.sampler.draw(), self.grad)
        return self.grad

    def evaluation_point(self) -> np.ndarray:
        """The model the loop evaluates; collective if the algorithm needs to average."""
        return self.x

    def metrics(self) -> dict:
        """Extra numbers for the metrics line (JSON-serialisable)."""
        return {}

    def state_dict(self) -> dict:
        return {"x": self.x}

    def load_state_dict(self, state: dict) -> None:
        backend.assign(self.x, state["x"])

    def finish(self) -> None:
        """Called once after the last step (collective)."""


def update(x, g, alpha: float, beta: float = 1.0) -> None:
    """x <- beta (x + alpha g), in place: the Cython ``scaled_update`` for host arrays, the same
    arithmetic (``x -= a g`` with a = -alpha in x's dtype, then ``x *= beta``) in x's array
    module for device arrays, bit for bit the Cython pass where NumPy runs it."""
    if type(x) is np.ndarray:
        scaled_update(x, g, alpha, beta)
        return
    dtype = x.dtype.type
    x -= dtype(-alpha) * g
    if beta != 1.0:
        x *= dtype(beta)


def _exact(value) -> bool:
    """Whether ``value`` converts to a double exactly (a float, or an integer below 2^53)."""
    return isinstance(value, float) or (isinstance(value, int) and abs(value) < EXACT_INTEGERS)


def run_kernel_blocks(kernel, fill_step_sizes, stats, t: int, end: int, communicated=None,
                      numbered: bool = False) -> int:
    """Steps t .. end - 1 through ``kernel`` (an SGDSteps, or the PyTorch bridge's TorchSGDSteps) in
    calls of at most its capacity: each call's step sizes from ``fill_step_sizes``, its time less the
    seconds inside MPI (``kernel.sum_seconds``) counted as compute, then ``communicated(n, seconds)``
    (None: nothing travelled). ``numbered``: pass the block's first step index (``first``, which a
    compressed exchange seeds from). Returns the steps taken. The block loop of sync SGD and
    compressed SGD."""
    first = t
    while t < end:
        n = min(end - t, kernel.capacity)
        started = time.perf_counter()
        fill_step_sizes(t, kernel.step_sizes, n)
        if numbered:
            kernel.run(n, first=t)
        else:
            kernel.run(n)
        stats.compute_seconds += (time.perf_counter() - started) - kernel.sum_seconds
        if communicated is not None:
            communicated(n, kernel.sum_seconds)
        t += n
    return t - first


def step_size_filler(schedule: Callable[[int], float]) -> Callable[[int, np.ndarray, int], None]:
    """``fill(t, out, n)``: out[i] = schedule(t + i) for i < n, bit for bit (float64 ``out``, a
    kernel's ``step_sizes``).

    A Constant writes the whole of ``out`` when it gets an array other than the last one, and
    nothing otherwise (the callers keep one array per kernel and nothing else writes it: no slice,
    no pass per call). InverseTime (c / (a + t)) is vectorised: NumPy's correctly rounded division and
    addition of the same doubles as Python's, while a + t stays below 2^53. Any other schedule is
    called once per step.
    """
    if type(schedule) is Constant and _exact(schedule.value):
        value, last = schedule.value, None  # the array written last

        def constant(t, out, n):
            nonlocal last
            if out is not last:
                out.fill(value)
                last = out
        return constant
    if type(schedule) is InverseTime and _exact(schedule.c) and _exact(schedule.a):
        def inverse_time(t, out, n):
            if abs(schedule.a) + t + n >= EXACT_INTEGERS:
                out[:n] = [schedule(t + i) for i in range(n)]
                return
            part = out[:n]
            np.add(schedule.a, np.arange(t, t + n, dtype=np.float64), out=part)
            np.divide(schedule.c, part, out=part)
        return inverse_time

    def each_step(t, out, n):
        out[:n] = [schedule(t + i) for i in range(n)]
    return each_step
