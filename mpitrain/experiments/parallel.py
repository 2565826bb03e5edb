"""An experiment's independent runs on this process and on ``jobs - 1`` child processes.

An experiment is dozens of runs that share nothing but the data set. One run is K ranks as
greenlets of one thread (mpitrain.comm.inprocess), so it keeps one core busy; a machine with
two cores can run two at once. :class:`RunPool` queues calls ``function(*args)`` and hands
them, in the order they were queued, to whichever process is free: this one (between two
results it runs the next call itself) or a child. Calls may be queued while earlier results
are read, so a run that depends on another's result (a step budget, say) is queued when that
result arrives.

Every call must be deterministic: its result may not depend on the process that ran it, so
the experiment's tables are the same for any ``jobs``. (The runs are: seeds, shards and sums
in rank order are fixed, and each run is scored whole by the same kernels.)

The children are spawned, not forked, and do not initialise MPI (``mpi4py.rc.initialize`` is
set to False before they import anything of the package): this process has initialised it, a
fork after ``MPI_Init`` is undefined under several MPI libraries, and a child that initialised
MPI inside an ``srun`` or ``mpiexec`` job would present itself to the process manager as a
second rank 0. (A ``__main__`` script that imports ``mpi4py.MPI`` at its top is imported again
by each spawned child, before that setting; ``python -m mpitrain`` imports no MPI there.) The
in-process runs make no MPI calls; whatever needs MPI (the f* solve) is done here and passed
to the children. A child costs one import of the package (about 0.7 s): :meth:`RunPool.start`
spawns the children and has them import the experiment's module at once, so that import is
taken while this process does its own set-up (loading the data), not after the first call is
queued, when this process would run calls alone until a child is ready.

Started ahead. Spawning a child and importing the experiment's module in it takes about as long
as this process takes to import that module itself, so the command line spawns the first child
before it imports the experiment (:func:`start_ahead`, for the experiments that use a pool):
the two imports then run side by side, and the child is ready about as soon as this process
has loaded the data. The :class:`RunPool` made next takes that child over in :meth:`RunPool.start`
(same modules); a child nobody takes over (``--jobs 1``, ``--help``, bad arguments) is ended
by :meth:`RunPool.start` or by :func:`discard_ahead`, which the command line calls on its way out.

Ctrl-C is this process's alone, as it is rank 0's in a training job: the children ignore SIGINT
(spawned with it blocked, ignored first thing, then unblocked), so a terminal's Ctrl-C, which reaches the whole process group, prints
no child's traceback; this process raises KeyboardInterrupt, and a pool left by it (or by
any other exception) ends its children at once (:meth:`RunPool.__exit__`) instead of waiting for
their runs.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections import deque
from concurrent.futures import ProcessPoolExecutor


MAX_DEFAULT_JOBS = 8  # compression-bits has about 25 runs ready at a time; a child costs an import and ~100 MB


def default_jobs() -> int:
    """Processes an experiment's runs go to unless ``--jobs`` says otherwise: the usable cores,
    at most :data:`MAX_DEFAULT_JOBS` (what :func:`start_ahead` spawns for)."""
    return min(usable_cores(), MAX_DEFAULT_JOBS)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, as Slurm sets it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity call on this platform
        return max(1, os.cpu_count() or 1)


class RunPool:
    """Calls queued with :meth:`submit`, run here and on ``jobs - 1`` children; results come
    back through :meth:`results` as they finish, each with the key it was queued under.

    An exception in a call (here or in a child) is raised by :meth:`results` once the calls
    running at that moment have ended; the calls still queued are dropped.
    """

    def __init__(self, jobs: int):
        self.jobs = max(1, int(jobs))
        self._queued = deque()  # (key, function, args) not started yet
        self._finished = queue.Queue()  # (key, result, error) from the children
        self._lock = threading.Lock()  # guards _queued and _in_children
        self._in_children = 0
        self._executor = None
        self._failed = False
        self._preload = ()  # modules every child imports first (start)
        self._ready = None  # children set up so far, after start (None: not started; all count as ready)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.close(terminate=kind is not None)  # an error or Ctrl-C: nobody wants the children's results

    def close(self, terminate: bool = False) -> None:
        """Drop the calls not started and wait for the children's running ones; ``terminate``:
        end the children now instead (Ctrl-C: nobody wants those results)."""
        with self._lock:
            self._queued.clear()
        if self._executor is not None:
            _end(self._executor, terminate)
            self._executor = None

    def start(self, *modules: str) -> None:
        """Spawn the children now, each importing ``modules`` (names, as for ``import``) before
        it takes a call; without it they are spawned by the first call handed to them. A child
        gets calls only once it is set up: until then this process runs the queued calls
        itself, from the first (the longest, if queued first), instead of leaving one waiting
        for a child that is still importing. A child :func:`start_ahead` spawned for the same
        modules is taken over (and counts as one of the ``jobs - 1``); any other is ended."""
        self._preload = tuple(modules)
        ahead = _take_ahead(self._preload, self.jobs - 1)
        if self.jobs == 1:
            return
        with self._lock:
            self._ready = 0
        spawned = []
        if ahead is not None:
            self._executor, first = ahead
            spawned.append(first)
        while len(spawned) < self.jobs - 1:  # one spawn each (the executor starts a child per waiting call)
            spawned.append(self._submit_to_children(_started, ()))
        for future in spawned:
            future.add_done_callback(self._child_started)

    def _child_started(self, future) -> None:
        """A child finished its set-up (or failed it: then its first call reports the broken pool)."""
        with self._lock:
            self._ready += 1
        self._feed_children()

    def submit(self, key, function, *args) -> None:
        """Queue ``function(*args)`` (a module-level function; picklable arguments)."""
        with self._lock:
            self._queued.append((key, function, args))
        self._feed_children()

    def results(self):
        """(key, result) for every call queued, including calls queued while iterating, in
        the order they finish; ends when none is queued or running."""
        while True:
            finished = self._take_finished()
            if finished is None:
                with self._lock:
                    local = self._queued.popleft() if self._queued and not self._failed else None
                    running = self._in_children
                if local is not None:  # nothing back from the children: run the next call here
                    key, function, args = local
                    try:
                        result = function(*args)
                    except BaseException:
                        self._failed = True
                        self.close()
                        raise
                    yield key, result
                    continue
                # every child result is in the queue once the count is 0 (see _child_done)
                finished = self._take_finished() if running == 0 else self._finished.get()
                if finished is None:
                    return
            key, result, error = finished
            if error is not None:
                self._failed = True
                self.close()
                raise error
            yield key, result

    def _take_finished(self):
        """A child's (key, result, error) if one is waiting, else None."""
        try:
            return self._finished.get_nowait()
        except queue.Empty:
            return None

    def _feed_children(self) -> None:
        """Keep every child busy with one call (called on submit and when a child finishes)."""
        if self.jobs == 1:
            return
        while True:
            with self._lock:
                capacity = self.jobs - 1 if self._ready is None else self._ready
                if self._failed or not self._queued or self._in_children >= capacity:
                    return
                key, function, args = self._queued.popleft()
                self._in_children += 1
            try:
                future = self._submit_to_children(function, args)
            except BaseException as exc:  # noqa: BLE001 -- a broken pool: results() raises it
                self._finished.put((key, None, exc))
                with self._lock:
                    self._in_children -= 1
                return
            future.add_done_callback(lambda done, key=key: self._child_done(key, done))

    def _child_done(self, key, future) -> None:
        # the result goes in before the count goes down: results() reads the count, then the queue
        if not future.cancelled():
            error = future.exception()
            self._finished.put((key, None if error is not None else future.result(), error))
        with self._lock:
            self._in_children -= 1
        self._feed_children()

    def _children(self) -> ProcessPoolExecutor:
        """The child processes (started on first use, each set up by :func:`_child_setup`)."""
        if self._executor is None:
            self._executor = _executor(self.jobs - 1, self._preload)
        return self._executor

    def _submit_to_children(self, function, args):
        """``submit`` to the executor (:func:`_submit_quietly`)."""
        return _submit_quietly(self._children(), function, args)


