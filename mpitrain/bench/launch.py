"""Start a benchmark's MPI worker job and collect its JSON result, never hanging.

``bench scale`` and ``bench steps`` both run ``mpiexec -n K python -m <worker> --out FILE ...``
from a single-process command: the job gets its own session (so a timeout kills mpiexec and every
rank), ``OMP_NUM_THREADS=1`` (ranks share the cores), and rank 0 writes one JSON object to FILE.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess


def run_worker(cmd: list, out, timeout: float) -> tuple:
    """Run ``cmd`` for at most ``timeout`` seconds; returns (returncode or None on a timeout,
    the last stderr line or the timeout as an error or None, the JSON rank 0 wrote or {})."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
        code = proc.returncode
        error = stderr.strip().splitlines()[-1:] if code else []
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # mpiexec and every rank: they share its session
        proc.communicate()
        code, error = None, [f"killed after {timeout:.0f} s"]
    result = json.loads(out.read_text()) if code == 0 and out.exists() else {}
    return code, (error[0] if error else None), result
