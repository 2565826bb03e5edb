"""Slurm job scripts: templates render to golden files and pass bash -n / shellcheck; a rendered
script runs end to end under stand-in sbatch and srun; bad options and a world size that does
not match SLURM_NTASKS are clear errors.

Regenerate the golden files after changing a template: MPITRAIN_UPDATE_GOLDEN=1 pytest tests/test_jobs.py
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpi_run import ROOT, mpi_env, mpiexec_path, run_mpi
from mpitrain.jobs import JobSpec, JobSpecError, fill, render, submit

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
])
def test_bad_options_are_named(changes, message):
    with pytest.raises(JobSpecError) as info:
        render(spec(**changes))
    assert message in str(info.value)


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
# stand-in sbatch: runs the script at once with the SLURM_* variables its #SBATCH lines ask for
script="$1"
nodes=$(sed -n 's/^#SBATCH --nodes=//p' "$script")
per_node=$(sed -n 's/^#SBATCH --ntasks-per-node=//p' "$script")
export SLURM_JOB_ID=4242 SLURM_JOB_NAME=test SLURM_CPUS_PER_TASK=1 SLURM_NTASKS=$((nodes * per_node))
echo "Submitted batch job 4242"
bash "$script" > "slurm-4242.out" 2>&1
"""
SRUN = """#!/bin/bash
# stand-in srun: drops srun's own options and starts the command with mpiexec -n $SLURM_NTASKS
while [ "${1#--}" != "$1" ]; do shift; done
exec "MPIEXEC" -n "${SLURM_NTASKS}" "$@"
"""


def test_rendered_script_runs_end_to_end_with_stand_in_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", SBATCH), ("srun", SRUN.replace("MPIEXEC", mpiexec_path()))):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = mpi_env({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    overrides = ["data.n_samples=2000", "data.n_features=50", "train.steps=40", "run.log_every=20",
                 f"run.output_dir={tmp_path}/out"]
    cmd = [sys.executable, "-m", "mpitrain", "job", "submit", "multi_node", "--nodes", "2", "--ntasks-per-node", "2",
           "--time", "00:10:00", "--config", str(ROOT / "jobs/configs/sync_sgd_synthetic.toml"), "--python", sys.executable,
           "-o", str(tmp_path / "job.sbatch"), *[a for o in overrides for a in ("--set", o)]]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    log = (tmp_path / "slurm-4242.out").read_text() if (tmp_path / "slurm-4242.out").exists() else ""
    assert out.returncode == 0, out.stderr + log
    assert "Submitted batch job 4242" in out.stdout
    assert "with 4 ranks, 40 steps" in log
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


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
    assert "srun --mpi=pmix" in out.stderr and "MPITRAIN_IGNORE_SLURM_NTASKS=1" in out.stderr
