"""K ranks in one process: a communicator with the mpi4py ``Comm`` API subset that the
synchronous algorithms and their helpers use.

The model is PyTorch's threaded process group (one process, one rank per thread, collectives
met at a rendezvous), with greenlets (the ``greenlet`` package, the coroutines under gevent)
in place of threads: every rank is a greenlet of one driver thread, and a collective switches
to the next rank instead of waking a thread. ``run(size, function)`` calls ``function(comm)``
once per rank with that rank's :class:`InProcessComm` and returns the results in rank order::

    from mpitrain.comm import inprocess

    def worker(comm):
        x = np.full(3, comm.Get_rank(), dtype=np.float64)
        comm.Allreduce(MPI.IN_PLACE, x, op=MPI.SUM)
        return x

    results = inprocess.run(4, worker)      # [array([6., 6., 6.]), ...], one per rank

The greenlets, their scheduling and the rendezvous are mpitrain.comm.greenlet_ranks; this
module is the communicator on top of them. The real algorithm classes run on it unchanged
(mpitrain.algorithms take any communicator), so an experiment steps K workers without a copy of
the algorithm written for one process.

Supported: ``Get_rank``, ``Get_size`` (and ``rank`` / ``size``), ``Allreduce`` (SUM, MAX,
MIN, PROD; ``MPI.IN_PLACE``), ``Reduce``, ``Bcast``, ``Allgather``, ``Allgatherv``,
``Barrier``, the pickle-based ``allreduce``, ``allgather``, ``gather``, ``bcast``, ``barrier``,
and ``Dup``, ``Split``, ``Split_type(MPI.COMM_TYPE_SHARED)`` (every rank is on one node),
``Free``. Buffers are NumPy arrays, given bare or mpi4py-style as ``[array, MPI.TYPE]`` /
``[array, counts, displs, MPI.TYPE]`` (counts and displacements in units of the type).
Three calls of its own: ``Combine`` hands one computation every rank's contribution (the
compressed SGD steps of all K ranks in one C call use it), and ``Allgatherv_apply`` and
``Allreduce_apply`` run a computation that
every rank would repeat on the gathered or summed bytes once for all ranks
(mpitrain.comm.payloads uses them for the compressed average: K decodes of K payloads per
step instead of K^2, the same bits).
Point-to-point messages, nonblocking calls and RMA windows are not: the asynchronous methods
need a real MPI (mpitrain.algorithms.async_simulation simulates them with a clock instead).

Determinism: a reduction sums in rank order, ``((b_0 + b_1) + b_2) + ...``, computed once by
the last rank to arrive; every rank receives the same bits. MPI's Allreduce may associate the
sum differently for K > 2 (results then agree to rounding; for K = 2, a + b == b + a, the
same bits). Objects of the lowercase calls are pickled and every rank gets its own copy, as
with mpi4py. The ranks run one at a time, in an order fixed by the program alone.

Failure: an exception in one rank aborts the run: ranks waiting in (or later entering) a
collective raise :class:`Aborted`, and ``run`` re-raises the first real exception in the
caller. A rank that returns while others wait in a collective it will never join aborts the
run the same way, and so does a deadlock (every rank left waits in a collective that no other
rank will join, such as two sub-communicators' collectives called in opposite orders), instead
of leaving them waiting forever. A rank that blocks outside the communicator (on a lock, a
queue, a sleep) blocks them all: ``run(..., timeout=...)`` bounds that.

Why greenlets, not threads: with threads, a collective woke K - 1 threads that then took the
interpreter lock in turn, and on a machine with few cores those hand-offs were most of a
step. An Allreduce of 300 float64 (each rank calls it 2,000 times in one ``run`` and rank 0's
mean is kept; the project's 2-core machine, 2026-12-01, this module before and after, run in
turn): 24-27 us with threads against 8-10 us with greenlets at K = 2, 52-56 against 17-19 us at
K = 4, 293-302 against 65-85 us at K = 16; the two paper
experiments that run on it took about half the time (docs/experiments.md), with the same results.
The price: the ranks' ``nogil`` kernels no longer run in parallel with each other (they still
run beside other threads, such as an experiment's scorers).
"""
from __future__ import annotations

