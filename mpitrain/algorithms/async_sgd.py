"""Asynchronous SGD on the RMA parameter store, with optional clipping.

Erickson and Johansson 2026 (docs/papers.md s.3). Every rank is a worker; x and the
version counter live in the :class:`mpitrain.comm.store.ParameterStore` (``"sharded"``
layout: x split over all ranks' windows). Each worker, independently of the others::

    v0 = pull(x)                        # the version read; x may hold in-flight pushes too
    g  = grad f_k(x; batch) [+ noise]   # on this rank's shard (heterogeneous data allowed)
    push(-gamma_k * clip_lambda(g))     # applied on arrival; tau = v - 1 - v0 is recorded

with gamma_k, clipping and dropping from :class:`mpitrain.algorithms.async_rule.UpdateRule`
(eta from the [step_size] schedule at the version read). No collective runs while workers
push: the run ends on a budget of total updates (``max_updates``, default
``train.steps`` x K) or wall time (``max_seconds``), each worker deciding for itself from
the versions it sees; then ``finish`` barriers (every push is complete: ``push``
flushes), every rank pulls the same final x, the delays are gathered and the windows freed,
and rank 0 renders the delays plot (``write_outputs`` only writes it) while the others wait
in :func:`mpitrain.comm.quiet.quiet_barrier`, which sleeps: 63 ranks spinning in a blocking
wait on 2 cores made rank 0's 1.3 s plot take 33.6 s (``bench scale ranks --ranks 64``).

Evaluation: rank 0 keeps a copy of the x it pulls each time the version passes a multiple
of ``run.log_every`` (with its clock); the loop evaluates these copies on all ranks after
the run (see mpitrain.train), so the metrics trace F over versions and wall time without
stopping the workers. Memory on every rank: (updates / log_every) x d numbers.
"""
from __future__ import annotations

import time
import typing
from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI

from ..comm.quiet import quiet_barrier
from ..comm.store import ParameterStore
from ..fields import ConfigError, bounded, choice
from ..runtime import JobError
from .async_rule import STEP_RULES, UpdateRule
from .base import Algorithm
from .delays import delay_metrics, delays_png
from .noise import SubWeibullNoise
from .stragglers import SLOWDOWNS, make_straggler


@dataclass(frozen=True)
class AsyncSGDOptions:
    """The [async_sgd] section."""

    clip: typing.Optional[typing.Union[float, str]] = bounded(None, exclusive_min=0.0)  # lambda > 0, or "none"
    max_updates: typing.Optional[int] = bounded(None, min=1)  # total pushes over all workers; default steps x K
    max_seconds: typing.Optional[float] = bounded(None, exclusive_min=0.0)  # wall-time budget (whichever first)
    step_rule: str = choice("constant", STEP_RULES)  # "delay_adaptive": gamma * min(1, K / tau)
    max_delay: typing.Optional[int] = bounded(None, min=0)  # drop gradients whose delay exceeds it
    progress: str = choice("auto", ("auto", "thread", "none"))  # store progress; auto: thread if THREAD_MULTIPLE
    straggler_ranks: list = field(default_factory=list)  # ranks that are slowed down
    slowdown: str = choice("factor", SLOWDOWNS)  # how stragglers wait (mpitrain.algorithms.stragglers)
    slowdown_factor: float = bounded(1.0, min=1.0)  # "factor": each step takes this many times as long
    slowdown_seconds: float = bounded(0.0, min=0.0)  # "fixed" / mean of "exponential" and "pareto"
    slowdown_shape: float = bounded(1.5, exclusive_min=1.0)  # "pareto": tail index
    noise_sigma: float = bounded(0.0, min=0.0)  # sub-Weibull gradient noise scale (0: none)
    noise_theta: float = bounded(0.5, exclusive_min=0.0)  # its tail parameter

    def __post_init__(self):
        if isinstance(self.clip, str):
            if self.clip.strip().lower() != "none":
                raise ConfigError("async_sgd.clip", f"expected a number > 0 or \"none\", got {self.clip!r}")
            object.__setattr__(self, "clip", None)
        for rank in self.straggler_ranks:
            if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
                raise ConfigError("async_sgd.straggler_ranks", f"expected a list of ranks (integers >= 0), got {self.straggler_ranks!r}")


