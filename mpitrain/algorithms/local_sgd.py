"""Local SGD (Stich, "Local SGD Converges Fast and Communicates Little", ICLR 2019, arXiv 1805.09767).

Each of the K workers keeps its own model x^k (all start at x_0) and, for t = 0 .. T-1,

    y^k = x^k - eta_t g^k,   g^k = (1/b) sum_{i in batch} grad f_i(x^k)      (local step)
    x^k = sum_j w_j y^j  if t + 1 is a synchronisation step, else y^k       (Algorithm 1)

with w_j = n_j / N (1/K for balanced shards). The average is one in-place Allreduce of the
flattened parameters, done only at synchronisation steps (``periods``): T/H rounds instead
of T, and only those are counted in the CommStats. H = 1 is synchronous mini-batch SGD.

Output (``local_sgd.output``): ``"average"`` evaluates sum_k w_k x^k, the average of the
current models; ``"weighted"`` evaluates Stich's x_hat_T with w_t = (a + t)^2 (Theorem 2.2),
kept as a running sum. Either way the evaluation point is collective (one Allreduce); that
traffic is evaluation, not training: it is counted apart, as ``eval_comm_rounds``.

Step size: any ``[step_size]`` schedule; Stich's eta_t = 4 / (mu (a + t)) is
``schedule = "stich"``.

Steps in blocks: ``run_steps`` takes the local steps up to the next average (and the step the
average follows, scaled by the rank's weight) in one C call without the GIL
(``Objective.sgd_steps``: draw, gradient, update, and Stich's weighted sum when that is the
output), then averages; the iterates, the row stream and the metrics are those of ``step``
called for each step, bit for bit. Parameters on a GPU have no such kernel: ``run_steps`` then
calls ``step``.
"""
from __future__ import annotations

import time
import typing
from dataclasses import dataclass

import numpy as np

from .. import backend
from ..comm.accounting import CommStats
from ..comm.averaging import Averager
from ..fields import ConfigError, bounded, choice
from .base import Algorithm, step_size_filler, update
from .iterate_average import WeightedIterateAverage
from .periods import PERIOD_SCHEDULES, AndLast, ConstantPeriod, PostLocalPeriod, make_period

OUTPUTS = ("average", "weighted")


def check_weight_shift(value):
    if value is not None and not value > 0:
        raise ConfigError("weight_shift", f"must be > 0, got {value!r}")


@dataclass(frozen=True)
class LocalSGDOptions:
    period: int = bounded(8, min=1)  # H: local steps between averages (first period for "growing")
    schedule: str = choice("constant", PERIOD_SCHEDULES)  # constant | post_local | auto | growing
    warmup_steps: int = bounded(0, min=0)  # post_local: synchronous steps before the local ones
    growth: float = bounded(2.0, min=1.0)  # growing: each period is this times the previous one
    max_period: int = bounded(0, min=0)  # growing: cap on H; 0 for none
    output: str = choice("average", OUTPUTS)  # evaluated model: average of x^k, or Stich's x_hat
    weight_shift: typing.Optional[float] = None  # a in w_t = (a + t)^2; default step_size.a

    def __post_init__(self):
        check_weight_shift(self.weight_shift)


def check_period_options(opts, steps: int, section: str) -> None:
    """The period schedule's fields against the run: a post-local warm-up shorter than it."""
    if opts.schedule == "post_local" and opts.warmup_steps >= steps:
        raise ConfigError(f"{section}.warmup_steps", f"the warm-up ({opts.warmup_steps} steps) must be shorter "
                          f"than the run (train.steps = {steps})")
    if opts.schedule != "post_local" and opts.warmup_steps != 0:
        raise ConfigError(f"{section}.warmup_steps", f"is used only with {section}.schedule = 'post_local'")


