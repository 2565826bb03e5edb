"""The MPI runtime of a job: who speaks, how errors end the job, how ranks agree.

- An unexpected exception on any rank prints ``mpitrain: rank R: <error>`` and calls
  ``MPI.COMM_WORLD.Abort(1)``, so the whole job ends with a non-zero exit, never a hang
  (the same contract as ``python -m mpi4py``).
- Errors every rank can detect together (a bad config value, a broken data line seen by one
  rank) go through :func:`agree`: each rank reports its own outcome, all ranks learn them
  all, rank 0 prints one message and every rank exits with the same code.
"""
from __future__ import annotations

import os
import sys
import time
import traceback


class JobError(Exception):
    """An error every rank knows about; rank 0 prints ``message`` and all ranks exit ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def world():
    """COMM_WORLD (imports mpi4py on first use)."""
    from mpi4py import MPI

    return MPI.COMM_WORLD


def say(comm, message: str, *, file=None):
    """Print ``message`` on rank 0 only."""
    if comm.Get_rank() == 0:
        print(message, file=file or sys.stdout, flush=True)


#: pause between printing an uncaught exception and calling MPI_Abort
ABORT_GRACE_SECONDS = 1.0
#: how long a rank other than 0 waits, after Ctrl-C during set-up, for rank 0 to print its line
#: and end the job (mpitrain.stopping.StopRequest.install_for_set_up)
RANK0_SPEAKS_SECONDS = 20.0


def install_abort_hook():
    """Make an uncaught exception on any rank end the whole MPI job with exit code 1."""

    def hook(kind, value, tb):
        mpi = sys.modules.get("mpi4py.MPI")
        if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
            sys.__excepthook__(kind, value, tb)  # no MPI job to end (plot, compare, ...)
            os._exit(1)
        rank = mpi.COMM_WORLD.Get_rank()
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"mpitrain: rank {rank}: {kind.__name__}: {value}\n{text}")
        sys.stderr.flush()
        # Give mpiexec's I/O forwarding a moment to pass the message on: Abort kills the job,
        # and on a loaded machine text already written to the pipe was seen to be lost.
        time.sleep(ABORT_GRACE_SECONDS)
        try:
            mpi.COMM_WORLD.Abort(1)
        finally:
            os._exit(1)

    sys.excepthook = hook


def agree(comm, action, *, what: str):
    """Run ``action()`` on every rank; if it raised anywhere, raise :class:`JobError` everywhere.

    The message names the failing ranks, e.g. ``loading data: rank 2: w8a:17: bad index``.
    Exceptions of kind JobError, ValueError, OSError and the project's data/config errors
    are reported; anything else is a bug and propagates (and aborts the job).
    """
    result, error = None, None
    try:
        result = action()
    except (JobError, ValueError, OSError, LookupError) as exc:
        error = str(exc) or type(exc).__name__
    errors = comm.allgather(error)
    failed = [(rank, msg) for rank, msg in enumerate(errors) if msg is not None]
    if failed:
        messages = {}
        for rank, msg in failed:
            messages.setdefault(msg, []).append(rank)
        parts = []
        for msg, ranks in messages.items():
            if comm.Get_size() == 1:
                parts.append(msg)
            elif len(ranks) == comm.Get_size():
                parts.append(f"all ranks: {msg}")
            else:
                parts.append(f"rank {', '.join(map(str, ranks))}: {msg}")
        raise JobError(f"{what}: " + "; ".join(parts))
    return result
