"""Checkpoint resume rules and damaged checkpoints.

What may change on resume (where, how long, how it reports) is accepted and continues the
same trajectory; what changes the math is refused with one line. A damaged newest checkpoint
(truncated, bit-flipped or swapped rank files, a missing manifest, a broken ``latest``) is
detected, named in one warning, and the run resumes from the older intact one; with nothing
intact, or a damaged step folder named explicitly, the run stops with one line. Only the
``run.keep_checkpoints`` newest step folders are kept.

The end-to-end tests start from one crashed run (2 ranks, 60 steps, checkpoints every 20, a
rank raising at step 50: checkpoints at steps 20 and 40 are left), copied per test, and
compare with one unbroken 60-step run.
"""
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mpi_run import run_mpi
from mpitrain import checkpoint
from mpitrain.config import load_config

WALL_TIME = {"time", "compute_seconds", "comm_seconds", "steps_per_second"}
SMALL = ["data.n_samples=2000", "data.n_features=50", "train.batch_size=8", "step_size.value=0.5",
         "run.log_every=20", "run.progress=false", "run.reference=false", "run.checkpoint_every=20",
         "train.steps=60"]


def train_args(out, *overrides, resume=None):
    args = ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}",
            *[arg for o in (*SMALL, *overrides) for arg in ("--set", o)]]
    return args + (["--resume", str(resume)] if resume is not None else [])


def records(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def without_wall_time(recs):
    return [{k: v for k, v in r.items() if k not in WALL_TIME} for r in recs]


def step_numbers(root):
    return sorted(int(folder.name.split("-")[1]) for folder in Path(root).glob("step-*"))


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("mpitrain: error:")]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    out = tmp_path_factory.mktemp("unbroken") / "run"
    result = run_mpi(2, train_args(out), timeout=120)
    assert result.returncode == 0, result.output
    return out


def wait_for_the_lock_holder(out, seconds=30.0):
    """mpiexec can return while an aborted rank is still a zombie; the run folder's lock
    (mpitrain.rundir) counts as held until that process is gone."""
    lock = out / ".lock"
    pid = json.loads(lock.read_text()).get("pid") if lock.exists() else None
    deadline = time.monotonic() + seconds
    while isinstance(pid, int) and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """A run that died at step 50, leaving the checkpoints of steps 20 and 40."""
    out = tmp_path_factory.mktemp("crashed") / "run"
    result = run_mpi(2, train_args(out), env={"MPITRAIN_FAULT": "raise:1:50"}, timeout=120)
    assert result.returncode != 0, result.output
    assert 40 in step_numbers(out / "checkpoints"), result.output
    wait_for_the_lock_holder(out)
    return out


@pytest.fixture
def copy(crashed, tmp_path):
    """A private copy of the crashed run's folder."""
    out = tmp_path / "run"
    shutil.copytree(crashed, out)
    return out


def assert_continues_unbroken(out, unbroken):
    assert without_wall_time(records(out)) == without_wall_time(records(unbroken))


# --- what may change ---------------------------------------------------------------------

def test_resume_after_moving_the_run_folder(copy, unbroken, tmp_path):
    moved = tmp_path / "elsewhere" / "moved-run"
    moved.parent.mkdir()
    shutil.move(copy, moved)
    result = run_mpi(2, train_args(moved, resume=moved / "checkpoints"), timeout=120)
    assert result.returncode == 0, result.output
    assert_continues_unbroken(moved, unbroken)


def test_resume_with_another_log_every(copy, unbroken):
    result = run_mpi(2, train_args(copy, "run.log_every=10", resume=copy / "checkpoints"), timeout=120)
    assert result.returncode == 0, result.output
    steps = [r["step"] for r in records(copy)]
    assert steps == [0, 20, 40, 50, 60]
    assert without_wall_time(records(copy))[-1] == without_wall_time(records(unbroken))[-1]


def test_resume_with_more_steps_trains_on_to_the_new_count(copy, unbroken):
    result = run_mpi(2, train_args(copy, "train.steps=80", "run.progress=true", resume=copy / "checkpoints"),
                     timeout=120)
    assert result.returncode == 0, result.output
    assert "step 40/80" in result.stdout and "step 80/80" in result.stdout  # the progress total is the new one
    recs = records(copy)
    assert [r["step"] for r in recs] == [0, 20, 40, 60, 80]
    assert without_wall_time(recs[:4]) == without_wall_time(records(unbroken))  # the same trajectory
    assert json.loads((copy / "summary.json").read_text())["steps"] == 80


