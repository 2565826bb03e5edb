"""The job templates on a real Slurm (`make test-slurm` starts a one-node one with
scripts/slurm-local.sh, then runs this file with MPITRAIN_SLURM_TESTS=1).

Through the real sbatch: every template runs to completion with the right world size; `job
submit` prints the job id; a request the partition cannot hold is refused at submit time; a
sweep of two configs writes two folders; an early SIGUSR1 does not kill a job, neither at the
batch shell nor at ranks that have not started Python yet; and the
time-limit cycle (Slurm's SIGUSR1 -> checkpoint -> exit 75 -> requeue -> `--resume auto`) ends
with the metrics of an uninterrupted run, for the mpirun and the srun templates.

Without MPITRAIN_SLURM_TESTS=1 every test here skips (plain `make test`); with it, a missing
sbatch or a Slurm that does not answer fails them all, so a bring-up that failed in CI is loud.

The local cluster has MpiDefault=none: a srun template whose ranks see the right world size
passed --mpi=pmi2 itself (without it the mpich wheel's ranks start as singletons, shown below).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mpi_run import ROOT, mpi_env, run_mpi

REQUIRED = os.environ.get("MPITRAIN_SLURM_TESTS", "") not in ("", "0")
CONFIG = ROOT / "jobs" / "configs" / "sync_sgd_synthetic.toml"
SMALL = ["data.n_samples=2000", "data.n_features=50", "train.batch_size=8", "run.reference=false"]
WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
            "DEADLINE", "PREEMPTED"}
# rank 1 sleeps 20 ms a step: the time-limit runs last long enough to be signalled
STRAGGLER = {"MPITRAIN_FAULT": "sleep:1:0", "MPITRAIN_FAULT_SECONDS": "0.02"}


def slurm_problem() -> str:
    """Why no job can run here ("" when one can)."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s"
    if out.returncode != 0:
        return f"no Slurm controller answers (sinfo: {out.stderr.strip()[-300:]})"
    if not any(state.startswith(("idle", "mix", "alloc")) for state in out.stdout.split()):
        return f"no node takes jobs (sinfo node states: {out.stdout.split()})"
    return ""


@pytest.fixture(scope="module", autouse=True)
def slurm():
    if not REQUIRED:
        reason = "sbatch is not on PATH" if shutil.which("sbatch") is None else "not asked for"
        pytest.skip(f"real-Slurm tests ({reason}): `make test-slurm` starts a one-node Slurm and runs them; "
                    "MPITRAIN_SLURM_TESTS=1 runs them against the Slurm that sbatch reaches")
    problem = slurm_problem()
    if problem:
        pytest.fail(f"MPITRAIN_SLURM_TESTS=1 but {problem}: start one with `bash scripts/slurm-local.sh start` "
                    "and export SLURM_CONF as it says (make test-slurm does both)", pytrace=False)


def submit(template, folder, *options, overrides=(), python=sys.executable, env=None):
    """`python -m mpitrain job submit` from ``folder`` (the job's working directory); the job id."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mpitrain", "job", "submit", template, "--python", str(python),
           "-o", str(folder / f"{template}.sbatch"), *options,
           *[arg for o in (*SMALL, *overrides) for arg in ("--set", o)]]
    out = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(env), cwd=folder, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"\d+\n", out.stdout), f"job submit printed {out.stdout!r}, not the job id alone"
    return out.stdout.strip()


def jobs(job_id):
    """``scontrol show job`` of ``job_id`` (all tasks of an array): one dict per job."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.stdout.splitlines() if line.strip()]


def state(job_id):
    return [j["JobState"] for j in jobs(job_id)]


def wait(job_id, timeout=150):
    deadline = time.monotonic() + timeout
    while True:
        records = jobs(job_id)
        if records and all(r["JobState"] in FINISHED for r in records):
            return records
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], timeout=30)
            raise AssertionError(f"job {job_id} did not finish within {timeout} s: {records}")
        time.sleep(0.5)


