"""Slurm job scripts: templates render to golden files and pass bash -n / shellcheck; a rendered
script runs end to end under stand-in sbatch and srun; bad options and a world size that does
not match SLURM_NTASKS are clear errors; the mpirun template survives an early SIGUSR1. The same
templates on a real Slurm: tests/test_slurm_real.py (`make test-slurm`).

Regenerate the golden files after changing a template: MPITRAIN_UPDATE_GOLDEN=1 pytest tests/test_jobs.py
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpi_run import ROOT, mpi_env, mpiexec_path, run_mpi
from mpitrain.jobs import JobSpec, JobSpecError, fill, render, submit
from mpitrain.runtime import JobError
from mpitrain.slurm import check_world_size, srun_mpi

GOLDEN = Path(__file__).resolve().parent / "golden"
CONFIG = "jobs/configs/sync_sgd.toml"
SPECS = {
    "single_node": dict(ntasks_per_node=64),
    "multi_node": dict(nodes=4, ntasks_per_node=32, partition="cpu", account="proj42", requeue=True,
                       modules=["gcc/12", "openmpi/4.1"], overrides=["train.seed=3"]),
    "gpu": dict(nodes=2, gpus_per_node=4, cpus_per_task=8, python="/opt/my env/bin/python"),
    "sweep": dict(ntasks_per_node=16, configs=[CONFIG, "jobs/configs/sync_sgd_synthetic.toml"]),
}


def spec(template, **changes):
    values = dict(template=template, time="02:00:00", configs=[CONFIG], job_name=f"mpitrain-{template}")
    values.update(SPECS.get(template, {}))
    values.update(changes)
    return JobSpec(**values)


@pytest.fixture(autouse=True)
def in_repository(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("template", sorted(SPECS))
def test_template_renders_to_golden_and_passes_shell_checks(template, tmp_path):
    text = render(spec(template))
    golden = GOLDEN / f"{template}.sbatch"
    if os.environ.get("MPITRAIN_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    assert "@@" not in text.replace("USR1@", "")
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout


def test_placeholders_leave_shell_syntax_alone():
    text = 'n=${SLURM_NTASKS} m=$((1 + @@X@@)) s="${A:-@@Y@@}" $(date)\n@@EMPTY@@\n'
    assert fill(text, {"X": "2", "Y": "b", "EMPTY": ""}) == 'n=${SLURM_NTASKS} m=$((1 + 2)) s="${A:-b}" $(date)\n'
    with pytest.raises(JobSpecError, match="unknown placeholder.*@@Z@@"):
        fill("@@Z@@", {})


@pytest.mark.parametrize("changes, message", [
    (dict(template="nonesuch"), "unknown job template 'nonesuch'; known: gpu, multi_node, single_node, sweep"),
    (dict(template="multi_node", nodes=0), "--nodes: must be >= 1, got 0"),
    (dict(template="multi_node", time="2h"), "--time: expected [D-]HH:MM:SS"),
    (dict(template="multi_node", time="01:75:00"), "--time: expected [D-]HH:MM:SS"),
    (dict(template="single_node", nodes=2), "the single_node template runs on 1 node"),
    (dict(template="gpu", ntasks_per_node=2), "must equal --gpus-per-node (4), got 2"),
    (dict(template="multi_node", configs=["jobs/configs/missing.toml"]), "no such file: jobs/configs/missing.toml"),
    (dict(template="multi_node", overrides=["train.steps=0"]), "config field 'train.steps': must be >= 1"),
    (dict(template="multi_node", time="00:01:00"), "--signal-seconds: must be > 0 and shorter than --time"),
    (dict(template="multi_node", job_name="a b"), "--job-name: letters, digits"),
    (dict(template="multi_node", srun_mpi="pmi 2"), "--srun-mpi: auto, default or a plugin of `srun --mpi=list`"),
    (dict(template="single_node", srun_mpi="pmi2"), "--srun-mpi: the single_node template starts the ranks with mpirun"),
    (dict(template="sweep", overrides=["run.output_dir=runs/x"]),
     "--set run.output_dir=runs/x: the sweep writes each config's run to runs/<job name>/<config name>"),
])
def test_bad_options_are_named(changes, message):
    with pytest.raises(JobSpecError) as info:
        render(spec(**changes))
    assert message in str(info.value)


@pytest.mark.parametrize("choice, line", [
    (None, "SRUN_MPI=auto\n"), ("auto", "SRUN_MPI=auto\n"), ("pmix", "SRUN_MPI=pmix\n"),
    ("default", "SRUN_MPI=''\n"),
])
def test_srun_mpi_choice_is_rendered(choice, line):
    for template in ("multi_node", "sweep"):
        text = render(spec(template, srun_mpi=choice))
        assert line in text
        assert 'srun ${SRUN_MPI:+"--mpi=${SRUN_MPI}"} ' in text


@pytest.mark.parametrize("version, plugin", [
    ("MPICH Version:      4.2.0\nMPICH Release date: ...", "pmi2"),
    ("MVAPICH2 Version      :\t2.3.7", "pmi2"),
    ("Open MPI v4.1.5, package: Open MPI ...", "pmix"),
    ("Intel(R) MPI Library 2021.10 for Linux* OS", ""),
    ("", ""),
])
def test_srun_mpi_follows_the_mpi_library(version, plugin):
    assert srun_mpi(version) == plugin


def test_srun_mpi_of_this_environment_is_printed():
    out = subprocess.run([sys.executable, "-m", "mpitrain.slurm", "srun-mpi"], capture_output=True, text=True,
                         env=mpi_env(), cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    from mpitrain.slurm import library_version
    assert out.stdout == srun_mpi(library_version()) + "\n"


class Size:
    def __init__(self, size):
        self.size = size

    def Get_size(self):  # noqa: N802 - the mpi4py name
        return self.size


def test_world_size_is_checked_against_mpitrain_ntasks_first():
    # inside an allocation mpirun's proxy runs under `srun -n 1`: SLURM_NTASKS=1 there
    check_world_size(Size(4), {"SLURM_NTASKS": "1", "MPITRAIN_NTASKS": "4"})
    check_world_size(Size(4), {"SLURM_NTASKS": "4"})
    check_world_size(Size(4), {})
    with pytest.raises(JobError, match="MPI world size is 2 but MPITRAIN_NTASKS is 4"):
        check_world_size(Size(2), {"SLURM_NTASKS": "2", "MPITRAIN_NTASKS": "4"})
    with pytest.raises(JobError, match="MPI world size is 4 but SLURM_NTASKS is 1"):
        check_world_size(Size(4), {"SLURM_NTASKS": "1"})


def test_cli_render_error_exits_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mpitrain", "job", "render", "multi_node", "--nodes", "0",
                          "--ntasks-per-node", "4", "--time", "01:00:00", "--config", CONFIG],
                         capture_output=True, text=True, env=mpi_env(), cwd=ROOT, timeout=60)
    assert out.returncode == 2
    assert out.stderr == "mpitrain: error: --nodes: must be >= 1, got 0\n"


def test_submit_without_sbatch_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JobSpecError, match="sbatch not found on PATH.*ready at"):
        submit(tmp_path / "job.sbatch")


SBATCH = """#!/bin/bash
# stand-in sbatch: runs the script at once with the SLURM_* variables its #SBATCH lines ask for;
# --test-only refuses more than 8 tasks, as a small partition would
script="${@: -1}"
nodes=$(sed -n 's/^#SBATCH --nodes=//p' "$script")
per_node=$(sed -n 's/^#SBATCH --ntasks-per-node=//p' "$script")
if [ "$1" = --test-only ]; then
    if [ $((nodes * per_node)) -gt 8 ]; then
        echo "sbatch: error: Batch job submission failed: Requested node configuration is not available" >&2
        exit 1
    fi
    echo "sbatch: Job 4242 to start at 2030-01-01T00:00:00 using 4 processors on nodes n1 in partition p" >&2
    exit 0
