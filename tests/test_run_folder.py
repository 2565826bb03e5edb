"""The run folder (mpitrain.rundir): names that cannot collide, paths expanded, a lock that names
its holder and is taken over only when stale, reuse refused unless asked for."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from mpitrain import rundir
from mpitrain.config import load_config
from mpitrain.runtime import JobError

SMALL = ["data.n_samples=2000", "data.n_features=50", "train.steps=60", "run.reference=false"]


def config(*overrides):
    return load_config(None, [*SMALL, *overrides])


def test_default_folders_differ_by_seed_and_by_any_value_that_changes_the_numbers():
    base = rundir.folder_name(config(), 2)
    assert rundir.folder_name(config(), 2) == base
    assert rundir.folder_name(config("train.seed=1"), 2) != base
    assert rundir.folder_name(config("step_size.value=0.05"), 2) != base
    assert rundir.folder_name(config("data.data_seed=3"), 2) != base
    assert rundir.folder_name(config(), 4) != base
    assert base.is_absolute()


def test_home_and_variables_expand_and_unset_or_empty_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCRATCH_FOR_TEST", str(tmp_path / "scratch"))
    assert rundir.folder_name(config("run.output_dir='~/runs/{seed}'"), 1) == tmp_path / "home/runs/0"
    assert rundir.folder_name(config("run.output_dir='$SCRATCH_FOR_TEST/a'"), 1) == tmp_path / "scratch/a"
    assert rundir.folder_name(config("run.output_dir='${SCRATCH_FOR_TEST}/b'"), 1) == tmp_path / "scratch/b"
    monkeypatch.delenv("UNSET_FOR_TEST", raising=False)
    with pytest.raises(JobError, match=r"\$UNSET_FOR_TEST in '\$UNSET_FOR_TEST/x' is not set"):
        rundir.folder_name(config("run.output_dir='$UNSET_FOR_TEST/x'"), 1)
    for empty in ("''", "'  '"):
        with pytest.raises(JobError, match="must not be empty"):
            rundir.folder_name(config(f"run.output_dir={empty}"), 1)
    with pytest.raises(JobError, match="bad placeholder"):
        rundir.folder_name(config("run.output_dir='runs/{nope}'"), 1)


def claim(path, cfg=None, **kwargs):
    kwargs.setdefault("resume", False)
    kwargs.setdefault("overwrite", False)
    return rundir.RunFolder.claim(path, cfg or config(), **kwargs)


def test_a_second_claim_is_refused_naming_the_holder(tmp_path):
    first = claim(tmp_path / "run")
    try:
        with pytest.raises(JobError) as info:
            claim(tmp_path / "run")
        message = str(info.value)
        assert "is in use by another run" in message
        assert f"pid {os.getpid()}" in message and f"host {socket.gethostname()}" in message
    finally:
        first.release()
    assert not (tmp_path / "run" / rundir.LOCK).exists()
    claim(tmp_path / "run").release()  # free again


def write_lock(folder, holder, age):
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / rundir.LOCK
    lock.write_text(json.dumps(holder))
    stamp = time.time() - age
    os.utime(lock, (stamp, stamp))


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_locks_are_taken_over_with_a_note_and_live_ones_are_not(tmp_path, monkeypatch):
    here = socket.gethostname()
    write_lock(tmp_path / "dead", {"host": here, "pid": dead_pid()}, age=1)
    folder = claim(tmp_path / "dead")
    assert any("took over the stale lock" in note for note in folder.notes)
    folder.release()

    write_lock(tmp_path / "silent", {"host": "node-elsewhere", "pid": 1}, age=rundir.STALE_SECONDS + 5)
    claim(tmp_path / "silent").release()

    write_lock(tmp_path / "requeued", {"host": "node-elsewhere", "pid": 1, "slurm_job": "77"}, age=3)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    claim(tmp_path / "requeued").release()  # the same job, requeued: its earlier attempt is over
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv("SLURM_RESTART_COUNT")

    write_lock(tmp_path / "fresh", {"host": "node-elsewhere", "pid": 1, "slurm_job": "77"}, age=3)
    with pytest.raises(JobError, match="in use by another run .*host node-elsewhere, pid 1, Slurm job 77"):
        claim(tmp_path / "fresh")
    assert (tmp_path / "fresh" / rundir.LOCK).exists()  # a live lock is left alone


def test_heartbeat_keeps_the_lock_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "HEARTBEAT_SECONDS", 0.05)
    folder = claim(tmp_path / "run")
    lock = tmp_path / "run" / rundir.LOCK
    try:
        old = time.time() - 1000
        os.utime(lock, (old, old))
        deadline = time.monotonic() + 10
        while lock.stat().st_mtime < old + 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.stat().st_mtime > old + 500
    finally:
        folder.release()


def test_a_folder_with_results_is_refused_unless_resumed_or_overwritten(tmp_path):
    path = tmp_path / "run"
    folder = claim(path)
    rundir.write_run_record(path, config(), "d" * 64, "then", resumed=False)
    (path / "metrics.jsonl").write_text('{"step": 0}\n')
    (path / "notes.txt").write_text("the user's own file")
    folder.release()
    with pytest.raises(JobError, match="already holds the results of a run, started then; pass --resume auto"):
        claim(path)
    overwritten = claim(path, overwrite=True)
    overwritten.release()
    assert not (path / "metrics.jsonl").exists() and not (path / "run.json").exists()
    assert (path / "notes.txt").read_text() == "the user's own file"


def test_resume_into_a_folder_of_another_configuration_names_the_fields(tmp_path):
    path = tmp_path / "run"
    from mpitrain.checkpoint import config_digest

    theirs = config("step_size.value=0.3")
    claim(path, theirs).release()
    rundir.write_run_record(path, theirs, config_digest(theirs), "then", resumed=False)
    with pytest.raises(JobError, match="holds the results of another run .*differs in: step_size.value"):
        claim(path, config(), resume=True)
    claim(path, theirs, resume=True).release()  # the same run: accepted


def test_an_unwritable_place_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(JobError, match=r"cannot create .*file/run: Not a directory"):
        claim(blocker / "run")


def test_fields_a_model_does_not_read_leave_the_digest_alone():
    """An mlp's layer sizes in a logistic run change nothing it computes: same digest, so the same
    default folder and a resumable checkpoint; in an mlp run they are the model."""
    from mpitrain.checkpoint import config_digest

    linear = config_digest(load_config(None, []))
    for override in ("objective.hidden=[128]", "objective.activation='tanh'", "objective.head='squared'",
                     "objective.init_seed=3", "data.n_classes=4"):
        assert config_digest(load_config(None, [override])) == linear, override
    mlp = config_digest(load_config(None, ["objective.name='mlp'"]))
    for override in ("objective.hidden=[128]", "objective.activation='tanh'", "objective.head='squared'",
                     "objective.init_seed=3"):
        assert config_digest(load_config(None, ["objective.name='mlp'", override])) != mlp, override
    multiclass = ["data.dataset='synthetic-multiclass'"]
    assert config_digest(load_config(None, [*multiclass, "data.n_classes=4"])) != config_digest(load_config(None, multiclass))