def _executor(workers: int, modules) -> ProcessPoolExecutor:
    """At most ``workers`` spawned children, each set up by :func:`_child_setup` with ``modules``
    (the executor starts a child when a call waits and none is idle)."""
    return ProcessPoolExecutor(max_workers=workers, initializer=_child_setup, initargs=(os.getpid(), *modules),
                               mp_context=multiprocessing.get_context("spawn"))


def _submit_quietly(executor, function, args):
    """``executor.submit``, which may spawn a child in this thread: with SIGINT blocked in this
    thread meanwhile. A child inherits the blocked signal from its first instruction, so a Ctrl-C
    while it starts stays pending there until :func:`_child_setup` ignores it (which drops it);
    here it stays pending for the moment of the submit and is then delivered, not lost.
    (Ignoring SIGINT here instead, as this did before, dropped a Ctrl-C that came during a
    submit: the run went on to the end.)"""
    if not hasattr(signal, "pthread_sigmask"):  # not a POSIX system
        return executor.submit(function, *args)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return executor.submit(function, *args)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_ahead = None  # (modules, executor, its most children, its first child's set-up future): start_ahead


def start_ahead(*modules: str) -> None:
    """Spawn one child now, importing ``modules``, for the :class:`RunPool` of
    :func:`default_jobs` processes this process makes next (see the module's docstring); nothing
    where that is one process (no children)."""
    global _ahead
    workers = default_jobs() - 1
    if _ahead is not None or workers < 1:
        return
    executor = None
    try:
        executor = _executor(workers, modules)
        first = _submit_quietly(executor, _started, ())
    except Exception:  # noqa: BLE001 -- only a head start: the pool spawns (and reports) its own
        if executor is not None:
            _end(executor, terminate=True)
        return
    _ahead = tuple(modules), executor, workers, first


