"""``python -m mpitrain``: an uncaught exception on any rank aborts the whole MPI job."""
import sys

from .runtime import install_abort_hook


def run():
    install_abort_hook()
    from .cli import main

    sys.exit(main())


if __name__ == "__main__":
    run()