def test_resume_with_a_relative_output_dir(crashed, unbroken, tmp_path):
    shutil.copytree(crashed, tmp_path / "rel-run")  # written with an absolute run.output_dir
    result = run_mpi(2, train_args("rel-run", resume="rel-run/checkpoints"), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.output
    assert_continues_unbroken(tmp_path / "rel-run", unbroken)


@pytest.mark.parametrize("override, field", [("step_size.value=0.4", "step_size.value"),
                                             ("train.seed=1", "train.seed")])
def test_resume_with_other_math_is_refused(copy, override, field):
    result = run_mpi(2, train_args(copy, override, resume=copy / "checkpoints"), timeout=120)
    assert result.returncode == 2, result.output
    assert len(error_lines(result)) == 1 and "Traceback" not in result.output
    assert f"differs in: {field}" in error_lines(result)[0]


# --- damaged checkpoints -----------------------------------------------------------------

def truncate(folder):
    path = folder / "rank-00001.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "rank 1: checksum mismatch in rank-00001.npz"


def flip_a_byte(folder):
    path = folder / "rank-00000.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return "rank 0: checksum mismatch in rank-00000.npz"


def swap(folder):
    first, second = folder / "rank-00000.npz", folder / "rank-00001.npz"
    first.rename(folder / "swap")
    second.rename(first)
    (folder / "swap").rename(second)
    return "rank 0: checksum mismatch in rank-00000.npz; rank 1: checksum mismatch in rank-00001.npz"


def drop_manifest(folder):
    (folder / "manifest.json").unlink()
    return f"checkpoint {folder} is damaged (manifest.json is missing"


def break_latest(folder):
    (folder.parent / "latest").write_text('{"step": 40, "direc')
    return f"checkpoint pointer {folder.parent / 'latest'} is unreadable"


def point_latest_nowhere(folder):
    shutil.rmtree(folder)
    return f"checkpoint {folder} named by {folder.parent / 'latest'} is missing"


@pytest.mark.parametrize("damage, resumed", [(truncate, 20), (flip_a_byte, 20), (swap, 20), (drop_manifest, 20),
                                             (point_latest_nowhere, 20), (break_latest, 40)])
def test_damaged_newest_checkpoint_falls_back_to_the_older_one(copy, unbroken, damage, resumed):
    """Without a readable ``latest`` the newest intact step folder is the one to resume."""
    why = damage(copy / "checkpoints" / "step-00000040")
    result = run_mpi(2, train_args(copy, resume=copy / "checkpoints"), timeout=120)
    assert result.returncode == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("mpitrain: warning:")]
    assert len(warnings) == 1, result.stderr
    assert why in warnings[0]
    assert warnings[0].endswith(f"; resuming from {copy / 'checkpoints' / f'step-{resumed:08d}'}")
    assert "Traceback" not in result.output
    assert_continues_unbroken(copy, unbroken)


def test_only_checkpoint_damaged_is_one_error_line(copy):
    shutil.rmtree(copy / "checkpoints" / "step-00000020")
    truncate(copy / "checkpoints" / "step-00000040")
    result = run_mpi(2, train_args(copy, resume=copy / "checkpoints"), timeout=120)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    [line] = error_lines(result)
    assert f"no intact checkpoint in {copy / 'checkpoints'}" in line
    assert "step-00000040 is damaged (rank 1: checksum mismatch in rank-00001.npz)" in line


def test_damaged_step_folder_named_explicitly_is_refused(copy):
    folder = copy / "checkpoints" / "step-00000040"
    flip_a_byte(folder)
    result = run_mpi(2, train_args(copy, resume=folder), timeout=120)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output and "warning" not in result.stderr  # no fallback
    [line] = error_lines(result)
    assert f"checkpoint {folder} is damaged (rank 0: checksum mismatch in rank-00000.npz)" in line


# --- how many are kept ---------------------------------------------------------------------

def test_default_keeps_the_two_newest_checkpoints(unbroken):
    assert step_numbers(unbroken / "checkpoints") == [40, 60]


def test_keep_checkpoints_keeps_that_many(tmp_path):
    out = tmp_path / "run"
    result = run_mpi(2, train_args(out, "train.steps=100", "run.keep_checkpoints=3"), timeout=120)
    assert result.returncode == 0, result.output
    assert step_numbers(out / "checkpoints") == [60, 80, 100]


def test_prune_removes_older_and_abandoned_newer_folders(tmp_path):
    from mpi4py import MPI

    for step in (10, 20, 30, 40, 50):
        (tmp_path / f"step-{step:08d}").mkdir()
    checkpoint.CheckpointStore(tmp_path, MPI.COMM_SELF).prune(latest=30, keep=2)
    assert step_numbers(tmp_path) == [20, 30]


# --- the rule, unit by unit ------------------------------------------------------------------

def digest(*overrides):
    return checkpoint.config_digest(load_config(None, [*SMALL, *overrides]))


def test_digest_ignores_where_how_long_and_how_reported():
    base = digest()
    for override in ("run.output_dir=elsewhere", "run.log_every=7", "run.progress=true", "run.reference=true",
                     "run.save_parameters=false", "run.checkpoint_every=3", "run.keep_checkpoints=5",
                     "train.steps=999", "train.cuda_aware_mpi=false", "local_sgd.period=3"):
        assert digest(override) == base, override
    for override in ("train.seed=1", "train.batch_size=4", "step_size.value=0.4", "data.dtype=float32",
                     "objective.l2=0.1", "data.n_samples=1000", "train.algorithm=local_sgd"):
        assert digest(override) != base, override


