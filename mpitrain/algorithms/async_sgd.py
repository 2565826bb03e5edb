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
``train.steps`` x K; each push takes its version first and is made only within the budget,
``ParameterStore.push(delta, limit)``, so the workers make exactly that many together, never
the few more that racing for the last ones would give) or wall time (``max_seconds``), each
worker deciding for itself from the versions it sees and the pushes refused; then ``finish`` barriers (every push is complete: ``push``
flushes), every rank pulls the same final x, the delays are gathered and the windows freed,
and rank 0 renders the delays plot (``write_outputs`` only writes it) while the others wait
in :func:`mpitrain.comm.quiet.quiet_barrier`, which sleeps: 63 ranks spinning in a blocking
wait on 2 cores made rank 0's 1.3 s plot take 33.6 s (``bench scale ranks --ranks 64``).

Evaluation: rank 0 keeps a copy of the x it pulls each time the version passes a multiple
of ``run.log_every`` (with its clock); the loop evaluates these copies on all ranks after
the run, or at a pause (see mpitrain.train), so the metrics trace F over versions and wall
time without stopping the workers. Memory on every rank: (updates / log_every) x d numbers.

Pauses, checkpoints and resuming. The workers pause together when any rank got a stop
signal (SIGTERM, SIGUSR1, SIGINT), when the version reaches the next multiple of
``run.checkpoint_every`` (0: never), or at the end of the budget:

1. Between steps each worker asks ``done()``: its own signal flag (the run's
   :class:`mpitrain.stopping.StopRequest`, set by the handler), the store's stop flag
   (read about every 50 ms: one ``Fetch_and_op``; a rank whose own signal arrives sets it,
   so a signal sent to one rank reaches all), the budget, and the pause version. A
   straggler sleeps in 50 ms slices (:func:`mpitrain.algorithms.stragglers.sleep`) and, on
   a stop (or once the budget is spent: its push would only overshoot it) drops the
   gradient it holds and rewinds its sampler, noise and slowdown streams to the start of
   that step, so the resumed run draws that batch again. A worker that is computing
   finishes its gradient and push (milliseconds). A periodic pause does not cut a
   straggler's sleep short: its gradient is legitimate work, so the others wait for it.
   No design here relies on passive-target RMA progressing while its target computes
   outside MPI: the flag lives beside the counter, served like every pull (progress
   thread, or ``store.progress()`` in the sleep slices).
