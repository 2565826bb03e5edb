"""An experiment's output folder: claimed before the work, written file by file atomically.

A run of an experiment takes minutes to hours; another run's tables must not be overwritten by
it silently, and a run must not find out at the end that it may not write. So :func:`refusal`
is asked first: a folder that already holds any of the experiment's result files is refused
(one line naming the folder and the files) unless the user passed ``--overwrite``. Every file
is then written whole or not at all (mpitrain.atomic; plots through mpitrain.plot.save_figure).
"""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser, default_out: str) -> None:
    """``--out`` and ``--overwrite``, the same for every experiment."""
    parser.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in --out (refused without it)")


def refusal(out, results, overwrite: bool) -> str | None:
    """None if ``out`` may receive the experiment's result files (``results``: names or glob
    patterns inside it); else the one line that says why not. Creates ``out`` when allowed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file, not a folder"
    found = sorted({path.name for pattern in results for path in out.glob(pattern)}) if out.is_dir() else []
    if found and not overwrite:
        return (f"{out} holds the results of an earlier run ({', '.join(found)}); pass --overwrite to replace "
                f"them, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return None