def test_steps_set_the_period_of_auto_local_sgd():
    auto = ("train.algorithm=local_sgd", "local_sgd.schedule=auto")
    assert digest(*auto, "train.steps=100") != digest(*auto, "train.steps=400")
    constant = ("train.algorithm=local_sgd",)
    assert digest(*constant, "train.steps=100") == digest(*constant, "train.steps=400")
    assert digest("train.algorithm=local_sgd", "local_sgd.period=3") != digest("train.algorithm=local_sgd")


def fake_trainer(*overrides):
    config = load_config(None, [*SMALL, *overrides])
    objective = SimpleNamespace(n_features=50, n_params=50, dtype=np.float64)
    return SimpleNamespace(size=2, rank=0, config=config, problem=SimpleNamespace(objective=objective))


def manifest_of(trainer, step):
    return json.loads(json.dumps(checkpoint.manifest_for(trainer, step)))


def test_check_manifest_names_what_differs_and_accepts_more_steps(tmp_path):
    written = manifest_of(fake_trainer(), 40)
    checkpoint.check_manifest(written, fake_trainer("train.steps=80", "run.log_every=5"), tmp_path)
    with pytest.raises(ValueError, match=r"differs in: train.batch_size, train.seed\)"):
        checkpoint.check_manifest(written, fake_trainer("train.seed=3", "train.batch_size=2"), tmp_path)
    with pytest.raises(ValueError, match="it is at step 40, after the end of this run \\(train.steps = 30\\)"):
        checkpoint.check_manifest(written, fake_trainer("train.steps=30"), tmp_path)


def test_compressed_local_sgd_keeps_its_steps_only_after_a_final_extra_round(tmp_path):
    algo = ("train.algorithm=compressed_local_sgd", "compressed_local_sgd.period=8", "compressed_local_sgd.ratio=0.1")
    mid_run = manifest_of(fake_trainer(*algo, "train.steps=60"), 40)  # no final round yet
    checkpoint.check_manifest(mid_run, fake_trainer(*algo, "train.steps=100"), tmp_path)
    at_end = manifest_of(fake_trainer(*algo, "train.steps=60"), 60)  # 60 % 8 != 0: the extra round is in it
    with pytest.raises(ValueError, match="resume with train.steps = 60"):
        checkpoint.check_manifest(at_end, fake_trainer(*algo, "train.steps=100"), tmp_path)
    on_period = manifest_of(fake_trainer(*algo, "train.steps=64"), 64)  # the last round was due anyway
    checkpoint.check_manifest(on_period, fake_trainer(*algo, "train.steps=100"), tmp_path)


def test_rank_file_checks(tmp_path):
    record = {"rank": 1, "step": 40}
    digest_ = checkpoint.write_npz_atomic(tmp_path / "rank-00001.npz", {"state.json": np.array(json.dumps(record))})
    assert digest_ == hashlib.sha256((tmp_path / "rank-00001.npz").read_bytes()).hexdigest()  # hashed as written
    manifest = {"step": 40, "checksums": {"rank-00001.npz": digest_}}
    assert json.loads(str(checkpoint.read_rank_file(tmp_path, manifest, 1)["state.json"])) == record
    with pytest.raises(checkpoint.Damaged, match="holds step 40, the manifest step 20"):
        checkpoint.read_rank_file(tmp_path, {"step": 20}, 1)
    (tmp_path / "rank-00001.npz").rename(tmp_path / "rank-00000.npz")
    no_checksums = {"step": 40}  # nothing to compare the bytes with: the recorded rank catches the swap
    with pytest.raises(checkpoint.Damaged, match="rank-00000.npz holds the state of rank 1"):
        checkpoint.read_rank_file(tmp_path, no_checksums, 0)
    with pytest.raises(checkpoint.Damaged, match="rank-00001.npz is missing"):
        checkpoint.read_rank_file(tmp_path, manifest, 1)


def test_manifest_that_still_parses_but_changed_is_damaged(tmp_path):
    manifest = checkpoint.sealed(manifest_of(fake_trainer(), 40))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert checkpoint.read_manifest(tmp_path) == manifest
    manifest["config"]["train"]["seed"] = 1  # one flipped digit
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(checkpoint.Damaged, match="manifest.json does not match its own checksum"):
        checkpoint.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(checkpoint.Damaged, match="manifest.json is not a JSON object"):
        checkpoint.read_manifest(tmp_path)


def test_divergence_after_a_fallback_names_the_checkpoint_resumed_from(copy):
    truncate(copy / "checkpoints" / "step-00000040")
    result = run_mpi(2, train_args(copy, resume=copy / "checkpoints"), env={"MPITRAIN_FAULT": "nan:0:25"}, timeout=120)
    assert result.returncode == 3, result.output
    assert f"the last good checkpoint is {copy / 'checkpoints' / 'step-00000020'} (step 20)" in result.stderr
