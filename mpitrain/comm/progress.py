"""A background thread that drives MPI progress while the main thread computes.

Passive-target RMA between nodes (MPICH ch4 over UCX/OFI, e.g. the ``mpich`` wheel) is
served by the target's progress engine: an ``Accumulate`` or ``Fetch_and_op`` aimed at a
rank that is busy in numpy or Cython waits until that rank next enters MPI (measured 2.0 s
for a 2 s compute with ``MPIR_CVAR_NOLOCAL=1``, which forces the inter-node path). This
thread calls ``comm.Iprobe`` every ``interval`` seconds, so a push waits at most about one
interval plus a GIL switch (``sys.getswitchinterval()``, 5 ms) while the host computes.
It needs ``MPI.Query_thread() == MPI.THREAD_MULTIPLE``.
"""
import threading

from mpi4py import MPI


class ProgressThread:
    """Poll ``comm`` from a daemon thread until :meth:`stop`; use as a context manager.

    comm: a communicator duplicated for this thread's use (its Iprobe matches nothing).
    interval: seconds slept between polls (default 1 ms).
    """

    def __init__(self, comm, interval=1e-3):
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
            raise RuntimeError("a progress thread needs MPI.THREAD_MULTIPLE "
                               f"(MPI.Query_thread() = {MPI.Query_thread()})")
        self.comm = comm
        self.interval = interval
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="mpi-progress", daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._halt.wait(self.interval):
            self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG)

    def stop(self):
        """Stop polling and join the thread (idempotent)."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