class LocalModelAlgorithm(Algorithm):
    """What every Local SGD variant shares: local steps, the output, evaluation, metrics, and
    the steps in blocks.

    Subclasses implement ``synchronise(t)`` (called after the local step of step t when the
    variant averages) and either set ``period`` (when to average: ``step`` and ``run_steps``
    here use it, and ``use_step_blocks`` puts the local steps in C blocks) or override ``step``.
    ``step_size_shift``: the ``a`` of the step-size schedule, the default shift of Stich's
    weights w_t = (a + t)^2.
    """

    def __init__(self, worker, options=None, step_size_shift: float = 1.0):
        super().__init__(worker, options)
        self.eval_stats = CommStats()
        self.eval_averager = Averager(worker.comm, worker.weight, self.eval_stats)
        self.syncs = 0
        self.output = None
        if self.opts.output == "weighted":
            shift = self.opts.weight_shift if self.opts.weight_shift is not None else step_size_shift
            self.output = WeightedIterateAverage(self.x.size, shift, xp=self.xp)

    def local_step(self, t: int, weight: float = 1.0) -> None:
        """x <- weight (x - eta_t g) on a fresh local mini-batch (and record x_t in the output).

        ``weight`` is 1, or the rank's averaging weight when an average follows (one pass,
        bit-identical to stepping and then scaling; the Allreduce then has nothing to add).
        """
        stats = self.worker.stats
        if self.output is not None:
            started = time.perf_counter()
            self.output.add(t, self.x)
            stats.compute_seconds += time.perf_counter() - started
        g = self.stochastic_gradient()
        started = time.perf_counter()
        update(self.x, g, -self.worker.step_size(t), weight)
        stats.compute_seconds += time.perf_counter() - started

    # -- steps in blocks ----------------------------------------------------------------------
    #: the C kernel of this variant's local steps (``use_step_blocks``), or None: one step per call
    sgd_steps = None

    def use_step_blocks(self, clip: float = 0.0) -> None:
        """Take the local steps up to each average in one C call from now on (``run_steps``),
        where the objective has the kernel (``Objective.sgd_steps``; not for parameters on a GPU).
        For variants whose local step is ``local_step``'s, its gradient clipped to ``clip`` when
        > 0 (``clip_by_norm``'s bits, ``SGDSteps.clip_gradients``), and whose ``period`` says when
        they average."""
        if backend.is_device_array(self.x):
            return
        total = self.output.total if self.output is not None else None
        make = getattr(self.worker.objective, "sgd_steps", None)
        self.sgd_steps = make(self.x, self.grad, self.worker.sampler, output_total=total) if make else None
        if self.sgd_steps is not None and clip > 0:
            self.sgd_steps.clip_gradients(clip)
        self.fill_step_sizes = step_size_filler(self.worker.step_size)

    def sync_weight(self) -> float:
        """The factor of the local step an average follows (``local_step``'s ``weight``): 1 here."""
        return 1.0

    def step(self, t: int) -> None:
        """The local step of step t, then the average when ``period`` says so."""
        syncs = self.period.syncs_after(t)
        self.local_step(t, self.sync_weight() if syncs else 1.0)
        self.steps_done = t + 1
        if syncs:
            self.synchronise(t)

    def run_steps(self, t: int, count: int) -> int:
        """Steps t .. t + count - 1 (within the step budget): each stretch of local steps up to an
        average, and the step before the average, in one C call; then the average."""
        kernel = self.sgd_steps
        if kernel is None:
            return super().run_steps(t, count)
        end = min(t + count, max(t, self.worker.steps))
        first, capacity = t, kernel.capacity
        while t < end:
            period = self.period
            stop = next_average(period, t, min(end, t + capacity))
            syncs = period.syncs_after(stop - 1)
            self.local_steps(t, stop - t, self.sync_weight() if syncs else 1.0)
            self.steps_done = stop
            if syncs:
                self.synchronise(stop - 1)
            t = stop
        return t - first

    def local_steps(self, t: int, count: int, weight: float) -> None:
        """``local_step`` for steps t .. t + count - 1 in one kernel call (the last one scaled by
        ``weight``), timed as compute once."""
        kernel = self.sgd_steps
        started = time.perf_counter()
        self.fill_step_sizes(t, kernel.step_sizes, count)
        if self.output is None:
            kernel.run(count, weight)
        else:
            kernel.output_weights[:count] = [self.output.weight(t + i) for i in range(count)]
            self.output.weight_sum = kernel.run(count, weight, self.output.weight_sum)
        self.worker.stats.compute_seconds += time.perf_counter() - started

    def evaluation_point(self) -> np.ndarray:
        """sum_k w_k x^k, or Stich's x_hat (collective; counted as evaluation traffic)."""
        local = self.output.value() if self.output is not None else None
        point = self.x.copy() if local is None else local
        self.eval_averager.average(point)
        return point.astype(self.x.dtype, copy=False)

    def metrics(self) -> dict:
        return {"syncs": self.syncs, "eval_comm_rounds": self.eval_stats.rounds}

    def state_dict(self) -> dict:
        state = {"x": self.x, "syncs": self.syncs}
        if self.output is not None:
            state["output"] = self.output.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        backend.assign(self.x, state["x"])
        self.syncs = int(state["syncs"])
        if self.output is not None:
            self.output.load_state_dict(state["output"])


class LocalSGD(LocalModelAlgorithm):
    """H local steps, then one weighted in-place Allreduce of the parameters."""

    name = "local_sgd"
    options = LocalSGDOptions

    def __init__(self, worker, options=None, step_size_shift: float = 1.0):
        super().__init__(worker, options, step_size_shift)
        self.period = make_period(self.opts, worker.steps, worker.size, worker.batch_size)
        self.averager = worker.averager()
        self.steps_done = 0
        self.use_step_blocks()

    @classmethod
    def validate(cls, config):
        check_period_options(config.section(cls.name), config.train.steps, cls.name)

    def sync_weight(self) -> float:
        """The rank's weight n_k / N: the step an average follows is prescaled by it, so the
        Allreduce (``prescaled=True``) only sums."""
        return self.worker.weight

    def synchronise(self, t: int) -> None:
        self.averager.average(self.x, prescaled=True)
        self.syncs += 1

    def metrics(self) -> dict:
        return {**super().metrics(), "period": self.period.current(self.steps_done)}


def _constant_next(period: ConstantPeriod, t: int) -> int:
    return (t // period.period + 1) * period.period


def _post_local_next(period: PostLocalPeriod, t: int) -> int:
    if t < period.warmup_steps:
        return t + 1
    return period.warmup_steps + ((t - period.warmup_steps) // period.period + 1) * period.period


#: first boundary s > t with syncs_after(s - 1), in closed form, for the period kinds that have one
NEXT_AVERAGE = {ConstantPeriod: _constant_next, PostLocalPeriod: _post_local_next}


def next_average(period, t: int, limit: int) -> int:
    """The first step boundary s in (t, limit] after which ``period`` averages (its
    ``syncs_after(s - 1)``), or ``limit`` when there is none before it."""
    if type(period) is AndLast:  # the inner schedule's boundary, or the run's end
        inner = next_average(period.inner, t, limit)
        return min(inner, period.steps) if t < period.steps else inner
    closed_form = NEXT_AVERAGE.get(type(period))
    if closed_form is not None:
        return min(closed_form(period, t), limit)
    for s in range(t + 1, limit):
        if period.syncs_after(s - 1):
            return s
    return limit
