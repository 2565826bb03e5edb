"""No result is lost or mixed up, under ``mpiexec -n 2``: a folder is one run's (locked, not
reused silently), Ctrl-C checkpoints and exits 130, a failed write is one line that keeps a valid
metrics file, the folder is checked before any long work, rank 0's output is kept in the folder,
the summary says where the numbers came from, and a stopped rank is named."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mpi_run import ROOT, mpi_env, mpiexec_path, run_mpi

SMALL = ["data.n_samples=2000", "data.n_features=50", "train.batch_size=8", "step_size.value=0.5",
         "run.log_every=20", "run.progress=false", "run.reference=false"]
WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}
LONG = ["train.steps=100000000", "run.log_every=2000"]  # runs until signalled


def train_args(out, *overrides, flags=()):
    return ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}",
            *[arg for o in (*SMALL, *overrides) for arg in ("--set", o)], *flags]


def start(nprocs, args, **popen):
    return subprocess.Popen([mpiexec_path(), "-n", str(nprocs), sys.executable, *args], env=popen.pop("env", mpi_env()),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **popen)


def finish(proc, timeout=60):
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return out, err


def wait_for(predicate, proc, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"never saw {what}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
        time.sleep(0.05)


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without_wall_time(recs):
    return [{k: v for k, v in r.items() if k not in WALL_TIME} for r in recs]


def one_error(result, code=2) -> str:
    assert result.returncode == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_a_second_run_in_a_running_runs_folder_is_refused_and_the_first_is_intact(tmp_path):
    out = tmp_path / "run"
    first = start(2, train_args(out, *LONG))
    try:
        wait_for(lambda: (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").stat().st_size > 0,
                 first, "the first run's metrics")
        second = run_mpi(2, train_args(out, "train.steps=60", "train.seed=5"), timeout=60)
        line = one_error(second)
        assert f"run.output_dir {out} is in use by another run (host " in line and "pid " in line
        first.send_signal(signal.SIGTERM)
        finish(first)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 75
    recs = records(out)  # valid JSONL, one run's records in order
    assert [r["step"] for r in recs] == sorted(r["step"] for r in recs)
    assert not (out / ".lock").exists()


def test_reusing_a_finished_runs_folder_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    assert run_mpi(2, train_args(out, "train.steps=60"), timeout=60).returncode == 0
    before = (out / "metrics.jsonl").read_text()

    other = run_mpi(2, train_args(out, "train.steps=60", "step_size.value=0.25"), timeout=60)
    assert "already holds the results of a run" in one_error(other)
    assert "--overwrite" in other.stderr
    # --resume auto without a checkpoint must not splice a second run onto the first
    again = run_mpi(2, train_args(out, "train.steps=60", flags=["--resume", "auto"]), timeout=60)
    assert "holds a finished run and no checkpoint" in one_error(again)
    assert (out / "metrics.jsonl").read_text() == before

    replaced = run_mpi(2, train_args(out, "train.steps=40", "step_size.value=0.25", flags=["--overwrite"]), timeout=60)
    assert replaced.returncode == 0, replaced.output
    assert "removed the previous results" in replaced.stderr
    assert [r["step"] for r in records(out)] == [0, 20, 40]
    assert json.loads((out / "run.json").read_text())["config"]["step_size"]["value"] == 0.25


def test_default_folders_of_runs_that_differ_only_by_seed_do_not_collide(tmp_path):
    args = ["-m", "mpitrain", "train", *[a for o in (*SMALL, "train.steps=20") for a in ("--set", o)]]
    for seed in (0, 1):
        result = run_mpi(2, [*args, "--set", f"train.seed={seed}"], timeout=60, cwd=tmp_path)
        assert result.returncode == 0, result.output
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(f.startswith("sync_sgd-synthetic-classification-K2-") for f in folders)


def test_ctrl_c_checkpoints_exits_130_and_resumes_to_the_unbroken_metrics(tmp_path):
    steps = ["train.steps=400", "run.log_every=40"]
    full = run_mpi(2, train_args(tmp_path / "full", *steps), timeout=60)
    assert full.returncode == 0, full.output

    out = tmp_path / "stopped"
    env = mpi_env({"MPITRAIN_FAULT": "sleep:1:0", "MPITRAIN_FAULT_SECONDS": "0.02"})  # slow enough to signal
    proc = start(2, train_args(out, *steps), env=env)
    wait_for(lambda: (out / "metrics.jsonl").exists() and '"step": 40' in (out / "metrics.jsonl").read_text(),
             proc, "step 40")
    proc.send_signal(signal.SIGINT)  # what Ctrl-C does: mpiexec passes it to every rank
    _, err = finish(proc)
    assert proc.returncode == 130, err
    ours = [line for line in err.splitlines() if line.startswith("mpitrain") and "warning: rank 1 is" not in line]
    assert len(ours) == 1 and ours[0].startswith("mpitrain: stopped by SIGINT after step"), err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    stopped_at = json.loads((out / "checkpoints" / "latest").read_text())["step"]
    assert 40 <= stopped_at < 400

    resumed = run_mpi(2, train_args(out, *steps, flags=["--resume", "auto"]), timeout=60)
    assert resumed.returncode == 0, resumed.output
    assert without_wall_time(records(out)) == without_wall_time(records(tmp_path / "full"))
    log = (out / "train.log").read_text()
    assert "stopped by SIGINT" in log and "mpitrain: sync_sgd on" in log  # both attempts, appended


def test_ctrl_c_during_set_up_is_one_line_and_exit_130_and_frees_the_folder(tmp_path):
    out = tmp_path / "setup"
    # about 9 s of set-up here (a 1e6-sample data set and its f* solve, cache empty)
    proc = start(2, train_args(out, "data.n_samples=1000000", "run.reference=true", "train.steps=10"),
                 env=mpi_env({"MPITRAIN_CACHE": str(tmp_path / "cache")}))
    wait_for(lambda: (out / ".lock").exists(), proc, "the folder being claimed")
    time.sleep(1.0)
    assert not (out / "run.json").exists(), "set-up ended before the signal: the test needs a longer one"
    proc.send_signal(signal.SIGINT)
    _, err = finish(proc)
    assert proc.returncode == 130, err
    ours = [line for line in err.splitlines() if line.startswith("mpitrain")]
    assert ours == ["mpitrain: interrupted (SIGINT) before training started; nothing new was written"], err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not (out / ".lock").exists()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the rank's pid through /proc")
def test_ctrl_c_that_reaches_only_rank_1_during_set_up_stops_at_the_first_step_with_a_checkpoint(tmp_path):
    # Rank 0 acts on a set-up Ctrl-C; the others only remember it, so none leaves a collective
    # rank 0 is in (it then hung there). A SIGINT rank 0 never got stops the run at step 1.
    out = tmp_path / "rank1"
    steps = ["data.n_samples=2000000", "train.steps=30", "run.log_every=10"]
    proc = start(2, train_args(out, *steps))  # about 5 s of data generation here
    wait_for(lambda: (out / ".lock").exists(), proc, "the folder being claimed")
    wait_for(lambda: rank_pid(str(out), 1) is not None, proc, "rank 1's process")
    pid = rank_pid(str(out), 1)
    assert not (out / "run.json").exists(), "set-up ended before the signal: the test needs a longer one"
    os.kill(pid, signal.SIGINT)
    _, err = finish(proc, timeout=120)
    assert proc.returncode == 130, err
    ours = [line for line in err.splitlines() if line.startswith("mpitrain")]
    assert len(ours) == 1 and ours[0].startswith("mpitrain: stopped by SIGINT after step 1 of 30"), err
    assert json.loads((out / "checkpoints" / "latest").read_text())["step"] == 1


def test_a_rank_whose_set_up_ctrl_c_rank_0_never_acts_on_ends_the_job_itself(tmp_path):
    # rank 0 never sees the signal and waits in a collective: rank 1 gives up after its grace
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent("""
        import os, signal, time
        from mpi4py import MPI
        from mpitrain.stopping import StopRequest
        comm = MPI.COMM_WORLD
        stop = StopRequest(comm).install_for_set_up(grace=1.0)
        if comm.Get_rank() == 1:
            os.kill(os.getpid(), signal.SIGINT)   # remembered, not raised: rank 1 goes on
            time.sleep(0.2)
            assert stop.received == signal.SIGINT
            time.sleep(600)                        # never joins rank 0's barrier
        comm.Barrier()
    """))
    started = time.monotonic()
    proc = run_mpi(2, [str(script)], timeout=120)
    assert proc.returncode == 130, proc.output
    assert time.monotonic() - started < 60
    ours = [line for line in proc.stderr.splitlines() if line.startswith("mpitrain")]
    assert ours == ["mpitrain: interrupted (SIGINT) before training started; nothing new was written "
                    "(rank 1; rank 0 did not end the job)"], proc.output


def test_slurms_early_sigusr1_during_set_up_stops_at_the_first_step_with_a_checkpoint(tmp_path):
    out = tmp_path / "early"
    steps = ["data.n_samples=2000000", "train.steps=30", "run.log_every=10"]
    proc = start(2, train_args(out, *steps))  # about 5 s of data generation here
    wait_for(lambda: (out / ".lock").exists(), proc, "the folder being claimed")
    time.sleep(0.5)
    assert not (out / "run.json").exists(), "set-up ended before the signal: the test needs a longer one"
    proc.send_signal(signal.SIGUSR1)  # mpiexec passes it on to every rank
    _, err = finish(proc, timeout=120)
    assert proc.returncode == 75, err
    assert "mpitrain: stopped by SIGUSR1 after step 1 of 30" in err, err
    resumed = run_mpi(2, train_args(out, *steps, flags=["--resume", "auto"]), timeout=120)
    assert resumed.returncode == 0, resumed.output
    assert [r["step"] for r in records(out)] == [0, 10, 20, 30]


def test_a_second_ctrl_c_ends_the_process_at_once(tmp_path):
    script = tmp_path / "twice.py"
    script.write_text(textwrap.dedent("""
        import os, signal, time
        from mpi4py import MPI
        from mpitrain.stopping import StopRequest
        stop = StopRequest(MPI.COMM_WORLD).install()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        assert stop.received == signal.SIGINT, stop.received
        print("first handled", flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        print("still alive", flush=True)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          env=mpi_env())
    assert "first handled" in proc.stdout and "still alive" not in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == -signal.SIGINT


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 75)], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_checkpoints_an_asynchronous_run(tmp_path, signum, code):
    out = tmp_path / "async"
    proc = start(2, train_args(out, "train.algorithm=async_sgd", "async_sgd.max_seconds=60", "train.steps=100000000",
                               "run.log_every=1000"))
    wait_for(lambda: (out / "run.json").exists(), proc, "the run starting")
    time.sleep(1.0)
    proc.send_signal(signum)
    _, err = finish(proc)
    assert proc.returncode == code, err  # 75: a requeued job resumes it
    assert f"stopped by {signal.Signals(signum).name} after step" in err and "checkpoint written to" in err, err
    assert (out / "checkpoints" / "latest").exists() and not (out / "summary.json").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (root only; skipped where mounting is not allowed): a disk that fills up."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_one_line_naming_the_file_and_the_metrics_stay_valid(small_disk):
    out = small_disk / "run"
    result = run_mpi(2, train_args(out, "train.steps=4000", "run.log_every=10", "run.save_parameters=false"),
                     timeout=60)
    line = one_error(result)
    assert line.startswith("mpitrain: error: writing results: ")
    assert "No space left on device" in line and "kept: metrics up to step" in line
    recs = records(out)  # every line a complete record, up to the last one written
    assert recs and recs[-1]["step"] >= 10
    assert [r["step"] for r in recs] == list(range(0, recs[-1]["step"] + 1, 10))
    assert f"metrics up to step {recs[-1]['step']}" in line or "train.log" in line


