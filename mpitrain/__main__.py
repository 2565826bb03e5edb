"""``python -m mpitrain``: an uncaught exception on any rank aborts the whole MPI job."""
import sys

from . import early
from .runtime import install_abort_hook


def run():
    if sys.argv[1:2] == ["train"]:
        early.catch()  # before MPI starts: Slurm may signal a job that is still starting
    install_abort_hook()
    from .cli import main

    sys.exit(main())


if __name__ == "__main__":
    run()