import operator
import pickle
import threading

import numpy as np
from mpi4py import MPI

from .greenlet_ranks import Aborted, Group, World

#: bytes of the types payloads travel as; known without asking MPI, which an experiment's child
#: processes never initialise (mpitrain.experiments.parallel)
TYPE_SIZES = ((MPI.BYTE, 1), (MPI.FLOAT, 4), (MPI.DOUBLE, 8))


def _type_size(datatype) -> int:
    for known, size in TYPE_SIZES:
        if datatype == known:
            return size
    return datatype.Get_size()


#: reduction operations on arrays: (mpi4py Op, NumPy ufunc); mpi4py's Op objects are not hashable
ARRAY_OPS = ((MPI.SUM, np.add), (MPI.MAX, np.maximum), (MPI.MIN, np.minimum), (MPI.PROD, np.multiply))


def _ufunc(op):
    for mpi_op, ufunc in ARRAY_OPS:
        if op == mpi_op:
            return ufunc
    raise NotImplementedError(f"in-process Allreduce supports MPI.SUM, MAX, MIN and PROD, not {op!r}")


def _array(buf, what: str) -> np.ndarray:
    """The NumPy array of an mpi4py buffer specification (an array, or a list/tuple starting with one)."""
    if isinstance(buf, (list, tuple)):
        buf = buf[0]
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"in-process {what}: buffers must be NumPy arrays, got {type(buf).__name__}")
    return buf


def _bytes(array: np.ndarray) -> np.ndarray:
    """A flat uint8 view of a contiguous array (what MPI.BYTE counts address)."""
    if array.dtype == np.uint8 and array.ndim == 1 and array.flags.c_contiguous:
        return array  # a payload already
    if not array.flags.c_contiguous:
        raise ValueError("in-process communicator: buffers must be C-contiguous")
    return array.reshape(-1).view(np.uint8)


def _reduce_arrays(arrays, op):
    """b_0 op b_1 op ... in rank order, a new array."""
    return _fold_arrays(arrays, _ufunc(op))


def _fold_arrays(arrays, ufunc):
    """``ufunc`` folded over the arrays in rank order (a new array)."""
    total = arrays[0].copy()
    for a in arrays[1:]:
        if a.shape != total.shape or a.dtype != total.dtype:
            raise ValueError(f"in-process reduction: buffers differ across ranks ({total.dtype}{total.shape} "
                             f"and {a.dtype}{a.shape})")
        ufunc(total, a, out=total)
    return total


def _check_part_sizes(parts, counts, name: str) -> None:
    """ValueError unless every rank's part has the byte count ``counts`` gives it."""
    for part, count in zip(parts, counts):
        if part.size != count:
            raise ValueError(f"in-process {name}: a rank sent {part.size} bytes, counts say {count}")


class _SumThen:
    """The combine step of ``Allreduce_apply``: (the sum in rank order, function(sum)).
    (A small class, not a closure: it runs every step of an experiment.)"""

    __slots__ = ("function",)

    def __init__(self, function):
        self.function = function

    def __call__(self, arrays):
        total = _fold_arrays(arrays, np.add)  # MPI.SUM
        return total, self.function(total)


class _GatherThen:
    """The combine step of ``Allgatherv_apply``: function(parts), once every part is checked
    against the byte counts of the rank that combines."""

    __slots__ = ("counts", "function")

    def __init__(self, counts, function):
        self.counts, self.function = counts, function

    def __call__(self, parts):
        _check_part_sizes(parts, self.counts, "Allgatherv_apply")
        return self.function(parts)


