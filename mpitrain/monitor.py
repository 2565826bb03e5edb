"""Names the straggler of a synchronous run: a rank whose own work is many times the others'.

In a lock-step method (sync SGD, Local SGD, compressed SGD) every round waits for the slowest
rank, so one slow rank slows the whole job while its peers look busy too (they wait inside the
collective). What tells them apart is each rank's *busy* time: the training time of its steps
less the time it spent inside communication (waiting included), i.e. ``train_seconds -
comm_seconds`` accumulated over an interval. A rank waiting for a straggler has little busy
time; the straggler has a lot.

At each check (the loop calls :meth:`StragglerMonitor.check` at its evaluation points, every
``run.log_every`` steps, when all ranks are at the same step), one ``allgather`` of one float
per rank gives rank 0 everyone's busy seconds over the interval. Rank r is flagged when

    busy_r >= ratio * median(busy of the other ranks)     (default ratio 10)
    busy_r >= share * interval wall time                  (default share 0.5: it really was busy)
    busy_r >= min_seconds                                  (default 0.1 s: not scheduler noise)

and rank 0 prints, once when a rank becomes slow (not again while it stays slow)::

    mpitrain: warning: rank 3 is 12.4x slower than the median of the other ranks
    (compute 1.23 s vs 0.0995 s over steps 100-200)

on one line. The check costs one small collective per evaluation, next to the evaluation's own
full pass over the data and its Allreduce of d + 1 numbers.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Straggler:
    rank: int  # the slow rank
    ratio: float  # its busy seconds over the median of the other ranks'
    busy: float  # its busy seconds in the interval
    median: float  # the median busy seconds of the other ranks
    first_step: int  # the interval: from the step count first_step to last_step (as in metrics.jsonl)
    last_step: int

    def warning(self) -> str:
        return (f"mpitrain: warning: rank {self.rank} is {self.ratio:.1f}x slower than the median of the other "
                f"ranks (compute {self.busy:.3g} s vs {self.median:.3g} s over steps "
                f"{self.first_step}-{self.last_step})")


def find_stragglers(busy, interval: float, first_step: int, last_step: int, *, ratio: float = 10.0,
                    share: float = 0.5, min_seconds: float = 0.1) -> list:
    """The ranks of ``busy`` (busy seconds per rank over one interval of ``interval`` wall
    seconds) that are ``ratio`` times the median of the others and significant (see the module doc)."""
    busy = np.asarray(busy, dtype=np.float64)
    found = []
    if busy.size < 2:
        return found
    for rank, mine in enumerate(busy):
        others = float(np.median(np.delete(busy, rank)))
        if mine < min_seconds or mine < share * interval:
            continue
        if mine >= ratio * others:
            times = mine / others if others > 0 else float("inf")
            found.append(Straggler(rank, times, float(mine), others, first_step, last_step))
    return found


@dataclass
class StragglerMonitor:
    """Per-interval busy time of every rank; rank 0 warns about stragglers (collective ``check``)."""

    comm: object  # the communicator of the lock-step workers
    ratio: float = 10.0  # flag a rank this many times the median of the others
    share: float = 0.5  # ... whose busy time is at least this share of the interval
    min_seconds: float = 0.1  # ... and at least this many seconds
    stream: object = None  # where rank 0 writes warnings (default stderr)
    flagged: set = field(default_factory=set)  # ranks slow at the last check
    _step: int = 0  # the step of the last check
    _train: float = 0.0  # train seconds at the last check
    _comm: float = 0.0  # comm seconds at the last check

    def start(self, step: int, train_seconds: float, comm_seconds: float) -> None:
        """Begin the first interval at ``step`` (after a resume: its step and counters)."""
        self._step, self._train, self._comm = step, train_seconds, comm_seconds

    def check(self, step: int, train_seconds: float, comm_seconds: float) -> list:
        """At step boundary ``step`` on every rank: gather busy seconds since the last check;
        on rank 0 warn about ranks that became slow. Returns the stragglers (all ranks)."""
        busy = (train_seconds - self._train) - (comm_seconds - self._comm)
        interval = train_seconds - self._train
        gathered = self.comm.allgather((busy, interval))
        first = self._step
        self.start(step, train_seconds, comm_seconds)
        if step <= first:
            return []
        wall = max(seconds for _, seconds in gathered)
        slow = find_stragglers([b for b, _ in gathered], wall, first, step, ratio=self.ratio,
                               share=self.share, min_seconds=self.min_seconds)
        if self.comm.Get_rank() == 0:
            stream = self.stream or sys.stderr
            for straggler in slow:
                if straggler.rank not in self.flagged:
                    print(straggler.warning(), file=stream, flush=True)
        self.flagged = {s.rank for s in slow}
        return slow