def test_an_unusable_output_folder_is_reported_before_the_data_are_loaded(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_mpi(2, train_args(blocker / "run", "data.dataset=/no/such/data.svm"), timeout=60)
    line = one_error(result)
    assert "cannot create" in line and "Not a directory" in line and "data.svm" not in line


def test_home_in_output_dir_is_expanded_not_taken_literally(tmp_path):
    home = tmp_path / "home"
    result = run_mpi(2, train_args("~/runs/x", "train.steps=20"), timeout=60, cwd=tmp_path,
                     env={"HOME": str(home)})
    assert result.returncode == 0, result.output
    assert (home / "runs" / "x" / "summary.json").exists()
    assert not (tmp_path / "~").exists()
    empty = run_mpi(2, train_args("", "train.steps=20"), timeout=60, cwd=tmp_path)
    assert "must not be empty" in one_error(empty)


def test_the_folder_keeps_rank_0s_log_and_the_summary_its_provenance(tmp_path):
    out = tmp_path / "run"
    result = run_mpi(2, train_args(out, "train.steps=60", "run.progress=true"), timeout=60)
    assert result.returncode == 0, result.output
    log = (out / "train.log").read_text()
    assert "step 60/60" in log and "mpitrain: sync_sgd on synthetic-classification with 2 ranks" in log
    summary = json.loads((out / "summary.json").read_text())
    for key in ("mpitrain_version", "git_commit", "mpi_library", "hosts", "ranks_per_host", "started", "ended",
                "wall_seconds", "setup_seconds", "eval_seconds"):
        assert key in summary, key
    assert sum(summary["ranks_per_host"].values()) == 2
    assert summary["wall_seconds"] >= summary["train_seconds"] + summary["eval_seconds"]
    assert "MPICH" in summary["mpi_library"] or "Open MPI" in summary["mpi_library"]

    bad = run_mpi(2, train_args(out, "train.steps=60", flags=["--resume", str(tmp_path / "nowhere")]), timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] in (out / "train.log").read_text()


def rank_pid(marker, rank):
    """The pid of the process of ``rank`` whose command line contains ``marker``."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{name}/cmdline", "rb").read()
            environ = open(f"/proc/{name}/environ", "rb").read()
        except OSError:
            continue
        if marker.encode() in cmdline and f"PMI_RANK={rank}\0".encode() in environ and b"python" in cmdline:
            return int(name)
    return None


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the rank's pid through /proc")
def test_a_stopped_rank_is_named_by_rank_0_and_the_run_goes_on_when_it_resumes(tmp_path):
    out = tmp_path / "stall"
    proc = start(3, train_args(out, "train.steps=100000000", "run.log_every=5000", "run.stall_timeout=2"))
    try:
        # the second record: the loop (and the watchdog, started before it) is running
        wait_for(lambda: (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 2,
                 proc, "training")
        pid = rank_pid(str(out), 2)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: "has not reported" in (out / "train.log").read_text(), proc, "the stall warning", timeout=60)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 75, err
    warning = [line for line in err.splitlines() if "no step completed" in line]
    assert len(warning) == 1, err
    assert "rank 2 has not reported" in warning[0] and "ranks 0" not in warning[0]


def test_a_full_disk_during_a_checkpoint_names_the_file_and_the_checkpoint_kept(small_disk):
    out = small_disk / "run"
    result = run_mpi(2, train_args(out, "train.steps=4000", "run.log_every=10", "run.checkpoint_every=500",
                                   "run.save_parameters=false"), timeout=60)
    line = one_error(result)
    assert line.startswith("mpitrain: error: writing a checkpoint: ")
    assert "cannot write " in line and "No space left on device" in line
    kept = json.loads((out / "checkpoints" / "latest").read_text())
    assert f"the checkpoint of step {kept['step']} ({out / 'checkpoints' / 'step-00000500'})" in line
    assert kept["step"] == 500


def catches(pid, signum) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (Linux: SigCgt in /proc/PID/status)."""
    try:
        status = open(f"/proc/{pid}/status").read()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask >> (signum - 1) & 1)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the signal mask from /proc")
def test_a_sigusr1_before_mpi_starts_is_kept_and_stops_the_run_at_its_first_step(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, *train_args(out, "train.steps=200", "run.log_every=50")], env=mpi_env(),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while not catches(proc.pid, signal.SIGUSR1):  # the first thing `train` does, before importing mpi4py
        assert proc.poll() is None and time.monotonic() < deadline, "the handler never appeared"
        time.sleep(0.001)
    mpi_started = "mpi4py" in open(f"/proc/{proc.pid}/maps").read()
    proc.send_signal(signal.SIGUSR1)
    _, err = finish(proc)
    assert proc.returncode == 75, err
    assert "mpitrain: stopped by SIGUSR1 after step 1 of 200" in err, err
    assert not mpi_started  # the signal came before MPI was loaded, and was not lost
