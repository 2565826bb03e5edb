"""``python -m mpitrain``: an uncaught exception on any rank aborts the whole MPI job."""
import gc
import os
import signal
import sys

from . import early
from .runtime import install_abort_hook


def run():
    if sys.argv[1:2] == ["train"]:
        early.catch()  # before MPI starts: Slurm may signal a job that is still starting
    install_abort_hook()
    try:
        from .cli import main

        code = main()
    except KeyboardInterrupt:
        # A Ctrl-C that no command caught: it came while the package was still importing (the
        # commands print their own line). One line and SIGINT's exit code, no MPI_Finalize, as
        # the commands do (mpitrain.cli).
        print("mpitrain: interrupted (SIGINT)", file=sys.stderr, flush=True)
        os._exit(128 + signal.SIGINT)
    # At exit CPython collects the cyclic garbage among every object still alive: 0.08 s once
    # numpy, scipy and matplotlib are loaded, after a command's work is done. Frozen objects
    # are skipped. Everything an exit must do is done by then or still runs: the results are
    # written and closed, and atexit handlers (MPI_Finalize) run as before.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
