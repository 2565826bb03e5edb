"""The run folder: where one run keeps its results, owned by that run alone.

A run writes everything into its folder (``run.output_dir``): ``run.json`` (who it is),
``config.json``, ``metrics.jsonl``, ``summary.json``, ``train.log`` (rank 0's output),
``parameters.npy``, the algorithm's plots, ``checkpoints/``. Rules that keep one run's results
from being lost or mixed with another's:

- **Named from what it is.** ``run.output_dir`` is a template; ``~`` and ``$VARIABLES`` are
  expanded (an unset variable or an empty name is an error), placeholders ``{algorithm}``,
  ``{dataset}``, ``{size}``, ``{seed}`` and ``{config}`` are filled in. ``{config}`` is the first 8
  hex digits of the digest of every config field that changes the numbers a run produces
  (:func:`mpitrain.checkpoint.config_digest`), so the default
  ``runs/{algorithm}-{dataset}-K{size}-{config}`` gives runs that differ in any such value
  (seed included) different folders; runs that differ only in where, how long and how they
  report share one, which is how ``--resume auto`` finds the run it continues.
- **Checked before any long work.** Rank 0 creates the folder and its lock before the data
  are loaded or f* is solved, so an unwritable folder is one line within a second.
- **Locked while it runs.** ``.lock`` is created exclusively (O_EXCL) and names its holder
  (host, pid, Slurm job, start time); rank 0 refreshes its time stamp every
  :data:`HEARTBEAT_SECONDS` from a background thread and removes it at the end. A second run
  is refused with a line naming the holder. A lock is stale, and taken over with a note, when
  its process is gone (same host), it has not been refreshed for :data:`STALE_SECONDS` (a
  crashed job on another node), or it is an earlier attempt of the same Slurm job (a requeued
  job keeps ``SLURM_JOB_ID`` and counts up ``SLURM_RESTART_COUNT``).
- **Never overwritten silently.** A folder that holds results (``run.json``, ``metrics.jsonl``,
  ``summary.json`` or ``checkpoints/``) is refused unless the user asks to continue it
  (``--resume``: the results must be of a run with the same config digest) or to replace it
  (``--overwrite``: the previous results are removed first; other files are left alone).
"""
from __future__ import annotations

import json
import os
import shutil
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .runtime import JobError

DEFAULT_TEMPLATE = "runs/{algorithm}-{dataset}-K{size}-{config}"
LOCK = ".lock"
RUN_RECORD = "run.json"
LOG = "train.log"
#: what a run writes into its folder; --overwrite removes exactly these
RESULT_FILES = ("run.json", "config.json", "metrics.jsonl", "summary.json", "parameters.npy", "train.log",
                "delays.npz", "delays.png")
RESULT_FOLDERS = ("checkpoints",)
#: files whose presence means the folder holds a run's results
EVIDENCE = ("run.json", "metrics.jsonl", "summary.json", "checkpoints")
HEARTBEAT_SECONDS = 20.0
VARIABLE = re.compile(r"\$\$|\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})|\$")
STALE_SECONDS = 120.0


def expand_path(template: str) -> str:
    """``template`` with ``~`` and ``$VAR`` / ``${VAR}`` expanded; ConfigError-style JobError when
    a variable is unset or the result is empty."""
    field = "config field 'run.output_dir'"
    if not template.strip():
        raise JobError(f"{field}: must not be empty (give a folder, e.g. \"runs/{{algorithm}}\")")

    def variable(match):
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(2)
        if name is None:
            raise JobError(f"{field}: a '$' in {template!r} is not followed by a variable name "
                           "(write $$ for a literal '$')")
        if name not in os.environ:
            raise JobError(f"{field}: environment variable ${name} in {template!r} is not set")
        return os.environ[name]

    expanded = VARIABLE.sub(variable, template)
    expanded = os.path.expanduser(expanded)
    if expanded.startswith("~"):
        raise JobError(f"{field}: cannot expand {expanded.split('/')[0]!r} in {template!r} (no such user)")
    return expanded


def folder_name(config, size: int) -> Path:
    """The run's folder as an absolute path: the template of ``run.output_dir`` filled in."""
    from .checkpoint import config_digest

    template = expand_path(config.run.output_dir)
    dataset = Path(config.data.dataset).name
    try:
        name = template.format(algorithm=config.train.algorithm, dataset=dataset, size=size,
                               seed=config.train.seed, config=config_digest(config)[:8])
    except (KeyError, IndexError, ValueError) as exc:
        raise JobError(f"config field 'run.output_dir': bad placeholder {exc} in {config.run.output_dir!r} "
                       "(known: {algorithm}, {dataset}, {size}, {seed}, {config})") from None
    if not name.strip():
        raise JobError("config field 'run.output_dir': must not be empty")
    return Path(name).absolute()


