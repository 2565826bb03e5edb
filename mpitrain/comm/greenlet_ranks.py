"""K ranks as greenlets of one thread: who runs (:class:`World`) and where they meet (:class:`Group`).

The engine under the in-process communicator (mpitrain.comm.inprocess, which has the
mpi4py-style calls and ``run``). Every rank is a greenlet of one driver thread; the driver's
own greenlet, the hub, runs the ready ranks one at a time in the order they became ready. A
rank runs until it returns or waits in a collective; the last rank to arrive at a collective
combines what every rank brought, once, and makes the others ready again. So only one rank
runs at a time, a collective is a few greenlet switches, and the order of everything is fixed
by the program alone. A rank that raises, returns while others wait for it, or leaves every
other rank waiting in collectives nobody will join (a deadlock) aborts the run: the ranks
waiting then raise :class:`Aborted` instead of waiting forever.
"""
from __future__ import annotations

import collections
import functools
import threading

import greenlet


class Aborted(RuntimeError):
    """A collective could not complete: another rank raised, or left the run without joining it."""


class World:
    """What the ranks of one ``run`` share: their greenlets, the ranks ready to run, their
    communicators' groups and the abort state.

    Every rank is a greenlet of one driver thread, and the driver's own greenlet, the hub
    (:meth:`drive`), runs the ready ranks one at a time, in the order they became ready. A rank
    runs until it returns or waits in a collective; the last rank to arrive at a collective
    makes the others ready again. So only one rank runs at any time, a collective costs a few
    greenlet switches (no thread wake-ups, no interpreter-lock hand-offs), and the order of
    everything is fixed by the program alone.
    """

    def __init__(self, size: int):
        self.size = size
        self.lock = threading.Lock()  # abort can come from the caller's thread (a timeout)
        self.groups = []  # every Group created in this run
        self.reason = None  # why the run was aborted (None: it was not)
        self.exited = set()  # world ranks whose function has returned
        self.ready = collections.deque()  # world ranks to switch to, in order
        self.greenlets = []  # one per world rank, children of the hub
        self.hub = None  # the greenlet that switches between the ranks

    def abort(self, reason: str) -> None:
        with self.lock:
            if self.reason is None:
                self.reason = reason
            groups = list(self.groups)
        for group in groups:
            group.wake_all()

    def leave(self, rank: int) -> None:
        """World rank ``rank`` returned: any collective that waits for it can never complete."""
        with self.lock:
            self.exited.add(rank)
            groups = [g for g in self.groups if rank in g.members]
        if any(group.waiting for group in groups):
            self.abort(f"rank {rank} returned while other ranks wait for it in a collective")

    def drive(self, body) -> None:
        """Run ``body(rank)`` for every rank, each in a greenlet of this thread, to the end."""
        self.hub = greenlet.getcurrent()
        self.greenlets = [greenlet.greenlet(functools.partial(body, rank)) for rank in range(self.size)]
        self.ready.extend(range(self.size))
        while len(self.exited) < self.size:
            if not self.ready:  # every rank left waits in a collective that nobody else can join
                waiting = sorted(r for r in range(self.size) if r not in self.exited)
                self.abort(f"deadlock: ranks {waiting} wait in collectives that no other rank will join")
                if not self.ready:  # parked outside any collective (a switch of its own): never spin
                    return
                continue
            self.greenlets[self.ready.popleft()].switch()

    def wait(self) -> None:
        """Park the calling rank until another makes it ready. The next ready rank runs at
        once, by a switch straight to it (the rank the hub would run next; a collective of K
        ranks is then K switches, not 2 K through the hub); with none ready, the hub decides
        (a rank that returned, or a deadlock)."""
        ready = self.ready
        if ready:
            self.greenlets[ready.popleft()].switch()
        else:
            self.hub.switch()


class Group:
    """The ranks of one communicator and their rendezvous (a generation-counting barrier)."""

    def __init__(self, world: World, members):
        self.world = world
        self.members = tuple(members)  # world rank of each rank of this communicator
        self.size = len(self.members)
        self.waiting = set()  # ranks parked in the current generation
        self.generation = 0
        self.slots = [None] * self.size  # what each rank brought to the current collective
        self.results = [None, None]  # result of generation g at g % 2 (read after release)
        with world.lock:
            world.groups.append(self)

    def wake_all(self) -> None:
        """Make every parked rank ready, in rank order (a collective completed, or the run was
        aborted: they find out on waking)."""
        with self.world.lock:
            waiting, self.waiting = self.waiting, set()
            self.world.ready.extend([self.members[rank] for rank in sorted(waiting)])

    def _refusal(self, name: str):
        """None if a collective called ``name`` can start now, else (reason to abort the run with,
        or None when it is aborted already; the message to raise). Asked only once the run
        was aborted or a rank has returned (:meth:`meet`; every step, it is neither)."""
        world = self.world
        if world.reason is not None:
            return None, f"in-process {name}: run aborted: {world.reason}"
        gone = [r for r in self.members if r in world.exited]
        if gone:
            reason = f"rank {gone[0]} returned; it cannot join {name}"
            return reason, f"in-process {name}: {reason}"
        return None

    def meet(self, rank: int, contribution, combine, name: str):
        """Every rank brings ``contribution``; the last to arrive runs ``combine(contributions)``
        (a list in rank order) while the others wait; every rank returns its result."""
        world = self.world
        refusal = self._refusal(name) if world.reason is not None or world.exited else None
        if refusal is None:
            generation = self.generation
            self.slots[rank] = contribution
            if len(self.waiting) == self.size - 1:  # the last to arrive
                slots, self.slots = self.slots, [None] * self.size
                try:
                    result = combine(slots)
                except BaseException as exc:  # noqa: BLE001 -- aborts the run, then re-raised
                    self.world.abort(f"rank {self.members[rank]} failed in {name}: {type(exc).__name__}: {exc}")
                    raise
                self.results[generation % 2] = result
                self.generation += 1
                self.wake_all()
                return result
            self.waiting.add(rank)
            self.world.wait()  # until the last rank (or an abort) makes this one ready
            if self.generation != generation:  # the generation completed: its result is ours
                return self.results[generation % 2]
            refusal = None, f"in-process {name}: run aborted: {self.world.reason}"
        reason, message = refusal
        if reason is not None:
            self.world.abort(reason)
        raise Aborted(message)
