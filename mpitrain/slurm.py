"""Checks of the Slurm environment a rank starts in, and the PMI that srun should offer it.

The trap :func:`check_world_size` catches: ``srun`` starting ranks with a PMI the MPI library
does not speak (or mpi4py built against another MPI than the site's), so that every process
starts as rank 0 of a world of 1 and trains alone, writing the same files as all the others.

The task count it compares with is ``MPITRAIN_NTASKS`` when set, else ``SLURM_NTASKS``: inside
an allocation MPICH's ``mpirun`` starts its proxy with ``srun -n 1``, so its ranks see
``SLURM_NTASKS=1``; the mpirun template exports the job's count under mpitrain's own name first.

:func:`srun_mpi` picks ``srun --mpi=...`` from ``MPI.Get_library_version()``; the srun templates
run ``python -m mpitrain.slurm srun-mpi`` on the compute node, where the job's modules are
loaded and ``--python`` is the interpreter the ranks will run.
"""
from __future__ import annotations

import os
import sys

from .runtime import JobError

#: set to 1 to run on purpose with another number of ranks than the allocation's tasks
IGNORE_VARIABLE = "MPITRAIN_IGNORE_SLURM_NTASKS"
#: the job's task count, exported by a batch script before a launcher that changes SLURM_NTASKS
NTASKS_VARIABLE = "MPITRAIN_NTASKS"
#: the start of ``MPI.Get_library_version()`` -> the ``srun --mpi`` plugin that MPI speaks
#: (MPICH and its derivatives: PMI-2; Open MPI 4 and 5: PMIx). Others: srun's default.
SRUN_MPI = {
    "MPICH": "pmi2",
    "MVAPICH": "pmi2",
    "Open MPI": "pmix",
}


def check_world_size(comm, environ=None) -> None:
    """Raise :class:`JobError` (on every rank alike) if the job's task count (``MPITRAIN_NTASKS``,
    else ``SLURM_NTASKS``) is set and differs from the MPI world size. Needs no communication, so
    it cannot hang."""
    environ = os.environ if environ is None else environ
    name = NTASKS_VARIABLE if environ.get(NTASKS_VARIABLE, "").strip() else "SLURM_NTASKS"
    expected = environ.get(name, "").strip()
    if not expected or environ.get(IGNORE_VARIABLE, "") not in ("", "0"):
        return
    size = comm.Get_size()
    try:
        ntasks = int(expected)
    except ValueError:
        raise JobError(f"{name}={expected!r} is not a number") from None
    if ntasks == size:
        return
    if size == 1:
        cause = ("every process started as rank 0 of a world of 1: the MPI library does not talk to the "
                 "launcher. With srun, pick the PMI your MPI was built for (srun --mpi=pmi2 for MPICH, "
                 "--mpi=pmix for Open MPI; `srun --mpi=list` shows them; job render --srun-mpi) or start with "
                 "the environment's mpirun; on a cluster, build mpi4py against the site MPI "
                 "(env MPICC=mpicc python -m pip install --no-binary=mpi4py mpi4py)")
    else:
        cause = "start as many ranks as the allocation has tasks (mpirun -n \"$SLURM_NTASKS\", or srun alone)"
    raise JobError(f"MPI world size is {size} but {name} is {ntasks}: {cause}. "
                   f"To run a different number of ranks on purpose, set {IGNORE_VARIABLE}=1")


def srun_mpi(library_version: str) -> str:
    """The ``srun --mpi`` value for the MPI named by ``library_version`` (the text of
    ``MPI.Get_library_version()``); "" when unknown (leave srun's default)."""
    text = library_version.lstrip()
    return next((plugin for prefix, plugin in SRUN_MPI.items() if text.startswith(prefix)), "")


def library_version() -> str:
    """``MPI.Get_library_version()`` of the MPI mpi4py loads, without initialising MPI."""
    import mpi4py

    mpi4py.rc.initialize = False
    from mpi4py import MPI

    return MPI.Get_library_version()


def main(argv=None) -> int:
    """``python -m mpitrain.slurm srun-mpi``: print the ``srun --mpi`` value for this Python's
    MPI, or an empty line when unknown (then the script leaves srun's default). Never fails: a
    wrong guess is caught by :func:`check_world_size` when the ranks start."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["srun-mpi"]:
        print("usage: python -m mpitrain.slurm srun-mpi", file=sys.stderr)
        return 2
    try:
        version = library_version()
    except Exception as exc:  # noqa: BLE001 - any failure means "unknown"
        print(f"mpitrain: cannot read the MPI library version ({exc}); srun keeps its default --mpi",
              file=sys.stderr)
        version = ""
    print(srun_mpi(version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
