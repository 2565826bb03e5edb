"""Where the parameter store's vector lives: a table of shards, one per hosting rank.

A layout maps ``(size, d, root)`` to a tuple of :class:`Shard` (which rank hosts which
contiguous slice) and says whether ``root`` is a worker. ``LAYOUTS`` maps the names that
configs use to these functions.

- ``"sharded"``: x is split into ``size`` near-equal contiguous slices, one per rank; every
  rank is a worker. The busiest rank receives about ``d / size`` numbers per push, so the
  bandwidth into any one rank does not grow with the number of workers.
- ``"server"``: rank ``root`` hosts all of x and does not push or pull; it only serves
  (its ``free()`` call blocks inside MPI, which drives progress for every RMA call that
  targets it). It receives ``d`` numbers per push from every worker: simple, and a
  bottleneck once ``K * d`` per step outgrows one rank's memory bandwidth.
"""
from typing import NamedTuple


class Shard(NamedTuple):
    rank: int     # rank that hosts this slice in its window
    start: int    # first index of the slice in x
    count: int    # number of entries in the slice


def shard_all(size, d, root):
    """Split range(d) over all ``size`` ranks (the first ``d % size`` get one more)."""
    base, extra = divmod(d, size)
    shards, start = [], 0
    for rank in range(size):
        count = base + (1 if rank < extra else 0)
        shards.append(Shard(rank, start, count))
        start += count
    return tuple(shards)


def shard_server(size, d, root):
    """All of range(d) on ``root``."""
    return (Shard(root, 0, d),)


LAYOUTS = {
    "sharded": (shard_all, True),     # (shard function, root is a worker)
    "server": (shard_server, False),
}
