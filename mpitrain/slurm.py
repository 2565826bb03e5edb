"""Checks of the Slurm environment a rank starts in.

The trap this catches: ``srun`` starting ranks with a PMI the MPI library does not speak (or
mpi4py built against another MPI than the site's), so that every process starts as rank 0 of
a world of 1 and trains alone, writing the same files as all the others.
"""
from __future__ import annotations

import os

from .runtime import JobError

#: set to 1 to run on purpose with another number of ranks than the allocation's tasks
IGNORE_VARIABLE = "MPITRAIN_IGNORE_SLURM_NTASKS"


def check_world_size(comm, environ=None) -> None:
    """Raise :class:`JobError` (on every rank alike) if ``SLURM_NTASKS`` is set and differs from
    the MPI world size. Needs no communication, so it cannot hang."""
    environ = os.environ if environ is None else environ
    expected = environ.get("SLURM_NTASKS", "").strip()
    if not expected or environ.get(IGNORE_VARIABLE, "") not in ("", "0"):
        return
    size = comm.Get_size()
    try:
        ntasks = int(expected)
    except ValueError:
        raise JobError(f"SLURM_NTASKS={expected!r} is not a number") from None
    if ntasks == size:
        return
    if size == 1:
        cause = ("every process started as rank 0 of a world of 1: the MPI library does not talk to the "
                 "launcher. With srun, pick the PMI your MPI was built for (srun --mpi=pmix or --mpi=pmi2; "
                 "`srun --mpi=list` shows them) or start with the site's mpirun; and build mpi4py against the "
                 "site MPI (env MPICC=mpicc python -m pip install --no-binary=mpi4py mpi4py), not the mpich wheel")
    else:
        cause = "start as many ranks as the allocation has tasks (mpirun -n \"$SLURM_NTASKS\", or srun alone)"
    raise JobError(f"MPI world size is {size} but SLURM_NTASKS is {ntasks}: {cause}. "
                   f"To run a different number of ranks on purpose, set {IGNORE_VARIABLE}=1")
