"""Stop signals that arrive before MPI starts.

Slurm may send its time-limit warning (SIGUSR1) or a SIGTERM while a job is still starting:
before mpi4py initialises MPI, or while MPI_Init runs. Python's default action for SIGUSR1
kills the process, and MPICH's MPI_Init installs a SIGUSR1 handler of its own that passes the
signal on only to a handler that was there before it. So ``python -m mpitrain train`` calls
:func:`catch` first thing, before anything imports mpi4py: the signal is remembered in
:data:`received` and :class:`mpitrain.stopping.StopRequest` picks it up when it takes over, and
the run then stops at its first step boundary with a checkpoint.

This module imports nothing but ``signal``, so that calling it cannot start MPI.
"""
import signal

#: the last stop signal received before StopRequest took over (0: none)
received = 0


def _remember(signum, frame):
    global received
    received = signum


def catch() -> None:
    """Remember SIGTERM and SIGUSR1 from now on (until StopRequest installs its handler)."""
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, _remember)