def wait_running(job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while state(job_id) != ["RUNNING"]:
        assert time.monotonic() < deadline, f"job {job_id} did not start within {timeout} s: {jobs(job_id)}"
        time.sleep(0.1)


def log(folder, name):
    files = sorted(folder.glob(name))
    assert files, f"no {name} in {folder}: {sorted(p.name for p in folder.iterdir())}"
    return "".join(p.read_text() for p in files)


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without_wall_time(recs):
    return [{k: v for k, v in r.items() if k not in WALL_TIME} for r in recs]


class RequeueStarter(threading.Thread):
    """Starts a requeued job soon: Slurm holds one back about 120 s (reason BeginTime).

    Not at once: slurmd revokes the killed attempt's job credential and refuses one issued
    within the same second ("Killing non-startable batch JobId=..: Job credential revoked",
    the job then FAILS with exit 1 and no output). A job is started once it has waited
    GRACE seconds in BeginTime, well past that second.
    """

    GRACE = 3.0

    def __init__(self):
        super().__init__(daemon=True)
        self.job_ids = set()
        self.done = threading.Event()

    def run(self):
        waiting_since = {}
        while not self.done.wait(0.5):
            for job_id in list(self.job_ids):
                out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True,
                                     timeout=30)
                if out.stdout.split() != ["PENDING", "BeginTime"]:
                    waiting_since.pop(job_id, None)
                    continue
                since = waiting_since.setdefault(job_id, time.monotonic())
                if time.monotonic() - since >= self.GRACE:
                    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                                   capture_output=True, timeout=30)


def cycle_python(folder):
    """A --python that runs the straggler only before the requeue (SLURM_RESTART_COUNT is set
    from the first requeue on), so the resumed part is quick; mpirun and hydra's proxy beside it,
    as in an environment's bin/."""
    folder.mkdir(parents=True)
    python = folder / "python"
    python.write_text(f'#!/bin/bash\n[ "${{SLURM_RESTART_COUNT:-0}}" = 0 ] || unset MPITRAIN_FAULT\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    for tool in ("mpirun", "hydra_pmi_proxy"):
        (folder / tool).symlink_to(Path(sys.executable).parent / tool)
    return python


CYCLE_STEPS = ["train.steps=4000", "run.log_every=100"]


@pytest.fixture(scope="module")
def time_limit_jobs(slurm, tmp_path_factory):
    """Both time-limit jobs, submitted when the module starts (they take about a minute) and
    checked by the last tests: --time 00:02:00 --signal-seconds 60 --requeue. Slurm sends the
    warning 30-60 s after the start; 4000 steps at 20 ms would take 80 s."""
    starter = RequeueStarter()
    starter.start()
    submitted = {}
    for template in ("single_node", "multi_node"):
        folder = tmp_path_factory.mktemp(f"cycle-{template}")
        python = cycle_python(folder / "env" / "bin")
        job_id = submit(template, folder, "--ntasks-per-node", "2", "--time", "00:02:00", "--signal-seconds", "60",
                        "--requeue", "--job-name", f"cycle-{template}", "--config", str(CONFIG),
                        overrides=[*CYCLE_STEPS, f"run.output_dir={folder}/out"], python=python, env=STRAGGLER)
        starter.job_ids.add(job_id)
        submitted[template] = (job_id, folder)
    yield submitted
    starter.done.set()


@pytest.fixture(scope="module", autouse=True)
def start_time_limit_jobs_first(time_limit_jobs):
    """Every test here requests the time-limit jobs, so they run while the other tests do."""


def test_single_node_runs_the_environments_mpirun_with_the_right_world_size(tmp_path):
    job_id = submit("single_node", tmp_path, "--ntasks-per-node", "4", "--time", "00:10:00", "--job-name", "single",
                    "--config", str(CONFIG), overrides=["train.steps=40", "run.log_every=20", f"run.output_dir={tmp_path}/out"],
                    env={"PATH": "/usr/bin:/bin"})  # no mpirun on PATH: the one beside --python
    [record] = wait(job_id)
    text = log(tmp_path, f"single-{job_id}.out")
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), text
    assert "with 4 ranks, 40 steps" in text
    assert len(records(tmp_path / "out")) == 3


