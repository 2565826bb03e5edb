"""Checkpoints: what a run needs to continue the same trajectory, written so a crash never
leaves a broken one.

Layout (one file per rank, a manifest, a pointer)::

    <output_dir>/checkpoints/
        latest                 {"step": 40, "directory": "step-00000040"}; rank 0 rewrites it last
        step-00000040/
            rank-00000.npz     rank 0's arrays and a JSON record of its scalars
            rank-00001.npz
            manifest.json      step, ranks, d, dtype, config digest; written after every rank file

Why one file per rank and not one file gathered by rank 0: per-rank state really differs
(sampler streams, error-feedback residuals, Local SGD's local models), and gathering it costs
rank 0 K times the state in memory and one link's bandwidth (d = 1e7 float64 on 64 ranks is
5 GB through one process), while K files are written in parallel, each by its owner.

Every file is written to a temporary name, fsynced, renamed, and its folder fsynced. A
checkpoint exists only once ``latest`` names it, and ``latest`` changes only after all rank
files and the manifest are durable, so a write interrupted at any point leaves the previous
checkpoint readable. Older step folders are removed after ``latest`` moves on.

Stopping: :class:`StopRequest` turns SIGTERM / SIGUSR1 (Slurm's warning before the time limit)
into a flag; at step boundaries about every half second the ranks take the maximum of their flags
(one small Allreduce) so all of them stop after the same step, write a checkpoint and exit with
:data:`EXIT_CHECKPOINTED`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np

from .metrics import write_json_atomic
from .plot import read_metrics
from .runtime import JobError, agree

#: exit code of a run that wrote a checkpoint and stopped on a signal (sysexits' EX_TEMPFAIL)
EXIT_CHECKPOINTED = 75
#: signals that ask a run to checkpoint and stop
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
#: config fields that may differ between a checkpoint and the run resuming it
DIGEST_EXCLUDED = {"run": ("checkpoint_every", "progress")}
LATEST = "latest"
MANIFEST = "manifest.json"


class Stopped(JobError):
    """The run wrote a checkpoint after a stop signal and ends with EXIT_CHECKPOINTED."""

    def __init__(self, message: str):
        super().__init__(message, code=EXIT_CHECKPOINTED)


def comparable_config(config) -> dict:
    """The config as a dict, less the fields a resumed run may change."""
    tree = config.to_dict()
    for section, names in DIGEST_EXCLUDED.items():
        for name in names:
            tree.get(section, {}).pop(name, None)
    return tree


def config_digest(config) -> str:
    """sha256 of the comparable config in canonical JSON."""
    text = json.dumps(comparable_config(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# --- durable files -----------------------------------------------------------------------

def fsync_directory(path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_npz_atomic(path, arrays: dict) -> None:
    """np.savez to a temporary file, fsync, rename over ``path``, fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_directory(path.parent)


def write_json_durable(path, payload: dict) -> None:
    write_json_atomic(path, payload)
    fsync_directory(Path(path).parent)


# --- one rank's state as arrays + JSON ---------------------------------------------------

def flatten(tree: dict, arrays: dict, prefix: str):
    """Split a nested state dict into ``arrays`` (name -> ndarray) and a JSON-able skeleton."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            out[key] = flatten(value, arrays, name)
        elif isinstance(value, np.ndarray):
            arrays[name] = value
            out[key] = {"__array__": name}
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out


def unflatten(skeleton, arrays):
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__array__"}:
            return arrays[skeleton["__array__"]]
        return {key: unflatten(value, arrays) for key, value in skeleton.items()}
    return skeleton


def capture(trainer, step: int, state=None) -> dict:
    """This rank's state at a step boundary, as npz members (collective for no algorithm).
    ``state``: the algorithm's state_dict when the caller already took it."""
    arrays: dict = {}
    record = {
        "step": int(step),
        "train_seconds": trainer.train_seconds,
        "stats": trainer.stats.as_dict(),
        "sampler": trainer.worker.sampler.state(),
        "algorithm": flatten(trainer.algorithm.state_dict() if state is None else state, arrays, "algorithm"),
    }
    arrays["state.json"] = np.array(json.dumps(record))
    return arrays


def restore(trainer, arrays) -> int:
    """Load a rank's state captured by :func:`capture`; returns its step."""
    record = json.loads(str(arrays["state.json"]))
    trainer.algorithm.load_state_dict(unflatten(record["algorithm"], arrays))
    trainer.worker.sampler.load(record["sampler"])
    trainer.stats.load(record["stats"])
    trainer.train_seconds = float(record["train_seconds"])
    return int(record["step"])


# --- the store ---------------------------------------------------------------------------

def step_directory(step: int) -> str:
    return f"step-{step:08d}"


def rank_file(rank: int) -> str:
    return f"rank-{rank:05d}.npz"


def manifest_for(trainer, step: int) -> dict:
    objective = trainer.problem.objective
    return {
        "step": int(step),
        "ranks": trainer.size,
        "n_features": int(objective.n_features),
        "dtype": np.dtype(objective.dtype).name,
        "algorithm": trainer.config.train.algorithm,
        "config_digest": config_digest(trainer.config),
        "config": comparable_config(trainer.config),
    }


