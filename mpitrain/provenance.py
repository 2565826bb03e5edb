"""Where a run's numbers came from: software versions, hosts, when, and where the time went.

:func:`provenance` is collective (one allgather of host names); rank 0 puts the result in
``summary.json``. The git commit is that of the checkout the package was imported from, when
it is one (an installed wheel has none); ``git_dirty`` says whether it had uncommitted changes.
"""
from __future__ import annotations

import platform
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from mpi4py import MPI

from . import __version__

PACKAGE_DIR = Path(__file__).resolve().parent


def git_state() -> dict:
    """{'git_commit': sha or None, 'git_dirty': bool or None} of the package's checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def provenance(comm) -> dict:
    """Versions, hosts and ranks per host (collective)."""
    hosts = comm.allgather(socket.gethostname())
    per_host = Counter(hosts)
    return {
        "mpitrain_version": __version__,
        **(git_state() if comm.Get_rank() == 0 else {}),
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "mpi4py_version": sys.modules["mpi4py"].__version__,
        "mpi_library": MPI.Get_library_version().strip().splitlines()[0],
        "hosts": sorted(per_host),
        "ranks_per_host": dict(sorted(per_host.items())),
    }