class InProcessComm:
    """One rank's view of a communicator whose ranks are threads of this process."""

    def __init__(self, group: Group, rank: int):
        self._group = group
        self._rank = rank
        self._freed = False
        self._counts_checked = None  # the byte counts Allgatherv_apply checked last (ints)
        self._gather_then = self._sum_then = None  # the combine steps of the last *_apply calls

    # -- who ------------------------------------------------------------------------------------
    def Get_rank(self) -> int:
        return self._rank

    def Get_size(self) -> int:
        return self._group.size

    rank = property(Get_rank)
    size = property(Get_size)

    def _meet(self, contribution, combine, name):
        if self._freed:
            raise RuntimeError(f"in-process {name} on a freed communicator")
        return self._group.meet(self._rank, contribution, combine, name)

    # -- buffers -------------------------------------------------------------------------------
    def Allreduce(self, sendbuf, recvbuf, op=MPI.SUM) -> None:
        recv = _array(recvbuf, "Allreduce")
        send = recv if sendbuf is MPI.IN_PLACE else _array(sendbuf, "Allreduce")
        if send.shape != recv.shape:
            raise ValueError(f"in-process Allreduce: send {send.shape} and receive {recv.shape} differ")
        _ufunc(op)
        total = self._meet(send, lambda arrays: _reduce_arrays(arrays, op), "Allreduce")
        np.copyto(recv, total)

    def Reduce(self, sendbuf, recvbuf, op=MPI.SUM, root: int = 0) -> None:
        is_root = self._rank == root
        if sendbuf is MPI.IN_PLACE:
            if not is_root:
                raise ValueError("in-process Reduce: MPI.IN_PLACE is for the root only")
            send = _array(recvbuf, "Reduce")
        else:
            send = _array(sendbuf, "Reduce")
        _ufunc(op)
        total = self._meet(send, lambda arrays: _reduce_arrays(arrays, op), "Reduce")
        if is_root:
            np.copyto(_array(recvbuf, "Reduce"), total)

    def Bcast(self, buf, root: int = 0) -> None:
        array = _array(buf, "Bcast")
        value = self._meet(array if self._rank == root else None, lambda slots: slots[root].copy(), "Bcast")
        if self._rank != root:
            np.copyto(array, value)

    def Allgather(self, sendbuf, recvbuf) -> None:
        send = _bytes(_array(sendbuf, "Allgather"))
        recv = _bytes(_array(recvbuf, "Allgather"))
        gathered = self._meet(send, lambda parts: np.concatenate(parts), "Allgather")
        if gathered.size != recv.size:
            raise ValueError(f"in-process Allgather: {gathered.size} bytes gathered for a {recv.size}-byte buffer")
        recv[...] = gathered

    def Allgatherv(self, sendbuf, recvbuf) -> None:
        """``recvbuf`` = [array, counts, displacements, MPI.TYPE] (counts in units of the type)."""
        send = _bytes(_array(sendbuf, "Allgatherv"))
        if not (isinstance(recvbuf, (list, tuple)) and len(recvbuf) == 4):
            raise TypeError("in-process Allgatherv: recvbuf must be [array, counts, displacements, MPI.TYPE]")
        array, counts, displacements, datatype = recvbuf
        recv = _bytes(_array(array, "Allgatherv"))
        unit = _type_size(datatype)
        counts = self._byte_counts(send, [int(c) * unit for c in counts], "Allgatherv")
        parts = self._meet(send, lambda parts: [p.copy() for p in parts], "Allgatherv")
        _check_part_sizes(parts, counts, "Allgatherv")
        for part, count, start in zip(parts, counts, displacements):
            start = int(start) * unit
            recv[start:start + count] = part

    def _byte_counts(self, send, counts: list, name: str) -> list:
        """``counts`` (bytes per rank), checked against the ranks and this rank's ``send``."""
        if len(counts) != self.Get_size() or send.size != counts[self._rank]:
            raise ValueError(f"in-process {name}: rank {self._rank} sends {send.size} bytes, counts say "
                             f"{counts[self._rank] if self._rank < len(counts) else 'nothing'}")
        return counts

    # -- a collective and then a computation every rank would repeat on the same bytes -----------
    # Not in mpi4py's API: mpitrain.comm.payloads uses them when a communicator has them. Each
    # rank passes its own ``function``; all of them must return the same value for the same
    # input (a decoder, a weighted mean), because the one of the last rank to arrive runs, once,
    # and its result (one object) goes to every rank. With K ranks in one process this is the
    # collective followed by K identical computations, done once.
    def Allgatherv_apply(self, sendbuf, counts, function):
        """``function(parts)``, parts = every rank's ``sendbuf`` bytes in rank order (the send
        buffers themselves, read while their ranks wait: the function must not write to them);
        ``counts``: the byte count of every rank, checked as ``Allgatherv`` checks them."""
        if type(sendbuf) is np.ndarray and sendbuf.dtype == np.uint8 and sendbuf.ndim == 1 \
                and sendbuf.flags.c_contiguous:
            send = sendbuf  # a payload: what _bytes(_array(...)) would return
        else:
            send = _bytes(_array(sendbuf, "Allgatherv_apply"))
        checked = self._counts_checked
        if type(counts) is not list or counts != checked:  # else the same counts as last time
            checked = self._counts_checked = self._byte_counts(send, [int(c) for c in counts], "Allgatherv_apply")
        elif send.size != checked[self._rank]:
            self._byte_counts(send, checked, "Allgatherv_apply")  # raises
        if self._freed:
            raise RuntimeError("in-process Allgatherv_apply on a freed communicator")
        combine = self._gather_then
        if combine is None or combine.function != function or combine.counts is not checked:
            combine = self._gather_then = _GatherThen(checked, function)  # else last call's (every step)
        return self._group.meet(self._rank, send, combine, "Allgatherv_apply")

    def Allreduce_apply(self, buf, function):
        """``buf`` <- the sum over ranks in rank order (as ``Allreduce(MPI.IN_PLACE, buf)``), and
        ``function(total)`` (``total``: a new array holding that sum, shared by every rank)."""
        array = buf if type(buf) is np.ndarray else _array(buf, "Allreduce_apply")
        if self._freed:
            raise RuntimeError("in-process Allreduce_apply on a freed communicator")
        combine = self._sum_then
        if combine is None or combine.function != function:
            combine = self._sum_then = _SumThen(function)  # else last call's (every step)
        total, result = self._group.meet(self._rank, array, combine, "Allreduce_apply")
        array[...] = total  # (both of one shape and dtype: the checks of the sum saw to it)
        return result

    def Combine(self, contribution, function):
        """``function(contributions)``, run once by the last rank to arrive, ``contributions``
        being every rank's ``contribution`` in rank order; every rank returns its result (one
        object). Not an MPI call: K ranks of this process handing one computation all their
        parts, such as their kernels to step together in one C call
        (mpitrain._native.sgd_steps.SGDStepsGroup). Every rank passes the same ``function``."""
        if self._freed:
            raise RuntimeError("in-process Combine on a freed communicator")
        return self._group.meet(self._rank, contribution, function, "Combine")

    def Barrier(self) -> None:
        self._meet(None, lambda slots: None, "Barrier")

    barrier = Barrier

    # -- Python objects (pickled; every rank gets its own copy) -----------------------------------
    def allreduce(self, sendobj, op=MPI.SUM):
        blob = self._meet(pickle.dumps(sendobj), lambda blobs: _fold(blobs, op), "allreduce")
        return pickle.loads(blob)

    def allgather(self, sendobj) -> list:
        blobs = self._meet(pickle.dumps(sendobj), list, "allgather")
        return [pickle.loads(b) for b in blobs]

    def gather(self, sendobj, root: int = 0):
        blobs = self._meet(pickle.dumps(sendobj), list, "gather")
        return [pickle.loads(b) for b in blobs] if self._rank == root else None

    def bcast(self, obj, root: int = 0):
        blob = self._meet(pickle.dumps(obj) if self._rank == root else None, operator.itemgetter(root), "bcast")
        return pickle.loads(blob)

    # -- communicators ----------------------------------------------------------------------------
    def Split(self, color: int = 0, key: int = 0):
        """Ranks of equal ``color`` form a communicator, ordered by (key, rank); MPI.UNDEFINED gets
        MPI.COMM_NULL."""
        world = self._group.world
        members = self._group.members

        def split(pairs):
            groups = {}
            for rank, (c, k) in enumerate(pairs):
                if c != MPI.UNDEFINED:
                    groups.setdefault(c, []).append((k, rank))
            placed = [None] * len(pairs)
            for ranks in groups.values():
                ranks.sort()
                group = Group(world, [members[r] for _, r in ranks])
                for new, (_, r) in enumerate(ranks):
                    placed[r] = (group, new)
            return placed

        placed = self._meet((int(color), int(key)), split, "Split")[self._rank]
        return MPI.COMM_NULL if placed is None else InProcessComm(*placed)

    def Split_type(self, split_type, key: int = 0, info=None):
        """MPI.COMM_TYPE_SHARED: every thread shares this process's memory, so all ranks, ordered by key."""
        if split_type != MPI.COMM_TYPE_SHARED:
            raise NotImplementedError("in-process Split_type supports MPI.COMM_TYPE_SHARED only")
        return self.Split(0, key)

    def Dup(self):
        return self.Split(0, self._rank)

    def Free(self) -> None:
        self._freed = True

    def __repr__(self) -> str:
        return f"<InProcessComm rank {self._rank} of {self.Get_size()}>"


