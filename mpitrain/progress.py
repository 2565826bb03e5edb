"""Progress of long work that is not training: loading or generating data, the f* solve.

:func:`phase` wraps a step of set-up. On rank 0 (``enabled``), when it runs longer than
:data:`QUIET_SECONDS`, a background thread prints ``mpitrain: <what>... 12 s`` every
:data:`EVERY_SECONDS` (plus what the work reports through ``note``, e.g. the solver's iteration
and gradient norm) and, at the end, ``mpitrain: <what>: done in 31.4 s``. Short phases print
nothing. Lines are plain (one per report), so a log or a pipe reads them as they come; on a
terminal the same lines scroll. All of it goes to stderr, like the other notes, so stdout
keeps the training progress and the summary.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time

QUIET_SECONDS = 5.0  # a phase shorter than this prints nothing
EVERY_SECONDS = 10.0  # seconds between two reports of a running phase


class Phase:
    """What a running phase reports besides its elapsed time (``note``, set by the work)."""

    def __init__(self, what: str):
        self.what = what
        self.note = ""
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@contextlib.contextmanager
def phase(what: str, enabled: bool = True, stream=None, quiet: float = QUIET_SECONDS, every: float = EVERY_SECONDS):
    """Report ``what`` while it runs longer than ``quiet`` seconds (see the module doc)."""
    current = Phase(what)
    if not enabled:
        yield current
        return
    out = stream or sys.stderr
    stop = threading.Event()

    def report():
        if stop.wait(quiet):
            return
        while True:
            note = f" ({current.note})" if current.note else ""
            out.write(f"mpitrain: {what}... {current.elapsed():.0f} s{note}\n")
            out.flush()
            if stop.wait(every):
                return

    thread = threading.Thread(target=report, name="mpitrain-progress", daemon=True)
    thread.start()
    try:
        yield current
    finally:
        stop.set()
        thread.join()
        if current.elapsed() >= quiet:
            out.write(f"mpitrain: {what}: done in {current.elapsed():.1f} s\n")
            out.flush()


class Countdown:
    """``[3/12, 41 s, about 2 min left]`` for work done in ``total`` similar units (rows of an
    experiment or a benchmark): the time left is the mean time per finished unit so far times the
    units left, a guess that improves as rows finish. ``tick()`` after each unit returns the text."""

    def __init__(self, total: int, clock=time.monotonic):
        self.total = max(int(total), 1)
        self.done = 0
        self.clock = clock
        self.started = clock()

    def tick(self) -> str:
        self.done = min(self.done + 1, self.total)
        elapsed = self.clock() - self.started
        left = elapsed / self.done * (self.total - self.done)
        tail = "done" if self.done == self.total else f"about {duration(left)} left"
        return f"[{self.done}/{self.total}, {duration(elapsed)}, {tail}]"


def duration(seconds: float) -> str:
    """12 s, 3 min, 1 h 20 min: the unit a person reads a wait in."""
    seconds = max(float(seconds), 0.0)
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 59.5 * 60:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
