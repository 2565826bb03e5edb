"""A barrier that waits without spinning, for ranks that idle while another rank works.

MPICH's blocking calls (``Barrier``, ``gather``, ...) busy-poll the progress engine. When
ranks are oversubscribed (64 ranks on 2 cores), ranks waiting that way take the CPU from
the rank that still works: rank 0's delays plot, 1.3 s alone, took 33.6 s while 63 ranks
waited for it in a blocking ``gather`` (``bench scale ranks --ranks 64``, async_sgd).
:func:`quiet_barrier` waits on an ``Ibarrier`` with ``Test`` and sleeps in between, so a
waiting rank uses almost no CPU. ``Test`` still drives MPI progress, so RMA aimed at the
waiting rank (passive target, docs/papers.md s.3) keeps being served.
"""
import time

FIRST_SLEEP = 1e-4   # seconds; doubled after each unsuccessful test ...
LONGEST_SLEEP = 5e-3  # ... up to this, the extra latency a waiting rank adds at most


def quiet_barrier(comm, first_sleep=FIRST_SLEEP, longest_sleep=LONGEST_SLEEP) -> None:
    """Collective: return once every rank of ``comm`` has called it; sleep while waiting."""
    if first_sleep <= 0 or longest_sleep < first_sleep:
        raise ValueError(f"need 0 < first_sleep <= longest_sleep, got {first_sleep}, {longest_sleep}")
    request = comm.Ibarrier()
    pause = first_sleep
    while not request.Test():
        time.sleep(pause)
        pause = min(2 * pause, longest_sleep)