fi
export SLURM_JOB_ID=4242 SLURM_JOB_NAME=test SLURM_CPUS_PER_TASK=1 SLURM_NTASKS=$((nodes * per_node))
if [ "$1" = --parsable ]; then echo 4242; else echo "Submitted batch job 4242"; fi
bash "$script" > "slurm-4242.out" 2>&1
"""
SRUN = """#!/bin/bash
# stand-in srun: notes and drops srun's own options, starts the command with mpiexec -n $SLURM_NTASKS
while [ "${1#--}" != "$1" ]; do echo "$1" >> srun-options; shift; done
exec "MPIEXEC" -n "${SLURM_NTASKS}" "$@"
"""


def stand_in_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", SBATCH), ("srun", SRUN.replace("MPIEXEC", mpiexec_path()))):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return mpi_env({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})


def test_rendered_script_runs_end_to_end_with_stand_in_slurm(tmp_path):
    env = stand_in_slurm(tmp_path)
    overrides = ["data.n_samples=2000", "data.n_features=50", "train.steps=40", "run.log_every=20",
                 f"run.output_dir={tmp_path}/out"]
    cmd = [sys.executable, "-m", "mpitrain", "job", "submit", "multi_node", "--nodes", "2", "--ntasks-per-node", "2",
           "--time", "00:10:00", "--config", str(ROOT / "jobs/configs/sync_sgd_synthetic.toml"), "--python", sys.executable,
           "-o", str(tmp_path / "job.sbatch"), *[a for o in overrides for a in ("--set", o)]]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    log = (tmp_path / "slurm-4242.out").read_text() if (tmp_path / "slurm-4242.out").exists() else ""
    assert out.returncode == 0, out.stderr + log
    assert out.stdout == "4242\n"  # the job id alone: id=$(python -m mpitrain job submit ...)
    assert "with 4 ranks, 40 steps" in log
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    from mpitrain.slurm import library_version
    expected = srun_mpi(library_version())  # auto, decided in the job: pmi2 for the mpich wheel
    assert (tmp_path / "srun-options").read_text().splitlines() == [f"--mpi={expected}"] * bool(expected) + [
        "--cpu-bind=cores"]


def test_submit_refused_by_sbatch_test_only_names_slurm_reason(tmp_path):
    env = stand_in_slurm(tmp_path)
    cmd = [sys.executable, "-m", "mpitrain", "job", "submit", "multi_node", "--nodes", "2", "--ntasks-per-node", "8",
           "--time", "00:10:00", "--config", str(ROOT / CONFIG), "-o", str(tmp_path / "job.sbatch")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.splitlines()[-1] == (
        f"mpitrain: error: sbatch --test-only refused {tmp_path / 'job.sbatch'}: sbatch: error: Batch job "
        "submission failed: Requested node configuration is not available")
    assert not (tmp_path / "slurm-4242.out").exists()


def test_mpirun_template_survives_an_early_sigusr1_and_checkpoints(tmp_path):
    """The signal comes while the script starts: it is held, then mpirun (the one beside --python,
    not on PATH) passes it on and the ranks stop at their first step with a checkpoint (exit 75)."""
    overrides = ["data.n_samples=2000", "data.n_features=50", "train.steps=100000000", "run.reference=false",
                 f"run.output_dir={tmp_path}/out"]
    text = render(spec("single_node", ntasks_per_node=2, python=sys.executable, time="00:10:00",
                       configs=[str(ROOT / "jobs/configs/sync_sgd_synthetic.toml")], overrides=overrides))
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    env = mpi_env({"SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "1", "MPITRAIN_SIGNAL_HOLD": "2",
                   "PATH": "/usr/bin:/bin"})
    proc = subprocess.Popen(["bash", str(script)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        time.sleep(0.3)  # the traps are set; mpirun is starting or not yet started
        proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 75, out
    assert "mpitrain: stopped by SIGUSR1 after step" in out
    assert "checkpoint written before the time limit" in out
    assert (tmp_path / "out" / "checkpoints" / "latest").exists()


def small_train(tmp_path):
    return ["-m", "mpitrain", "train", "--set", f"run.output_dir={tmp_path}/out", "--set", "data.n_samples=500",
            "--set", "data.n_features=20", "--set", "train.steps=5", "--set", "run.reference=false"]


def test_world_size_not_matching_slurm_ntasks_is_one_clear_error(tmp_path):
    result = run_mpi(2, small_train(tmp_path), env={"SLURM_NTASKS": "4"}, timeout=60)
    assert result.returncode == 2, result.output
    assert result.stderr.count("mpitrain: error: MPI world size is 2 but SLURM_NTASKS is 4") == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_every_rank_alone_names_the_pmi_trap(tmp_path):
    env = mpi_env({"SLURM_NTASKS": "4"})
    out = subprocess.run([sys.executable, *small_train(tmp_path)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 2
    assert "MPI world size is 1 but SLURM_NTASKS is 4: every process started as rank 0 of a world of 1" in out.stderr
    assert "srun --mpi=pmi2 for MPICH, --mpi=pmix for Open MPI" in out.stderr
    assert "MPITRAIN_IGNORE_SLURM_NTASKS=1" in out.stderr
