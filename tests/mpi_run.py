"""Run a Python snippet or ``python -m mpitrain`` under ``mpiexec`` as a subprocess, with a timeout.

A test that could hang fails instead: the whole process group is killed when the
timeout expires. Ranks are oversubscribed on small machines, so OMP_NUM_THREADS=1.
"""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mpiexec_path():
    """The mpiexec beside the running Python (the venv's mpich wheel), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    found = shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("mpiexec not found: install the mpich wheel (make test does) or a site MPI")
    return found


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self):
        return self.stdout + self.stderr


def mpi_env(extra=None):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPITRAIN_DATA", str(ROOT.parent / "shared" / "data"))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if extra:
        env.update(extra)
    return env


def run_mpi(nprocs, args, timeout=120, env=None, cwd=None):
    """Run ``mpiexec -n nprocs python <args>``; return a Completed; raise on timeout.

    ``args`` is a list of arguments after ``python`` (e.g. ``["-m", "mpitrain", "train", ...]``).
    """
    cmd = [mpiexec_path(), "-n", str(nprocs), sys.executable, *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=mpi_env(env), cwd=cwd or ROOT, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"mpiexec -n {nprocs} {' '.join(args)} did not finish within {timeout}s\n"
            f"stdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}"
        )
    return Completed(proc.returncode, out, err)


def run_mpi_script(nprocs, source, tmp_path, timeout=120, env=None, name="script.py"):
    """Write ``source`` (dedented) to tmp_path/name and run it under mpiexec with mpi4py's
    ``-m mpi4py`` runner, so that an exception on any rank aborts the whole job."""
    script = Path(tmp_path) / name
    script.write_text(textwrap.dedent(source))
    return run_mpi(nprocs, ["-m", "mpi4py", str(script)], timeout=timeout, env=env)


def run_command(args, timeout, env=None):
    """``python -m mpitrain ARGS`` for a command that starts mpiexec itself (a bench), in a session
    of its own so that a timeout kills it and every rank; (returncode, stdout, stderr); raises
    AssertionError on the timeout."""
    proc = subprocess.Popen([sys.executable, "-m", "mpitrain", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=mpi_env(env), cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"python -m mpitrain {' '.join(args)} did not finish within {timeout} s") from None
    return proc.returncode, out, err
