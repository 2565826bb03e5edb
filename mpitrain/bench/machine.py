"""Where a bench ran, as every bench reports it: the command, the CPU, Python and the date."""
from __future__ import annotations

import os
import platform
import shlex
import time
from pathlib import Path


def cpu() -> dict:
    """The CPU's model name, whether it has AVX2 and AVX-512F (from /proc/cpuinfo), and how many
    logical CPUs the process sees."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {"cpu": model, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "logical_cpus": os.cpu_count()}


def cpu_model() -> str:
    return cpu()["cpu"]


def provenance(bench: str, argv) -> dict:
    """The header fields every bench's JSON starts with: the command that reproduces it, the date,
    the CPU (:func:`cpu`) and Python's version."""
    return {"command": shlex.join(["python", "-m", "mpitrain", "bench", bench, *argv]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), **cpu(), "python": platform.python_version()}


def print_provenance(head: dict) -> None:
    """The command and CPU lines under a bench table's title."""
    print(f"command: {head['command']}")
    print(f"cpu: {head['cpu']} ({head['logical_cpus']} logical CPUs); Python {head['python']}; {head['date']}")


def incomplete(run: dict) -> str | None:
    """The line for a K-rank job that did not complete (None if it did)."""
    if run["completed"]:
        return None
    return f"K = {run['ranks']}: not completed ({run['error']}) after {run['wall_seconds']:.1f} s"
