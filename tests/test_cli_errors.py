"""Bad arguments to the tools (plot, compare, bench, experiment, train's own flags): one line on
stderr, exit 2, never a traceback; under mpiexec only rank 0 speaks."""
import os
import signal
import subprocess
import sys
import time

import pytest

from mpi_run import mpi_env, run_mpi

CASES = [
    (["plot", "no-such.jsonl", "-o", "x.png"], "mpitrain: error: no-such.jsonl: No such file or directory"),
    (["plot", "{bad}", "-o", "x.png"], "mpitrain: error: {bad}:1: not a JSON record"),
    (["compare", "no-such.jsonl", "-o", "x.png"], "mpitrain: error: no-such.jsonl: No such file or directory"),
    (["bench", "compress", "--repeat", "x"], "mpitrain bench compress: error: argument --repeat: invalid int value"),
    (["bench", "allreduce", "--sizes", "abc"],
     "bench allreduce: error: argument --sizes: expected a comma-separated list of integers >= 1, got 'abc'"),
    (["bench", "rma", "--sizes", "0"], "bench rma: error: argument --sizes: expected a comma-separated list"),
    (["bench", "nope"], "mpitrain: error: unknown benchmark 'nope'; known: allreduce"),
    (["experiment", "local-sgd-speedup", "--workers", "1,x"],
     "experiment local-sgd-speedup: error: argument --workers: expected a comma-separated list of integers >= 1"),
    (["experiment", "compression-bits", "--tune-grid", "1,-2"],
     "experiment compression-bits: error: argument --tune-grid: expected a comma-separated list of numbers > 0"),
    (["experiment", "compression-bits", "--dataset", "nosuch"],
     "mpitrain: error: experiment compression-bits: 'nosuch' is neither a file nor a known data set"),
    (["experiment", "local-sgd-speedup", "--dataset", "{bad}"],
     "mpitrain: error: experiment local-sgd-speedup: {bad}:1:"),
    (["train", "--bogus"], "python -m mpitrain: error: unrecognized arguments: --bogus"),
    (["train", "--resume", "auto", "--overwrite"], "mpitrain: error: --resume and --overwrite exclude each other"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(CASES)])
def test_bad_tool_arguments_are_one_line_and_exit_2(tmp_path, args, message):
    args = [str(tmp_path / "bad.jsonl") if a == "{bad}" else a for a in args]
    (tmp_path / "bad.jsonl").write_text("{bad\n")
    message = message.replace("{bad}", str(tmp_path / "bad.jsonl"))
    proc = subprocess.run([sys.executable, "-m", "mpitrain", *args], capture_output=True, text=True, timeout=120,
                          env=mpi_env(), cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert message in lines[0]


def test_a_bad_bench_argument_under_mpiexec_is_said_once():
    result = run_mpi(2, ["-m", "mpitrain", "bench", "allreduce", "--sizes", "1e3,x"], timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1 and "expected a comma-separated list" in lines[0], result.stderr


@pytest.mark.skipif(not os.path.exists(os.path.join(mpi_env()["MPITRAIN_DATA"], "w8a")), reason="w8a not available")
def test_ctrl_c_during_an_experiment_is_one_line_exit_130_and_no_results(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while compression-bits runs
    on two processes: one line, exit 130, no traceback, nothing in --out, no process left."""
    out = tmp_path / "out"
    # SIGINT at its default, as in a terminal: a test run started in the background by a shell
    # without job control (``make test &`` in a script) inherits it ignored, and then so would
    # the experiment, which rightly leaves an ignored SIGINT ignored
    proc = subprocess.Popen([sys.executable, "-m", "mpitrain", "experiment", "compression-bits", "--quick",
                             "--jobs", "2", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=mpi_env(), cwd=tmp_path, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:  # the first finished run: the pool's children are at work
            if "[1/" in line:
                break
        else:
            pytest.fail(f"no progress line; exit {proc.wait()}: {proc.stderr.read()}")
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    ours = [line for line in err.splitlines() if line.startswith("mpitrain") and "warning" not in line]
    assert ours == ["mpitrain: experiment compression-bits: interrupted (SIGINT); the result files it had written "
                    "are whole (each is written atomically), the others were not written"], err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not out.exists() or not any(out.iterdir())
    deadline = time.monotonic() + 10  # the pool's children ended with it (zombies, not yet reaped, count as ended)
    while live_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not live_members(proc.pid)


def live_members(group: int) -> list:
    """Processes of process group ``group`` that have not exited (from /proc; [] elsewhere)."""
    live = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        except (OSError, IndexError, ValueError):
            continue
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            live.append(int(entry))
    return live