class CheckpointStore:
    """The checkpoints of one run under ``root`` (collective: every rank calls save/load)."""

    def __init__(self, root, comm):
        self.root = Path(root)
        self.comm = comm
        self.rank = comm.Get_rank()

    def save(self, trainer, step: int, state=None) -> Path:
        """Write every rank's state at ``step`` (``state``: the algorithm's state_dict, when
        already taken); returns the step folder once ``latest`` names it."""
        folder = self.root / step_directory(step)

        def make_folder():
            if self.rank == 0:
                folder.mkdir(parents=True, exist_ok=True)

        agree(self.comm, make_folder, what="writing a checkpoint")
        agree(self.comm, lambda: write_npz_atomic(folder / rank_file(self.rank), capture(trainer, step, state)),
              what="writing a checkpoint")

        def publish():
            if self.rank == 0:
                write_json_durable(folder / MANIFEST, manifest_for(trainer, step))
                write_json_durable(self.root / LATEST, {"step": int(step), "directory": folder.name})
                self.prune(keep=folder.name)

        agree(self.comm, publish, what="writing a checkpoint")
        return folder

    def prune(self, keep: str) -> None:
        for old in self.root.glob("step-*"):
            if old.is_dir() and old.name != keep:
                shutil.rmtree(old, ignore_errors=True)


def has_checkpoint(root) -> bool:
    return (Path(root) / LATEST).is_file()


def resolve(path) -> Path:
    """The step folder meant by ``path``: a checkpoints folder (its ``latest``) or a step folder."""
    path = Path(path)
    if (path / LATEST).is_file():
        try:
            pointer = json.loads((path / LATEST).read_text())
            folder = path / pointer["directory"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"checkpoint pointer {path / LATEST} is unreadable ({exc})") from None
    elif path.is_dir():
        folder = path
    else:
        raise ValueError(f"no checkpoint at {path}: expected a checkpoints folder (with '{LATEST}') "
                         "or one of its step-* folders")
    if not (folder / MANIFEST).is_file():
        raise ValueError(f"{folder} is not a complete checkpoint (no {MANIFEST})")
    return folder


def check_manifest(manifest: dict, trainer, folder) -> None:
    """Raise ValueError when the checkpoint was written by another kind of run."""
    here = manifest_for(trainer, 0)
    if manifest["ranks"] != here["ranks"]:
        raise ValueError(f"checkpoint {folder} was written by {manifest['ranks']} ranks; this run has "
                         f"{here['ranks']} (resume with the same number of ranks)")
    if manifest["n_features"] != here["n_features"] or manifest["dtype"] != here["dtype"]:
        raise ValueError(f"checkpoint {folder} holds d={manifest['n_features']} {manifest['dtype']} "
                         f"parameters; this run has d={here['n_features']} {here['dtype']}")
    if manifest["config_digest"] != here["config_digest"]:
        differ = [f"{section}.{name}" for section in sorted(set(manifest["config"]) | set(here["config"]))
                  for name in sorted(set(manifest["config"].get(section, {})) | set(here["config"].get(section, {})))
                  if manifest["config"].get(section, {}).get(name) != here["config"].get(section, {}).get(name)]
        raise ValueError(f"checkpoint {folder} was written with another configuration "
                         f"(differs in: {', '.join(differ) or 'digest'}); resume with the config it was written with")


def load(trainer, path) -> int:
    """Restore every rank from the checkpoint at ``path`` (collective); returns its step."""
    def read():
        folder = resolve(path)
        manifest = json.loads((folder / MANIFEST).read_text())
        check_manifest(manifest, trainer, folder)
        with np.load(folder / rank_file(trainer.rank), allow_pickle=False) as npz:
            return restore(trainer, {name: npz[name] for name in npz.files})

    steps = agree(trainer.comm, read, what="resuming")
    return steps


def truncate_metrics(path, step: int) -> None:
    """Keep the records of ``path`` up to ``step`` (rank 0, before appending on resume)."""
    path = Path(path)
    if not path.exists():
        return
    kept = [record for record in read_metrics(path) if record["step"] <= step]
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.writelines(json.dumps(record) + "\n" for record in kept)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class StopRequest:
    """Remembers a SIGTERM / SIGUSR1; :meth:`agreed` tells every rank whether any rank got one.

    The handler only sets a flag (it may run between any two bytecodes). The ranks compare
    flags with one small Allreduce, not at every step (with d = 300 a step of sync SGD is itself
    one latency-bound Allreduce, so a second one per step would add about as much latency again)
    but about every ``period`` seconds: each check also agrees on the longest time any rank
    took since the last one, and every rank derives the same next check step from it.
    ``install()`` before the training loop, ``restore()`` after it puts the previous handlers back.
    """

    def __init__(self, comm, period: float = 0.5, max_interval: int = 10000):
        self.comm = comm
        self.period = period  # seconds between checks, roughly
        self.max_interval = max_interval  # never more steps than this between checks
        self.received = 0  # the signal number, 0 while none arrived
        self.interval = 1  # steps between checks (the same on every rank)
        self.next_check = 0  # the step boundary of the next check
        self._last = time.monotonic()
        self._buffer = np.zeros(2)
        self._previous = {}

    def _handle(self, signum, frame):
        self.received = signum

    def install(self) -> "StopRequest":
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._last = time.monotonic()
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def agreed(self, step: int) -> int:
        """At step boundary ``step``: the largest signal number any rank received, 0 if none
        or if this is not a check step (collective on check steps)."""
        if self.comm.Get_size() == 1:
            return self.received
        if step < self.next_check:
            return 0
        from mpi4py import MPI

        now = time.monotonic()
        self._buffer[:] = (self.received, now - self._last)
        self.comm.Allreduce(MPI.IN_PLACE, self._buffer, op=MPI.MAX)
        self._last = now
        received, elapsed = int(self._buffer[0]), float(self._buffer[1])
        scaled = int(self.interval * self.period / max(elapsed, 1e-9))
        self.interval = max(1, min(scaled, 2 * self.interval, self.max_interval))
        self.next_check = step + self.interval
        return received


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
