"""Names the straggler of a synchronous run: a rank whose own work is many times the others'.

In a lock-step method (sync SGD, Local SGD, compressed SGD) every round waits for the slowest
rank, so one slow rank slows the whole job while its peers look busy too (they wait inside the
collective). What tells them apart is each rank's *busy* time: the training time of its steps
less the time it spent inside communication (waiting included), i.e. ``train_seconds -
comm_seconds`` accumulated over an interval. A rank waiting for a straggler has little busy
time; the straggler has a lot.

At each check (the loop calls :meth:`StragglerMonitor.check` at its evaluation points, every
``run.log_every`` steps, when all ranks are at the same step), one ``allgather`` of one
pair per rank (busy seconds, training seconds) gives every rank everyone's numbers for the
interval; rank 0 alone speaks. Rank r is flagged when

    busy_r >= ratio * median(busy of the other ranks)     (default ratio 10)
    busy_r >= share * interval wall time                  (default share 0.25: it costs the job time)
    busy_r >= min_seconds                                  (default 0.1 s: not scheduler noise)

and rank 0 prints, once when a rank becomes slow::

    mpitrain: warning: rank 3 is 12.4x slower than the median of the other ranks
    (compute 1.23 s vs 0.0995 s over steps 100-200)

on one line. A flagged rank stays flagged, without a new warning, until a check finds it under
half the ratio (under 5x the others), so a rank that stays slow is named once even when one
interval of a loaded machine blurs the numbers. The check costs one small collective per
evaluation, next to the evaluation's own full pass over the data and its Allreduce of d + 1
numbers.
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


def slowdowns(busy) -> np.ndarray:
    """busy_r / median(busy of the other ranks) for every rank r (inf over a median of 0)."""
    busy = np.asarray(busy, dtype=np.float64)
    out = np.zeros(busy.size)
    for rank, mine in enumerate(busy):
        others = float(np.median(np.delete(busy, rank))) if busy.size > 1 else mine
        out[rank] = mine / others if others > 0 else (float("inf") if mine > 0 else 1.0)
    return out


def find_stragglers(busy, interval: float, first_step: int, last_step: int, *, ratio: float = 10.0,
                    share: float = 0.25, min_seconds: float = 0.1) -> list:
    """The ranks of ``busy`` (busy seconds per rank over one interval of ``interval`` wall
    seconds) that are ``ratio`` times the median of the others and significant (see the module doc)."""
    busy = np.asarray(busy, dtype=np.float64)
    found = []
    if busy.size < 2:
        return found
    for rank, times in enumerate(slowdowns(busy)):
        mine = float(busy[rank])
        if mine >= min_seconds and mine >= share * interval and times >= ratio:
            others = float(np.median(np.delete(busy, rank)))
            found.append(Straggler(rank, float(times), mine, others, first_step, last_step))
    return found


@dataclass
class StragglerMonitor:
    """Per-interval busy time of every rank; rank 0 warns about stragglers (collective ``check``)."""

    comm: object  # the communicator of the lock-step workers
    ratio: float = 10.0  # flag a rank this many times the median of the others
    share: float = 0.25  # ... whose busy time is at least this share of the interval
    min_seconds: float = 0.1  # ... and at least this many seconds
    stream: object = None  # where rank 0 writes warnings (default stderr)
    flagged: set = field(default_factory=set)  # ranks named and not yet back under ratio / 2
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
        busy = [b for b, _ in gathered]
        slow = find_stragglers(busy, wall, first, step, ratio=self.ratio, share=self.share,
                               min_seconds=self.min_seconds)
        if self.comm.Get_rank() == 0:
            stream = self.stream or sys.stderr
            for straggler in slow:
                if straggler.rank not in self.flagged:
                    print(straggler.warning(), file=stream, flush=True)
        ratios = slowdowns(busy)
        self.flagged = {s.rank for s in slow} | {r for r in self.flagged if ratios[r] >= self.ratio / 2}
        return slow
