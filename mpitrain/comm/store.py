"""The asynchronous SGD parameter store on MPI one-sided communication (RMA windows).

Erickson and Johansson 2026 (docs/papers.md s.3): a server holds x and a version counter
k; a worker reads x, computes g at it, sends clip_lambda(g); on arrival
x <- x - gamma * clip_lambda(g) and k <- k + 1. The delay of an update is
tau = (version when applied) - (version when x was read). Here there is no server process:
x lives in RMA windows (one shard per hosting rank, see :mod:`mpitrain.comm.layout`) and k
in a two-integer window on ``root`` (k and a stop flag); workers ``pull`` with
``Get_accumulate(NO_OP)`` and ``push`` with ``Accumulate(SUM)`` then ``Fetch_and_op(SUM, 1)``
(or, within a budget of pushes, the ``Fetch_and_op`` first).
"""
import numpy as np
from mpi4py import MPI
from mpi4py.util.dtlib import from_numpy_dtype

from mpitrain.comm.layout import LAYOUTS
from mpitrain.comm.progress import ProgressThread

PROGRESS = ("thread", "none")
#: the int64 slots of the counter window on root
VERSION, STOP = 0, 1
COUNTER_SLOTS = 2


class ParameterStore:
    """Parameters x (shape ``(d,)``, ``dtype``) and a version counter in RMA windows.

    Collective: every rank of ``comm`` constructs it with the same arguments, and every
    rank calls :meth:`free` (or leaves the ``with`` block). The constructor allocates the
    windows, writes ``x0`` (zeros if None; each host copies its own slice) and the counter
    0, barriers, and opens one passive-target epoch (``Lock_all``) per window on each
    worker for the store's lifetime; each operation is completed by ``Flush``. (A
    ``Lock``/``Unlock`` pair per operation needs the target's progress engine to grant
    the lock: measured 1.95 s for a 2 s compute on the target even inside one node.)

    layout: ``"sharded"`` (x split over all ranks, all ranks are workers) or ``"server"``
        (x on ``root``, which is not a worker: it constructs the store and calls
        :meth:`free` at once, serving everyone's RMA while it blocks there; the training
        loop runs on ``store.workers`` only).
    progress: ``"thread"`` starts a :class:`ProgressThread` on every hosting rank that is
        also a worker, so pushes to it do not wait for its compute; ``"none"`` relies on
        the caller calling :meth:`progress` in its compute loop (or on intra-node
        shared-memory RMA, which needs no target progress). Default: ``"thread"`` for
        ``"sharded"`` when MPI is THREAD_MULTIPLE, else ``"none"``.

    Semantics (K workers pushing concurrently):
      - ``push(delta)``: ``x += delta`` element-wise atomically (MPI accumulate atomicity:
        same op, same basic type), completed at the targets, *then* the counter is
        incremented; returns the new version ``v`` (unique over all pushes: the versions
        of N pushes are a permutation of 1..N). No update is lost.
      - ``pull(out)``: reads the counter ``v`` first, then x. ``out`` contains every push
        whose version is <= v, and maybe some later ones that are in flight. Each element
        is read atomically (``Get_accumulate`` with ``NO_OP``), but ``out`` is not a
        snapshot: different elements (and shards) may reflect different sets of in-flight
        pushes ("torn" reads), as in lock-free (Hogwild-style) asynchronous SGD.
      - delay: the push after a pull that returned ``v0`` records
        ``tau = v - 1 - v0`` in ``self.delays`` (pushes by others since the pull; 0 for a
        worker alone), the paper's ``version when applied - version when read``.
      - budget: ``push(delta, limit)`` takes its version first (the same one ``Fetch_and_op``)
        and adds delta only if that version is <= ``limit``; past it, it hands the version back
        and returns 0. Workers pushing with one limit make exactly ``limit`` pushes together,
        however many race for the last ones (without a limit, up to K - 1 pushes in flight
        would overshoot a budget checked at the pull). The price: a pull may then read a
        version whose push is still landing (the counter runs ahead of x by the pushes in
        flight instead of behind it); after a barrier both agree again.
      - stop flag: ``request_stop()`` sets a flag beside the counter that every worker reads
        with ``stop_requested()`` (one ``Fetch_and_op``): how one rank's signal reaches
        workers that are computing or sleeping, without a collective. It never resets.
      - checkpoints: after a barrier (no push in flight) every rank's ``pull`` returns the
        same x and version; ``restore(x, version)`` on every rank, then a barrier, puts them
        back into a new store (each host writes its shards, ``root`` the counter).
      - shutdown: ``free`` is collective; leaving a ``with`` block by an exception does
        not free (that could hang) and leaves the job to ``MPI_Abort`` (``python -m
        mpi4py`` calls it on an uncaught exception on any rank).
    """

    def __init__(self, comm, d, dtype=np.float64, *, layout="sharded", root=0, x0=None,
                 progress=None):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
        if d < 1:
            raise ValueError(f"d must be >= 1, got {d}")
        if not 0 <= root < comm.size:
            raise ValueError(f"root must be a rank of comm (0..{comm.size - 1}), got {root}")
        if progress is None:
            threaded = MPI.Query_thread() == MPI.THREAD_MULTIPLE
            progress = "thread" if layout == "sharded" and threaded else "none"
        if progress not in PROGRESS:
            raise ValueError(f"progress must be one of {PROGRESS}, got {progress!r}")
        split, root_works = LAYOUTS[layout]
        self.comm, self.d, self.root, self.layout = comm, d, root, layout
        self.dtype = np.dtype(dtype)
        self.mpitype = from_numpy_dtype(self.dtype)
        self.shards = tuple(s for s in split(comm.size, d, root) if s.count > 0)
        self.workers = tuple(r for r in range(comm.size) if root_works or r != root)
        self.is_worker = comm.rank in self.workers
        self.delays = []            # tau of each of this rank's pushes, in push order
        self._pulled = None         # version returned by this rank's last pull
        self._one = np.ones(1, np.int64)
        self._minus_one = -self._one
        self._version = np.zeros(1, np.int64)
        local = sum(s.count for s in self.shards if s.rank == comm.rank)
        itemsize = self.dtype.itemsize
        self.win = MPI.Win.Allocate(local * itemsize, itemsize, comm=comm)
        self.counter = MPI.Win.Allocate(8 * COUNTER_SLOTS if comm.rank == root else 0, 8, comm=comm)  # [k, stop]
        self._init_local(x0)
        comm.Barrier()
        self._thread = None
        self._free = False
        if self.is_worker:
            self.win.Lock_all()
            self.counter.Lock_all()
        hosts = {s.rank for s in self.shards} | {root}
        if progress == "thread" and self.is_worker and comm.rank in hosts:
            self._thread_comm = comm.Dup()
            self._thread = ProgressThread(self._thread_comm)

    def _init_local(self, x0):
        rank = self.comm.rank
        for s in self.shards:
            if s.rank == rank:
                mem = np.frombuffer(self.win.tomemory(), self.dtype, count=s.count)
                self.win.Lock(rank)
                mem[:] = 0 if x0 is None else np.asarray(x0, self.dtype)[s.start:s.start + s.count]
                self.win.Unlock(rank)
        if rank == self.root:
            self.counter.Lock(rank)
            np.frombuffer(self.counter.tomemory(), np.int64, count=COUNTER_SLOTS)[:] = 0
            self.counter.Unlock(rank)

    def _check_open(self):
        if not self.is_worker:
            raise RuntimeError(f"rank {self.comm.rank} is the {self.layout} layout's server, not a worker")
        if self._free:
            raise RuntimeError("the store has been freed")

    def _check(self, array, name):
        self._check_open()
        if array.shape != (self.d,) or array.dtype != self.dtype or not array.flags.c_contiguous:
            raise ValueError(f"{name} must be a contiguous ({self.d},) {self.dtype} array, "
                             f"got {array.shape} {array.dtype}")

    def _counter(self, op, slot=0):
        self.counter.Fetch_and_op(self._one, self._version, self.root, slot, op=op)
        self.counter.Flush(self.root)
        return int(self._version[0])

    def version(self):
        """The number of completed pushes so far (workers only)."""
        self._check_open()
        return self._counter(MPI.NO_OP)

    def pull(self, out):
        """Read x into ``out`` (shape ``(d,)``, the store's dtype); return the version read.

        ``out`` holds at least every push with version <= the returned one (see class doc).
        """
        self._check(out, "out")
        version = self._counter(MPI.NO_OP)
        for s in self.shards:
            view = out[s.start:s.start + s.count]
            self.win.Get_accumulate([view, self.mpitype], [view, self.mpitype], s.rank,
                                    target=(0, s.count, self.mpitype), op=MPI.NO_OP)
        self.win.Flush_all()
        self._pulled = version
        return version

    def push(self, delta, limit=None):
        """Add ``delta`` (shape ``(d,)``, e.g. ``-gamma * clip(g)``) to x; return the new version.

        Without ``limit``: returns after the sum is complete at every target and the counter is
        incremented. With ``limit``: the version is taken first and the sum is made only if it
        is <= ``limit``, else nothing is added, the version is handed back and 0 is returned
        (see the class doc). Appends this push's delay to ``self.delays`` when this rank has
        pulled before (not for a push refused).
        """
        self._check(delta, "delta")
        if limit is not None:
            version = self._counter(MPI.SUM) + 1
            if version > limit:
                self.counter.Fetch_and_op(self._minus_one, self._version, self.root, VERSION, op=MPI.SUM)
                self.counter.Flush(self.root)
                return 0
        for s in self.shards:
            self.win.Accumulate([delta[s.start:s.start + s.count], self.mpitype], s.rank,
                                target=(0, s.count, self.mpitype), op=MPI.SUM)
        self.win.Flush_all()
        if limit is None:
            version = self._counter(MPI.SUM) + 1
        if self._pulled is not None:
            self.delays.append(version - 1 - self._pulled)
        return version

    def request_stop(self):
        """Set the stop flag that every worker reads (workers only; one ``Fetch_and_op``)."""
        self._check_open()
        self._counter(MPI.MAX, slot=STOP)

    def stop_requested(self):
        """Whether any worker has called :meth:`request_stop` (workers only)."""
        self._check_open()
        return self._counter(MPI.NO_OP, slot=STOP) > 0

    def restore(self, x, version):
        """Put a checkpointed ``x`` (shape ``(d,)``) and ``version`` back (every rank, then a
        barrier before any pull): each host replaces its own shards, ``root`` the counter.
        Local operations, completed by ``Flush``; the counter's stop flag stays as it is."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        self._check(x, "x")
        rank = self.comm.rank
        for s in self.shards:
            if s.rank == rank:
                self.win.Accumulate([x[s.start:s.start + s.count], self.mpitype], rank,
                                    target=(0, s.count, self.mpitype), op=MPI.REPLACE)
        self.win.Flush(rank)
        if rank == self.root:
            self.counter.Accumulate([np.array([version], np.int64), MPI.INT64_T], rank,
                                    target=(VERSION, 1, MPI.INT64_T), op=MPI.REPLACE)
            self.counter.Flush(rank)

    def progress(self):
        """Let MPI serve RMA aimed at this rank (call it in long compute loops with
        ``progress="none"``; cheap: one ``Iprobe``)."""
        self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG)

    def free(self):
        """Collective: stop the progress thread, close the epochs, free the windows.

        Every push has already completed (``push`` flushes), so nothing is pending. A
        server rank calls this right after construction and serves until all workers
        arrive. Idempotent.
        """
        if self._free:
            return
        self._free = True
        if self._thread is not None:
            self._thread.stop()
            self._thread_comm.Free()
        if self.is_worker:
            self.counter.Unlock_all()
            self.win.Unlock_all()
        self.counter.Free()
        self.win.Free()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.free()
        elif self._thread is not None:
            # Freeing is collective and would hang if the other ranks are not there;
            # leave the windows to MPI_Abort (``python -m mpi4py`` calls it on an
            # uncaught exception) and only stop the local thread.
            self._thread.stop()