def _take_ahead(modules, children: int):
    """(executor, first child's set-up future) of :func:`start_ahead` when it spawned for
    ``modules`` and ``children`` children; else None (a child spawned ahead is ended). The
    executor starts a child whenever a call waits and none is idle, up to its ``max_workers``,
    and a pool hands a child its next call before the executor counts that child idle again: an
    executor made for more children than the pool's would spawn the rest one by one."""
    global _ahead
    ahead, _ahead = _ahead, None
    if ahead is None:
        return None
    spawned_for, executor, workers, first = ahead
    if spawned_for == tuple(modules) and children == workers:
        return executor, first
    _end(executor, terminate=True)
    return None


def discard_ahead() -> None:
    """End the child :func:`start_ahead` spawned if no :class:`RunPool` took it over."""
    global _ahead
    ahead, _ahead = _ahead, None
    if ahead is not None:
        _end(ahead[1], terminate=True)


def _end(executor, terminate: bool) -> None:
    """Shut ``executor`` down: wait for its children's running calls, or end them at once."""
    if terminate:
        # ProcessPoolExecutor has no public terminate before Python 3.14; its process table is
        # read defensively (empty if the attribute ever goes)
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            process.terminate()
    executor.shutdown(wait=True, cancel_futures=True)


def _started() -> None:
    """The call :meth:`RunPool.start` hands each child to spawn it: nothing beyond the set-up."""


def _child_setup(parent: int, *modules: str) -> None:
    """A child's first act: it ends with ``parent`` (:func:`_end_with_parent`), importing
    mpi4py.MPI from now on does not initialise MPI, and Ctrl-C is left to the parent; then it
    imports ``modules``."""
    import importlib

    import mpi4py

    _end_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # drops a SIGINT pending since the start
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent's submit
    mpi4py.rc.initialize = False
    mpi4py.rc.finalize = False
    for module in modules:
        importlib.import_module(module)


def _end_with_parent(parent: int) -> None:
    """Linux: have the kernel kill this child when the thread that spawned it ends, so that a
    parent killed outright (SIGKILL, a SIGTERM it does not handle, ``os._exit`` after Ctrl-C)
    leaves no child behind. Without it such a child waits forever on its call queue, whose
    write end it holds itself. (The spawning thread is this package's main thread, or the
    executor's manager thread, which ends only after the children.) Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl to be found: as elsewhere
        return
    if os.getppid() != parent:  # the parent was gone before the prctl: it would never fire
        os._exit(1)