2. ``settle()`` (collective): a barrier that sleeps while it waits (it sets the store's
   flag should this rank's signal come meanwhile) -- every push is then complete -- then
   every rank pulls the same x and version V, and one Allreduce agrees on the signal
   (SIGINT first) and on the training time (the longest clock).
3. If the budget is spent (V >= max_updates, or the time >= max_seconds) the run ends as
   before (``finish``). Otherwise the loop evaluates rank 0's snapshots so far (with the
   settled x of V when a snapshot is due) and writes their records (every step <= V), then
   writes a checkpoint of step V: on every rank x
   (all of it, as the lock-step methods' checkpoints), V, the training seconds so far, this
   worker's pushes, its delays (tau per push), the update rule's counts (applied,
   dropped, clipped, largest norm sent), rank 0's next snapshot version, the noise and
   slowdown streams; the loop adds the sampler and the accounting. On a signal the run then
   exits 75 (130 for SIGINT) like the lock-step methods; otherwise ``resume()`` and the
   workers push on.

``--resume`` puts x and V back into the store (each host its shards, rank 0 the counter)
and continues until the total budget: ``max_updates`` counts every update since the start
and ``max_seconds`` the training time of all attempts. The metrics file is cut at V and the
resumed run appends records of versions > V only (rank 0's next snapshot version is kept),
so there is no duplicate and no gap. The iterates are not reproducible (see
docs/guarantees.md), only the streams and the counters continue exactly.
"""
from __future__ import annotations

import time
import typing
from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI

from ..atomic import replacing
from ..comm.quiet import FIRST_SLEEP, LONGEST_SLEEP, quiet_barrier
from ..comm.store import ParameterStore
from ..fields import ConfigError, bounded, choice
from ..runtime import JobError
from ..stopping import from_priority, priority
from .async_rule import STEP_RULES, UpdateRule
from .base import Algorithm
from .delays import delay_metrics, delays_png
from .noise import SubWeibullNoise
from .stragglers import SLOWDOWNS, load_rng_state, make_straggler, rng_state, sleep

#: seconds between two reads of the store's stop flag by a worker that is stepping
STOP_POLL_SECONDS = 0.05


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


class Pause(typing.NamedTuple):
    """Where all workers stopped pushing together (the same on every rank)."""

    signum: int  # the stop signal any rank got (SIGINT first), 0 if none
    version: int  # V: the store's version, every push complete
    seconds: float  # training time so far, earlier attempts included (the longest clock)
    over: bool  # the budget is spent: the run ends


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
        self._budget_taken = False  # a push was refused: every update of the budget is someone's
        self.stop = None          # the run's StopRequest (watch): .received is this rank's signal
        self._stop_raised = False  # this rank has set the store's stop flag
        self._stop_seen = False   # the store's stop flag was read set
        self._stop_read = 0.0     # perf_counter of the last read
        self._every = 0           # versions between checkpoint pauses (0: none)
        self._pause_at = None     # the version at which the workers pause next
        self._settled = None      # the Pause of settle(), until resume() / finish()
        self._elapsed = 0.0       # training seconds before the clock last (re)started
        self._clock0 = None
        self._points = []         # rank 0: (version, seconds, copy of the x it pulled)
        self._next_point = self.log_every
        self._summary = {}
        self._taus = {}
        self._delays_png = None   # rank 0: the delays plot, rendered in finish()
        self.on_snapshot = None   # rank 0: called with (version, seconds) at each snapshot (progress)

    # -- the loop's interface ----------------------------------------------------------
    def watch(self, stop, checkpoint_every: int = 0) -> None:
        """Stop on ``stop.received`` (this rank's signal) or the store's flag; pause for a
        checkpoint each time the version reaches a multiple of ``checkpoint_every``."""
        self.stop = stop
        self._every = int(checkpoint_every or 0)
        self._pause_at = (self.version // self._every + 1) * self._every if self._every else None

    def clock(self) -> float:
        """Training seconds: earlier attempts' and pauses' excluded evaluation, plus this stretch."""
        return self._elapsed + (0.0 if self._clock0 is None else time.perf_counter() - self._clock0)

    def stop_requested(self, read: bool = False) -> bool:
        """Whether this rank or any other got a stop signal; sets the store's flag on this
        rank's own. The flag is read when ``read`` or STOP_POLL_SECONDS after the last read."""
        if self.stop is None:
            return False
        if self.stop.received:
            if not self._stop_raised:
                self._stop_raised = True
                self.store.request_stop()
            return True
        now = time.perf_counter()
        if not self._stop_seen and (read or now - self._stop_read >= STOP_POLL_SECONDS):
            self._stop_read = now
            self._stop_seen = self.store.stop_requested()
        return self._stop_seen

    def done(self, t: int) -> bool:
        if self._clock0 is None:
            self._clock0 = time.perf_counter()
        if self.version >= self.max_updates or self._budget_taken or self.stop_requested():
            return True
        if self._pause_at is not None and self.version >= self._pause_at:
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
        if v0 >= self.max_updates or (self._pause_at is not None and v0 >= self._pause_at):
            return  # the budget is spent, or a pause is due; done() ends the loop
        if w.rank == 0 and v0 >= self._next_point:
            self._points.append((v0, self.clock(), self.x.copy()))
            self._next_point = (v0 // self.log_every + 1) * self.log_every
            if self.on_snapshot is not None:
                self.on_snapshot(v0, self.clock())
        rewind = self.streams() if self.straggler is not None else None
        g = self.stochastic_gradient()
        if self.noise is not None:
            self.noise.perturb(g)
        if self.straggler is not None:
            if not self.wait(self.straggler.extra(time.perf_counter() - started)):
                self.load_streams(rewind)  # woken to stop: this gradient is never pushed, its batch comes again
                return
        tau = self.store.version() - v0 if self.rule.needs_delay else 0  # a lower bound of the final tau
        with w.stats.compute():
            keep = self.rule.delta(g, w.step_size(v0), tau, self.delta)
        if keep:
            with w.stats.communicate(nbytes=self.delta.nbytes):
                version = self.store.push(self.delta, limit=self.max_updates)  # exactly max_updates in all
            if version:
                self.version = max(self.version, version)
                self.pushes += 1
            else:  # the budget's last updates went to other workers: this gradient would overshoot it
                self._budget_taken = True

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` in slices, False if cut short (:meth:`wakes`); without a progress
        thread, keep serving RMA while asleep."""
        if seconds <= 0:
            return True
        return sleep(seconds, self.wakes, tick=None if self.threaded else self.store.progress)

    def wakes(self) -> bool:
        """Whether a sleeping straggler stops waiting: a stop request, or the budget spent
        meanwhile (its push would only overshoot it). A pause for a periodic checkpoint does
        not wake it: the others wait for its gradient."""
        if self.stop_requested(read=True):
            return True
        self.version = max(self.version, self.store.version())
        return self.version >= self.max_updates or (self.max_seconds is not None and self.clock() >= self.max_seconds)

    def streams(self) -> dict:
        """The states of this worker's random streams: sampler, noise, slowdown."""
        return {"sampler": self.worker.sampler.state(),
                "noise": self.noise.state() if self.noise is not None else None,
                "straggler": rng_state(self.straggler)}

    def load_streams(self, state: dict) -> None:
        self.worker.sampler.load(state["sampler"])
        if self.noise is not None:
            self.noise.load(state["noise"])
        load_rng_state(self.straggler, state["straggler"])

    def settle(self) -> Pause:
        """Collective, once every worker has left the loop (``done``): wait for all (every push
        is then complete), pull the same x on every rank, agree on the signal and the time."""
        comm = self.worker.comm
        request = comm.Ibarrier()
        pause = FIRST_SLEEP
        while not request.Test():  # sleeps: see mpitrain.comm.quiet
            self.stop_requested()  # a signal that comes now still wakes a sleeping straggler
            time.sleep(pause)
            pause = min(2 * pause, LONGEST_SLEEP)
        version = self.store.pull(self.x)
        self.version = version
        own = priority(self.stop.received) if self.stop is not None else 0
        agreed = np.array([own, self.clock()])
        comm.Allreduce(MPI.IN_PLACE, agreed, op=MPI.MAX)
        seconds = float(agreed[1])
        over = version >= self.max_updates or (self.max_seconds is not None and seconds >= self.max_seconds)
        self._settled = Pause(from_priority(int(agreed[0])), version, seconds, over)
        if self._settled.signum or over:
            self.close()  # no push follows: nothing (windows, progress thread) is left at MPI_Finalize
        return self._settled

    def close(self) -> None:
        """Collective: free the store (idempotent); x, the version and the delays stay."""
        self.store.free()

    def resume(self) -> None:
        """Push on after a pause that was not the end (a periodic checkpoint)."""
        pause, self._settled = self._settled, None
        self._elapsed, self._clock0 = pause.seconds, time.perf_counter()
        if self._every:
            self._pause_at = (pause.version // self._every + 1) * self._every

    def take_points(self) -> list:
        """Collective at a pause (after ``settle``): rank 0's snapshots so far on every rank
        (trajectory dicts), forgotten here (the loop writes their records now). A snapshot due
        at V is the settled x itself, so every record of a version <= V precedes the checkpoint."""
        if self.worker.rank == 0 and self.version >= self._next_point:
            self._points.append((self.version, self._settled.seconds, self.x.copy()))
            self._next_point = (self.version // self.log_every + 1) * self.log_every
        points = self._share_points()
        self._points = []
        return points

    def state_dict(self) -> dict:
        """This worker at a pause (after ``settle``; else as it stands): see the module doc."""
        pause = self._settled
        version, seconds = (pause.version, pause.seconds) if pause is not None else (self.version, self.clock())
        return {"x": self.x, "version": version, "seconds": seconds, "pushes": self.pushes,
                "next_point": self._next_point, "rule": self.rule.state_dict(),
                "delays": np.asarray(self.store.delays, dtype=np.int64),
                "noise": self.noise.state() if self.noise is not None else None,
                "straggler": rng_state(self.straggler)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint into this rank and its part of the store (the caller's
        collective that follows completes it before any pull)."""
        self.x[...] = state["x"]
        self.version = int(state["version"])
        self.pushes = int(state["pushes"])
        self._next_point = int(state["next_point"])
        self._elapsed = float(state["seconds"])
        self.rule.load_state_dict(state["rule"])
        self.store.delays = [int(tau) for tau in state["delays"]]
        if self.noise is not None:
            self.noise.load(state["noise"])
        load_rng_state(self.straggler, state["straggler"])
        self.store.restore(self.x, self.version)

    def finish(self) -> None:
        comm = self.worker.comm
        pause = self._settled if self._settled is not None else self.settle()  # the same x on every rank
        final, seconds = pause.version, pause.seconds
        self.store.free()
        taus = comm.gather(np.asarray(self.store.delays, dtype=np.int64), root=0)
        counts = comm.allgather({**self.rule.counts(), "pushes": self.pushes})
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
        self._points = self._share_points()
        self._points.append({"step": final, "time": seconds, "x": self.x})
        if comm.Get_rank() == 0:
            self._delays_png = delays_png(self._taus)
        quiet_barrier(comm)  # the others sleep while rank 0 renders (see mpitrain.comm.quiet)

    def _share_points(self):
        """Rank 0's snapshots on every rank, as trajectory dicts."""
        comm = self.worker.comm
        header = comm.bcast([(v, s) for v, s, _ in self._points] if comm.Get_rank() == 0 else None, root=0)
        points = []
        for i, (version, seconds) in enumerate(header):
            x = self._points[i][2] if comm.Get_rank() == 0 else np.empty_like(self.x)
            comm.Bcast(x, root=0)
            points.append({"step": version, "time": seconds, "x": x})
        return points

    def trajectory(self) -> list:
        return self._points

    def metrics(self) -> dict:
        return dict(self._summary)

    def write_outputs(self, out_dir) -> None:
        with replacing(f"{out_dir}/delays.npz", "wb") as handle:
            np.savez(handle, **{f"worker{r}": t for r, t in self._taus.items()})
        with replacing(f"{out_dir}/delays.png", "wb") as handle:
            handle.write(self._delays_png)

