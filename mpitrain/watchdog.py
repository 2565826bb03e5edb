"""Naming the ranks a lock-step run waits for.

In sync SGD, Local SGD and compressed SGD every rank waits in a collective for the slowest; a
rank that stopped (SIGSTOP, a hung file system, a node in trouble) stalls everyone, silently.
:class:`StallWatchdog` makes rank 0 say so after ``run.stall_timeout`` seconds without progress:

    mpitrain: warning: no step completed for 62 s (rank 0 waits after step 1200): rank 2 has
    not reported for 63 s (stopped, hung or unreachable); the other ranks are waiting for them

How: every rank's main thread publishes the number of steps it has completed (an attribute
store per step). A background thread on every rank other than 0 sends that number to rank 0
every ``beat`` seconds on a duplicate of the communicator (nonblocking, one int64); rank 0's
thread receives them, and warns once per stall when no rank's count has moved for the timeout.
It names the ranks that went silent (their thread stopped with them); when every rank still
reports, it names the ranks behind the others, or says that all are alive at the same step.
mpi4py releases the GIL inside blocking MPI calls, so waiting ranks keep reporting.

The threads make MPI calls, so this needs MPI_THREAD_MULTIPLE (mpi4py asks for it by
default); without it the watchdog is off. ``close()`` is collective: every rank sends a last
message and rank 0 receives one from each before its thread ends, so no message is left
unmatched at MPI_Finalize.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
from mpi4py import MPI

TAG_STEP = 1
TAG_DONE = 2
POLL_SECONDS = 0.1


class StallWatchdog:
    """See the module docstring. ``step`` is written by the training loop after every step."""

    def __init__(self, comm, timeout: float, stream=None):
        self.step = 0
        self.timeout = float(timeout)
        self.enabled = (timeout > 0 and comm.Get_size() > 1
                        and MPI.Query_thread() == MPI.THREAD_MULTIPLE)
        self.stream = stream
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.beat = min(max(self.timeout / 4, 0.2), 5.0)
        self.warnings = []  # the messages rank 0 printed (tests read them)
        self._stop = threading.Event()
        self._thread = None
        self.comm = comm.Dup() if self.enabled else None

    def start(self, step: int) -> "StallWatchdog":
        self.step = step
        if self.enabled:
            target = self._listen if self.rank == 0 else self._report
            self._thread = threading.Thread(target=target, name="mpitrain-stall-watchdog", daemon=True)
            self._thread.start()
        return self

    # --- ranks 1..K-1 -------------------------------------------------------------------------

    def _send(self, value: int, tag: int) -> None:
        buffer = np.array([value], dtype=np.int64)
        request = self.comm.Isend(buffer, dest=0, tag=tag)
        while not request.Test():
            time.sleep(POLL_SECONDS / 10)

    def _report(self) -> None:
        while not self._stop.wait(self.beat):
            self._send(self.step, TAG_STEP)
        self._send(self.step, TAG_DONE)

    # --- rank 0 -----------------------------------------------------------------------------

    def _listen(self) -> None:
        now = time.monotonic()
        steps = np.full(self.size, self.step, dtype=np.int64)
        heard = np.full(self.size, now)  # when each rank last reported
        moved = now  # when any rank's count last changed
        done = np.zeros(self.size, dtype=bool)
        done[0] = True
        warned = False
        buffer = np.zeros(1, dtype=np.int64)
        status = MPI.Status()
        while not done.all():
            while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
                self.comm.Recv(buffer, source=status.Get_source(), tag=status.Get_tag())
                source, now = status.Get_source(), time.monotonic()
                done[source] |= status.Get_tag() == TAG_DONE
                heard[source] = now
                if buffer[0] != steps[source]:
                    steps[source], moved = buffer[0], now
            now = time.monotonic()
            heard[0] = now
            if self.step != steps[0]:
                steps[0], moved = self.step, now
            if now - moved < self.timeout:
                warned = False
            elif not warned and not self._stop.is_set():
                self._warn(stall_message(steps, now - heard, now - moved, self.beat))
                warned = True
            time.sleep(POLL_SECONDS)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        stream = self.stream or sys.stderr
        stream.write(message + "\n")
        stream.flush()

    # --- the end ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the threads (collective: call it on every rank after the training loop)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.comm.Free()


def stall_message(steps, silent_for, stalled_for: float, beat: float) -> str:
    """The warning for a stall of ``stalled_for`` seconds, from each rank's completed-step count
    and the seconds since each rank last reported."""
    low, high = int(steps.min()), int(steps.max())
    head = f"mpitrain: warning: no step completed for {stalled_for:.0f} s (rank 0 waits after step {int(steps[0])}): "
    silent = [rank for rank in range(len(steps)) if silent_for[rank] > 3 * beat]
    if silent:
        ranks = ", ".join(map(str, silent))
        return (head + f"rank{'s' if len(silent) > 1 else ''} {ranks} ha{'ve' if len(silent) > 1 else 's'} not "
                f"reported for {max(silent_for[r] for r in silent):.0f} s (stopped, hung or unreachable); "
                "the other ranks are waiting for them")
    if low != high:
        behind = ", ".join(str(rank) for rank in range(len(steps)) if steps[rank] == low)
        return head + f"rank{'s' if ',' in behind else ''} {behind} ha{'ve' if ',' in behind else 's'} not arrived " \
                      f"at step {low + 1}; the others are waiting there"
    return head + "every rank still reports; one may be stuck outside MPI (in its own computation or I/O)"