def _fold(blobs, op) -> bytes:
    """op(op(o_0, o_1), o_2)... over the unpickled objects in rank order, pickled."""
    objects = [pickle.loads(b) for b in blobs]
    total = objects[0]
    for obj in objects[1:]:
        total = op(total, obj)
    return pickle.dumps(total)


def communicators(size: int) -> list:
    """``size`` communicators, rank 0 .. size - 1, of one new in-process world (their collectives
    need the world's ranks driven as greenlets: ``run`` does this for you)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    group = Group(World(size), range(size))
    return [InProcessComm(group, rank) for rank in range(size)]


def run(size: int, function, timeout: float | None = None) -> list:
    """Call ``function(comm)`` once per rank, ``size`` ranks; return the results in rank order.

    The ranks are greenlets of one driver thread (:class:`World`): the caller's thread, or
    with a ``timeout`` a thread of its own. An exception in any rank aborts the others'
    collectives (they raise :class:`Aborted`) and is re-raised here, noted with its rank; so is
    a deadlock (every rank left waits in a collective nobody else will join). ``timeout``
    (seconds): abort and raise TimeoutError if the ranks have not all finished by then (a rank
    blocked outside the communicator is left to its daemon thread).
    """
    comms = communicators(size)
    world = comms[0]._group.world
    results = [None] * size
    errors = []  # (rank, exception) in the order they happened

    def body(rank):
        try:
            results[rank] = function(comms[rank])
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller
            errors.append((rank, exc))
            world.abort(f"rank {rank} raised {type(exc).__name__}: {exc}")
        finally:
            world.leave(rank)

    if size == 1:  # nothing to switch between
        body(0)
    elif timeout is None:
        world.drive(body)
    else:
        driver = threading.Thread(target=world.drive, args=(body,), name="inprocess-ranks", daemon=True)
        driver.start()
        driver.join(timeout)
        if driver.is_alive():
            world.abort(f"timed out after {timeout} s")
            raise TimeoutError(f"in-process run of {size} ranks did not finish within {timeout} s")
    if not errors and len(world.exited) < size:
        raise Aborted(f"in-process run of {size} ranks: run aborted: {world.reason}")
    if errors:
        real = [(r, e) for r, e in errors if not isinstance(e, Aborted)] or errors
        rank, exc = real[0]
        exc.add_note(f"(in-process rank {rank} of {size})")
        raise exc
    return results