def holds_results(folder: Path) -> bool:
    return any((folder / name).exists() for name in EVIDENCE)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def describe_holder(holder: dict, age: float) -> str:
    parts = [f"host {holder.get('host', '?')}", f"pid {holder.get('pid', '?')}"]
    if holder.get("slurm_job"):
        parts.append(f"Slurm job {holder['slurm_job']}")
    if holder.get("started"):
        parts.append(f"started {holder['started']}")
    parts.append(f"last seen {age:.0f} s ago")
    return ", ".join(parts)


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs on this host (a zombie, exited but not yet reaped, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def lock_is_stale(holder: dict, age: float) -> bool:
    """Its process is gone (same host), it has not been refreshed for STALE_SECONDS, or it is
    an earlier attempt of this same Slurm job (requeued: same job id, another restart count)."""
    if age > STALE_SECONDS:
        return True
    job = os.environ.get("SLURM_JOB_ID")
    if job is not None and holder.get("slurm_job") == job \
            and holder.get("slurm_restart") != os.environ.get("SLURM_RESTART_COUNT"):
        return True
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return not process_alive(holder["pid"])
    return False


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class RunFolder:
    """The folder of one run, locked by rank 0 while the run lives (see the module doc)."""

    path: Path
    notes: list  # lines rank 0 prints once the run starts (a stale lock taken over, ...)
    _lock_fd: int = -1
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    # --- taking the folder (rank 0) -------------------------------------------------------

    @classmethod
    def claim(cls, path: Path, config, *, resume: bool, overwrite: bool) -> "RunFolder":
        """Create, lock and check ``path`` for a run of ``config`` (rank 0)."""
        folder = cls(path=path, notes=[])
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JobError(f"config field 'run.output_dir': cannot create {path}: {exc.strerror or exc}") from None
        if not path.is_dir():
            raise JobError(f"config field 'run.output_dir': {path} exists and is not a folder")
        folder._lock()
        try:
            folder._check_reuse(config, resume=resume, overwrite=overwrite)
        except BaseException:
            folder.release()
            raise
        return folder

    def _lock(self) -> None:
        lock = self.path / LOCK
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": now_text(),
                  "slurm_job": os.environ.get("SLURM_JOB_ID"), "slurm_restart": os.environ.get("SLURM_RESTART_COUNT")}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._break_stale_lock(lock)
                continue
            except OSError as exc:
                raise JobError(f"config field 'run.output_dir': cannot write in {self.path}: "
                               f"{exc.strerror or exc}") from None
            try:
                os.write(fd, (json.dumps(holder) + "\n").encode())
                os.fsync(fd)
            except OSError as exc:
                os.close(fd)
                lock.unlink(missing_ok=True)
                raise JobError(f"config field 'run.output_dir': cannot write in {self.path}: "
                               f"{exc.strerror or exc}") from None
            self._lock_fd = fd
            self._start_heartbeat(lock)
            return
        raise JobError(f"run.output_dir {self.path} is locked by another run (its lock file {lock} "
                       "keeps coming back)")

    def _break_stale_lock(self, lock: Path) -> None:
        holder = read_json(lock) or {}
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile: try again
        if not lock_is_stale(holder, age):
            raise JobError(f"run.output_dir {self.path} is in use by another run ({describe_holder(holder, age)}); "
                           f"wait for it to end or choose another run.output_dir (if that run is dead, delete {lock})")
        lock.unlink(missing_ok=True)
        self.notes.append(f"mpitrain: note: took over the stale lock of {self.path} "
                          f"({describe_holder(holder, age)})")

    def _start_heartbeat(self, lock: Path) -> None:
        self._stop = threading.Event()

        def beat():
            while not self._stop.wait(HEARTBEAT_SECONDS):
                try:
                    os.utime(lock)
                except OSError:
                    pass

        self._thread = threading.Thread(target=beat, name="mpitrain-lock-heartbeat", daemon=True)
        self._thread.start()

    def _check_reuse(self, config, *, resume: bool, overwrite: bool) -> None:
        from .checkpoint import config_digest

        digest = config_digest(config)
        if not holds_results(self.path):
            return
        record = read_json(self.path / RUN_RECORD) or {}
        if overwrite:
            self.remove_results()
            self.notes.append(f"mpitrain: note: --overwrite: removed the previous results in {self.path}")
            return
        theirs = record.get("config_digest")
        if resume and theirs in (None, digest):
            return  # the same run (or one from before run.json: the checkpoint check decides)
        if resume:
            raise JobError(f"run.output_dir {self.path} holds the results of another run "
                           f"(config {theirs[:8]}, this run's is {digest[:8]}{differing(record, config)}); "
                           "resume it with the config it was started with, or choose another run.output_dir")
        started = f", started {record['started']}" if record.get("started") else ""
        raise JobError(f"run.output_dir {self.path} already holds the results of a run{started}; "
                       "pass --resume auto to continue it, --overwrite to replace them, "
                       "or choose another run.output_dir")

    def remove_results(self) -> None:
        for name in RESULT_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in RESULT_FOLDERS:
            shutil.rmtree(self.path / name, ignore_errors=True)

    # --- while it runs ----------------------------------------------------------------------

    def release(self) -> None:
        """Stop the heartbeat and remove the lock (rank 0, at the end of the run)."""
        if self._stop is not None:
            self._stop.set()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
            (self.path / LOCK).unlink(missing_ok=True)


def differing(record: dict, config) -> str:
    """'; differs in: a, b' between the config recorded in run.json and ``config``, over the
    fields that change a run's numbers."""
    from .checkpoint import comparable_config

    theirs, ours = record.get("config"), comparable_config(config)
    if not isinstance(theirs, dict):
        return ""
    names = [f"{section}.{name}" for section in sorted(ours) for name in sorted(ours[section])
             if section in theirs and isinstance(theirs[section], dict)
             and name in theirs[section] and theirs[section][name] != ours[section][name]]
    return f"; differs in: {', '.join(names[:6])}" if names else ""


def write_run_record(path: Path, config, digest: str, started: str, resumed: bool) -> None:
    """run.json: who the run in this folder is (kept across resumes)."""
    from .atomic import write_json

    previous = read_json(path / RUN_RECORD) if resumed else None
    record = {
        "config_digest": digest,
        "started": (previous or {}).get("started", started),
        "resumed": [*((previous or {}).get("resumed", [])), started] if resumed else [],
        "config": config.to_dict(),
    }
    write_json(path / RUN_RECORD, record)
