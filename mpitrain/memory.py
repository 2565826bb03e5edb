"""Resident memory of this process, in MB of 2^20 bytes: now, and the peak so far.

Used for the summary's ``peak_rss_mb_*`` (mpitrain.train) and by ``bench scale``.
"""
from __future__ import annotations

import os
import resource
import sys


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (``getrusage`` ``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