@pytest.mark.parametrize("srun_mpi", ["auto", "pmi2"])
def test_multi_node_on_one_node_runs_srun_with_pmi2(srun_mpi, tmp_path):
    job_id = submit("multi_node", tmp_path, "--nodes", "1", "--ntasks-per-node", "4", "--time", "00:10:00",
                    "--srun-mpi", srun_mpi, "--job-name", "multi", "--config", str(CONFIG),
                    overrides=["train.steps=40", "run.log_every=20", f"run.output_dir={tmp_path}/out"])
    [record] = wait(job_id)
    text = log(tmp_path, f"multi-{job_id}.out")
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), text
    assert "with 4 ranks, 40 steps" in text


def test_srun_without_pmi_starts_singletons_and_the_check_says_so(tmp_path):
    job_id = submit("multi_node", tmp_path, "--ntasks-per-node", "2", "--time", "00:10:00", "--srun-mpi", "default",
                    "--job-name", "nopmi", "--config", str(CONFIG), overrides=["train.steps=40", f"run.output_dir={tmp_path}/out"])
    [record] = wait(job_id)
    text = log(tmp_path, f"nopmi-{job_id}.out")
    assert (record["JobState"], record["ExitCode"]) == ("FAILED", "2:0"), text
    assert "MPI world size is 1 but SLURM_NTASKS is 2: every process started as rank 0 of a world of 1" in text


def test_gpu_template_runs_one_rank_per_gpu(tmp_path):
    gres = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=30).stdout
    if "gpu" not in gres:
        pytest.skip(f"the cluster has no GPUs to schedule (sinfo gres: {gres.strip()!r}); "
                    "scripts/slurm-local.sh declares stand-in ones where mknod is allowed")
    job_id = submit("gpu", tmp_path, "--gpus-per-node", "4", "--time", "00:10:00", "--job-name", "gpu",
                    "--config", str(CONFIG), overrides=["train.steps=40", "run.log_every=20", f"run.output_dir={tmp_path}/out"])
    [record] = wait(job_id)
    text = log(tmp_path, f"gpu-{job_id}.out")
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), text
    assert "with 4 ranks, 40 steps" in text


def test_sweep_writes_one_folder_per_config(tmp_path):
    configs = []
    for name, seed in (("seed1", 1), ("seed2", 2)):
        path = tmp_path / f"{name}.toml"
        path.write_text(CONFIG.read_text().replace("seed = 0", f"seed = {seed}"))
        configs += ["--config", str(path)]
    job_id = submit("sweep", tmp_path, "--ntasks-per-node", "2", "--time", "00:10:00", "--job-name", "sweep",
                    *configs, overrides=["train.steps=40", "run.log_every=20"])
    tasks = wait(job_id)
    text = log(tmp_path, f"sweep-{job_id}_*.out")
    assert sorted((t["ArrayTaskId"], t["JobState"], t["ExitCode"]) for t in tasks) == [
        ("0", "COMPLETED", "0:0"), ("1", "COMPLETED", "0:0")], text
    assert text.count("with 2 ranks, 40 steps") == 2
    folders = tmp_path / "runs" / "sweep"
    assert sorted(p.name for p in folders.iterdir()) == ["seed1", "seed2"]
    assert records(folders / "seed1") != records(folders / "seed2")  # two runs, not one twice


def test_request_larger_than_the_partition_is_refused_at_submit(tmp_path):
    cmd = [sys.executable, "-m", "mpitrain", "job", "submit", "multi_node", "--ntasks-per-node", "1000",
           "--time", "00:10:00", "--job-name", "toolarge", "--config", str(CONFIG), "-o", str(tmp_path / "job.sbatch")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    assert f"mpitrain: error: sbatch --test-only refused {tmp_path / 'job.sbatch'}: " in out.stderr
    assert "Requested node configuration is not available" in out.stderr
    queued = subprocess.run(["squeue", "-h", "-n", "toolarge"], capture_output=True, text=True, timeout=30)
    assert queued.stdout == ""


@pytest.mark.parametrize("template, exit_code", [("single_node", "75:0"), ("multi_node", "0:0")])
def test_early_sigusr1_to_the_batch_shell_does_not_kill_the_job(template, exit_code, tmp_path):
    """single_node (--signal=B:USR1): the shell holds the signal until the ranks can take it, then
    they checkpoint at once and exit 75. srun templates: the shell is not the one Slurm signals;
    one that reaches it anyway is ignored and the run goes on to its end."""
    job_id = submit(template, tmp_path, "--ntasks-per-node", "2", "--time", "00:10:00", "--job-name", "early",
                    "--config", str(CONFIG), overrides=["train.steps=600", f"run.output_dir={tmp_path}/out"],
                    env=STRAGGLER)
    wait_running(job_id)
    time.sleep(0.5)  # the ranks are starting
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True, timeout=30)
    [record] = wait(job_id)
    text = log(tmp_path, f"early-{job_id}.out")
    assert record["ExitCode"] == exit_code, text
    assert "User defined signal" not in text
    if template == "single_node":
        assert "mpitrain: stopped by SIGUSR1 after step" in text
        assert "checkpoint written before the time limit" in text
    else:
        assert "with 2 ranks, 600 steps" in text


