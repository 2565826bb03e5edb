"""Stopping a run on a signal: every rank stops after the same step, a checkpoint is written,
and the run exits with a code that says why.

- SIGTERM / SIGUSR1 (Slurm's warning before the time limit, ``scancel``): checkpoint, exit
  :data:`EXIT_CHECKPOINTED` (75, sysexits' EX_TEMPFAIL: "try again", what a requeue wants).
- Asynchronous SGD has no common step: its workers see any rank's signal between steps (a
  flag in its parameter store, mpitrain.algorithms.async_sgd), pause together, write the
  records so far and a checkpoint of one store version, and exit with the same codes.
- SIGINT (Ctrl-C; ``mpiexec`` and ``srun`` pass it to every rank): the same, but exit
  :data:`EXIT_INTERRUPTED` (130 = 128 + SIGINT, what a shell reports for Ctrl-C). A second
  SIGINT kills the process at once (the first one puts the default action back), even while
  the rank waits inside an MPI call where no Python code runs; ``mpiexec`` then ends the job.
  A SIGINT before training starts (data loading, the f* solve) ends the run with one line and
  exit 130; nothing is written but the folder's lock is released. During that set-up only rank 0
  acts on Ctrl-C (:meth:`StopRequest.install_for_set_up`): a rank that left early would leave
  rank 0 blocked in a collective, where it never sees its own KeyboardInterrupt.

The handler only sets a flag (it may run between any two bytecodes). :meth:`StopRequest.agreed`
compares flags with one small Allreduce, not at every step (with d = 300 a step of sync SGD is
itself one latency-bound Allreduce, so a second one per step would add about as much latency
again) but about every ``period`` seconds: each check also agrees on the longest time any rank
took since the last one, and every rank derives the same next check step from it.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
from mpi4py import MPI

from . import early
from .runtime import JobError

#: exit code of a run that wrote a checkpoint and stopped on SIGTERM / SIGUSR1
EXIT_CHECKPOINTED = 75
#: exit code of a run stopped by Ctrl-C (SIGINT)
EXIT_INTERRUPTED = 130
#: signals that ask a run to checkpoint and stop
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
#: those caught from the moment ``train`` starts, before any set-up
EARLY_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def exit_code(signum: int, checkpointed: bool = True) -> int:
    """130 for Ctrl-C; 75 for SIGTERM / SIGUSR1 with a checkpoint written (a requeued job
    continues); 128 + the signal's number without one (no algorithm stops so today; a requeue
    would start over, so the templates do not requeue it)."""
    if signum == signal.SIGINT:
        return EXIT_INTERRUPTED
    return EXIT_CHECKPOINTED if checkpointed else 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Stopped(JobError):
    """The run stopped on a signal (after writing a checkpoint where the algorithm has them)."""

    def __init__(self, message: str, signum: int = signal.SIGTERM, checkpointed: bool = True):
        super().__init__(message, code=exit_code(signum, checkpointed))


class StopRequest:
    """Remembers a stop signal; :meth:`agreed` tells every rank whether any rank got one.

    ``install()`` before the training loop, ``restore()`` after it puts the previous handlers back.
    The command line installs SIGTERM and SIGUSR1 first thing (:data:`EARLY_SIGNALS`: Slurm
    may send its warning while the data load), so a signal during set-up stops the run at its
    first step boundary with a checkpoint; SIGINT is caught from the training loop on (during
    set-up Ctrl-C ends the run at once, see mpitrain.cli).
    """

    def __init__(self, comm, period: float = 0.5, max_interval: int = 10000):
        self.comm = comm
        self.period = period  # seconds between checks, roughly
        self.max_interval = max_interval  # never more steps than this between checks
        self.received = 0  # the signal number, 0 while none arrived
        self.interval = 1  # steps between checks (the same on every rank)
        self.next_check = 0  # the step boundary of the next check
        self._last = time.monotonic()
        self._buffer = np.zeros(2)
        self._previous = {}
        self._set_up_grace = None  # seconds a rank other than 0 waits for rank 0 after a set-up Ctrl-C
        self._set_up_timer = None

    def _handle(self, signum, frame):
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends the process at once
            self.received = signum
            if self._set_up_grace is not None and self._set_up_timer is None:
                self._set_up_timer = threading.Timer(self._set_up_grace, self._rank_0_did_not_end_the_job)
                self._set_up_timer.daemon = True
                self._set_up_timer.start()
        elif self.received != signal.SIGINT:
            self.received = signum

    def install_for_set_up(self, grace: float) -> "StopRequest":
        """Catch what may arrive before the training loop: SIGTERM and SIGUSR1 on every rank
        (:data:`EARLY_SIGNALS`); Ctrl-C on the ranks other than 0 only.

        Rank 0 keeps Python's KeyboardInterrupt: mpitrain.cli prints one line and exits 130,
        and its exit makes ``mpiexec`` end the job. The other ranks only remember the SIGINT and
        go on, so none of them leaves a collective rank 0 is blocked in (rank 0 would never see
        its own KeyboardInterrupt: it was seen to hang in the f* solve's Reduce after rank 1 had
        left). Should the job still run ``grace`` seconds later (rank 0 stuck, or ``srun``
        without ``--kill-on-bad-exit``), such a rank prints the line itself and exits 130. If
        the training loop starts first (the SIGINT reached only some ranks), :meth:`install`
        calls the wait off and the run stops at its first step boundary with a checkpoint.
        """
        signals = EARLY_SIGNALS if self.comm.Get_rank() == 0 else (*EARLY_SIGNALS, signal.SIGINT)
        self._set_up_grace = grace
        return self.install(signals, set_up=True)

    def _rank_0_did_not_end_the_job(self):
        print(f"mpitrain: interrupted (SIGINT) before training started; nothing new was written "
              f"(rank {self.comm.Get_rank()}; rank 0 did not end the job)", file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)

    def install(self, signals=STOP_SIGNALS, *, set_up: bool = False) -> "StopRequest":
        """Catch ``signals`` from now on (again: a no-op for those already caught); unless
        ``set_up``, the training loop starts (see :meth:`install_for_set_up`)."""
        if not set_up:
            self._set_up_grace = None
            if self._set_up_timer is not None:
                self._set_up_timer.cancel()
        for sig in signals:
            if sig not in self._previous:
                self._previous[sig] = signal.signal(sig, self._handle)
        if early.received and not self.received:  # a signal from before MPI started
            self.received = early.received
        self._last = time.monotonic()
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            if sig != signal.SIGINT or signal.getsignal(sig) == self._handle:
                signal.signal(sig, handler)
        self._previous.clear()

    def agreed(self, step: int) -> int:
        """At step boundary ``step``: the signal any rank received (SIGINT first), 0 if none or
        if this is not a check step (collective on check steps)."""
        if self.comm.Get_size() == 1:
            return self.received
        if step < self.next_check:
            return 0
        now = time.monotonic()
        # SIGINT (2) outranks SIGTERM (15) and SIGUSR1 (10): a Ctrl-C anywhere means "interrupted"
        self._buffer[:] = (priority(self.received), now - self._last)
        self.comm.Allreduce(MPI.IN_PLACE, self._buffer, op=MPI.MAX)
        self._last = now
        received, elapsed = from_priority(int(self._buffer[0])), float(self._buffer[1])
        scaled = int(self.interval * self.period / max(elapsed, 1e-9))
        self.interval = max(1, min(scaled, 2 * self.interval, self.max_interval))
        self.next_check = step + self.interval
        return received


def priority(signum: int) -> int:
    """A number that orders signals by what they mean: none < SIGTERM/SIGUSR1 < SIGINT."""
    if signum == 0:
        return 0
    return 1000 if signum == signal.SIGINT else signum


def from_priority(value: int) -> int:
    return int(signal.SIGINT) if value == 1000 else value