class AsyncSGD(Algorithm):
    name = "async_sgd"
    options = AsyncSGDOptions
    evaluates_in_loop = False

    def __init__(self, worker, options=None):
        super().__init__(worker, options)
        size, rank, opts = worker.size, worker.rank, self.opts
        missing = sorted(r for r in set(opts.straggler_ranks) if r >= size)
        if missing:
            raise JobError(f"config field 'async_sgd.straggler_ranks': rank(s) {missing} do not exist "
                           f"in a job of {size} ranks (0..{size - 1})")
        progress = None if opts.progress == "auto" else opts.progress
        if progress == "thread":
            if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
                raise JobError("config field 'async_sgd.progress': \"thread\" needs MPI.THREAD_MULTIPLE, "
                               f"this MPI gives level {MPI.Query_thread()}")
        self.max_updates = opts.max_updates or worker.steps * size
        self.max_seconds = opts.max_seconds
        self.log_every = worker.eval_every
        self.rule = UpdateRule(opts.clip, opts.step_rule, opts.max_delay, size)
        self.straggler = make_straggler(opts, worker.seed, rank)
        self.noise = SubWeibullNoise(opts.noise_sigma, opts.noise_theta, worker.seed, rank) if opts.noise_sigma > 0 else None
        self.store = ParameterStore(worker.comm, self.x.shape[0], self.x.dtype, layout="sharded",
                                    x0=worker.x0, progress=progress)
        self.threaded = self.store._thread is not None
        self.delta = np.empty_like(self.x)
        self.version = 0          # the latest version this rank has seen
        self.pushes = 0
        self._clock0 = None
        self._points = []         # rank 0: (version, seconds, copy of the x it pulled)
        self._next_point = self.log_every
        self._summary = {}
        self._taus = {}
        self._delays_png = None   # rank 0: the delays plot, rendered in finish()
        self.on_snapshot = None   # rank 0: called with (version, seconds) at each snapshot (progress)

    # -- the loop's interface ----------------------------------------------------------
    def clock(self) -> float:
        return 0.0 if self._clock0 is None else time.perf_counter() - self._clock0

    def done(self, t: int) -> bool:
        if self._clock0 is None:
            self._clock0 = time.perf_counter()
        if self.version >= self.max_updates:
            return True
        return self.max_seconds is not None and self.clock() >= self.max_seconds

    def planned_steps(self) -> int:
        return self.max_updates

    def step(self, t: int) -> None:
        w = self.worker
        started = time.perf_counter()
        with w.stats.communicate(rounds=0):
            v0 = self.store.pull(self.x)
        self.version = max(self.version, v0)
        if v0 >= self.max_updates:
            return  # the budget is spent; done() ends the loop
        if w.rank == 0 and v0 >= self._next_point:
            self._points.append((v0, self.clock(), self.x.copy()))
            self._next_point = (v0 // self.log_every + 1) * self.log_every
            if self.on_snapshot is not None:
                self.on_snapshot(v0, self.clock())
        g = self.stochastic_gradient()
        if self.noise is not None:
            self.noise.perturb(g)
        if self.straggler is not None:
            self.wait(self.straggler.extra(time.perf_counter() - started))
        tau = self.store.version() - v0 if self.rule.needs_delay else 0  # a lower bound of the final tau
        with w.stats.compute():
            keep = self.rule.delta(g, w.step_size(v0), tau, self.delta)
        if keep:
            with w.stats.communicate(nbytes=self.delta.nbytes):
                self.version = max(self.version, self.store.push(self.delta))
            self.pushes += 1

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``; without a progress thread, keep serving RMA while asleep."""
        if self.threaded or seconds <= 0:
            time.sleep(max(seconds, 0.0))
            return
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            self.store.progress()
            time.sleep(min(left, 1e-3))

    def finish(self) -> None:
        comm = self.worker.comm
        quiet_barrier(comm)                   # nobody pushes any more; every push is complete
        final = self.store.pull(self.x)       # the same x on every rank
        self.store.free()
        taus = comm.gather(np.asarray(self.store.delays, dtype=np.int64), root=0)
        counts = comm.allgather({**self.rule.counts(), "pushes": self.pushes})
        seconds = comm.allreduce(self.clock(), op=MPI.MAX)
        summary = {"updates": final, "wall_seconds": seconds,
                   "updates_per_second": final / seconds if seconds > 0 else 0.0,
                   "updates_per_worker": [c["pushes"] for c in counts],
                   "dropped": sum(c["dropped"] for c in counts),
                   "clipped_fraction": sum(c["clipped"] for c in counts) / max(1, sum(c["applied"] for c in counts)),
                   "max_norm_sent": max(c["max_norm_sent"] for c in counts)}
        if self.rule.clip is not None:
            summary["max_clipped_norm"] = summary["max_norm_sent"]
        if comm.Get_rank() == 0:
            self._taus = {rank: t for rank, t in enumerate(taus)}
            summary.update(delay_metrics(np.concatenate(taus)))
        self._summary = comm.bcast(summary if comm.Get_rank() == 0 else None, root=0)
        self._points = self._share_points(final)
        if comm.Get_rank() == 0:
            self._delays_png = delays_png(self._taus)
        quiet_barrier(comm)  # the others sleep while rank 0 renders (see mpitrain.comm.quiet)

    def _share_points(self, final):
        """Rank 0's snapshots (and the final x) on every rank, as trajectory dicts."""
        comm = self.worker.comm
        header = comm.bcast([(v, s) for v, s, _ in self._points] if comm.Get_rank() == 0 else None, root=0)
        points = []
        for i, (version, seconds) in enumerate(header):
            x = self._points[i][2] if comm.Get_rank() == 0 else np.empty_like(self.x)
            comm.Bcast(x, root=0)
            points.append({"step": version, "time": seconds, "x": x})
        points.append({"step": final, "time": self._summary["wall_seconds"], "x": self.x})
        return points

    def trajectory(self) -> list:
        return self._points

    def metrics(self) -> dict:
        return dict(self._summary)

    def write_outputs(self, out_dir) -> None:
        np.savez(f"{out_dir}/delays.npz", **{f"worker{r}": t for r, t in self._taus.items()})
        with open(f"{out_dir}/delays.png", "wb") as f:
            f.write(self._delays_png)