def slow_start_python(folder):
    """A --python whose ranks (the tasks of a job step, not the batch shell's or submit's calls)
    wait 4 s before Python starts, writing ``started-<pid>`` first and ``python-<pid>`` when they
    exec Python: a wide window before Python can set a handler."""
    folder.mkdir(parents=True)
    python = folder / "python"
    python.write_text(f'#!/bin/bash\nif [ "${{SLURM_STEP_ID:-99999}}" -lt 1000 ]; then\n'
                      f'  touch "{folder}/started-$$"; sleep 4; touch "{folder}/python-$$"\nfi\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return python


def test_sigusr1_to_the_ranks_before_python_starts_does_not_kill_them(tmp_path):
    """The srun templates start each rank with SIGUSR1 ignored until Python has set its handler:
    Slurm's warning to the job steps in that window is lost (the run goes on; the time limit's
    SIGTERM would still checkpoint it) instead of killing the ranks."""
    bin_dir = tmp_path / "env" / "bin"
    python = slow_start_python(bin_dir)
    job_id = submit("multi_node", tmp_path, "--ntasks-per-node", "2", "--time", "00:10:00", "--srun-mpi", "pmi2",
                    "--job-name", "deaf", "--config", str(CONFIG), python=python,
                    overrides=["train.steps=40", "run.log_every=20", f"run.output_dir={tmp_path}/out"])
    deadline = time.monotonic() + 60
    while len(list(bin_dir.glob("started-*"))) < 2:
        assert time.monotonic() < deadline, f"the ranks of job {job_id} did not start: {jobs(job_id)}"
        time.sleep(0.05)
    signalled = subprocess.run(["scancel", "--signal=USR1", job_id], capture_output=True, text=True, timeout=30)
    assert signalled.returncode == 0, signalled.stderr
    assert not list(bin_dir.glob("python-*")), "Python started before the signal: the window was missed"
    [record] = wait(job_id)
    text = log(tmp_path, f"deaf-{job_id}.out")
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), text
    assert "User defined signal" not in text
    assert "with 2 ranks, 40 steps" in text


@pytest.mark.parametrize("template", ["single_node", "multi_node"])
def test_time_limit_cycle_resumes_to_the_metrics_of_an_uninterrupted_run(template, time_limit_jobs, tmp_path):
    job_id, folder = time_limit_jobs[template]
    [record] = wait(job_id, timeout=240)
    text = log(folder, f"cycle-{template}-{job_id}.out")
    assert (record["JobState"], record["ExitCode"], record["Restarts"]) == ("COMPLETED", "0:0", "1"), text
    # one log for both parts (--open-mode=append): the signal, the checkpoint, the requeue, the end
    assert text.count("mpitrain: stopped by SIGUSR1 after step") == 1, text
    assert "checkpoint written before the time limit" in text
    assert "with 2 ranks, 4000 steps" in text
    assert "User defined signal" not in text
    full = run_mpi(2, ["-m", "mpitrain", "train", "--config", str(CONFIG),
                       *[a for o in (*SMALL, *CYCLE_STEPS, f"run.output_dir={tmp_path}/full") for a in ("--set", o)]],
                   timeout=120)
    assert full.returncode == 0, full.output
    assert without_wall_time(records(folder / "out")) == without_wall_time(records(tmp_path / "full"))
