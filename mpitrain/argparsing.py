"""Command-line parsing that reports a bad argument in one line.

argparse prints the whole usage and then the error; under ``mpiexec -n 64`` every rank does.
:class:`ArgumentParser` prints ``<prog>: error: <message> (see --help)`` once (rank 0 when MPI
is running) and exits with 2, like argparse. :func:`user_error` is the same for errors found
after parsing (a bad value inside a list, a file that cannot be read).
"""
from __future__ import annotations

import argparse
import sys


def speaks() -> bool:
    """True on rank 0 of a running MPI job, and in a process without MPI."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return True
    return mpi.COMM_WORLD.Get_rank() == 0


def user_error(message: str) -> int:
    """Print ``mpitrain: error: message`` once; returns the exit code 2."""
    if speaks():
        print(f"mpitrain: error: {message}", file=sys.stderr, flush=True)
    return 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are one line, and whose ``epilog`` may be a function
    that makes the text when help is printed (a list that needs heavy imports costs nothing
    to the commands that never print it)."""

    def format_help(self):
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()

    def error(self, message):
        if speaks():
            print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr, flush=True)
        sys.exit(2)


def _list_of(convert, what: str):
    def parse(text: str) -> list:
        items = [item.strip() for item in str(text).split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}")
        try:
            return [convert(item) for item in items]
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}") from None

    parse.__name__ = what  # argparse names the type in its message
    return parse


def _size(text: str) -> int:
    value = float(text)
    if not value.is_integer() or value < 1:
        raise ValueError(text)
    return int(value)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(text)
    return value


#: "1e3,1e4" -> [1000, 10000]: sizes and counts (integers >= 1, exponent notation allowed)
size_list = _list_of(_size, "integers >= 1")
#: "0.1,0.5" -> [0.1, 0.5]: positive finite numbers
positive_float_list = _list_of(_positive_float, "numbers > 0")


def seconds(text: str) -> float:
    """An argparse type: a number of seconds > 0 (finite)."""
    try:
        return _positive_float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (exponent notation allowed, as in ``size_list``)."""
    try:
        return _size(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
