"""Writing checkpoints: one file per rank, a sealed manifest with every file's SHA-256, the
``latest`` pointer, and the rotation that keeps ``run.keep_checkpoints`` of them."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np

from .. import backend
from ..runtime import JobError, agree
from .files import flatten, unflatten, write_json_durable, write_npz_atomic
from .rule import config_digest

LATEST = "latest"
MANIFEST = "manifest.json"
#: the manifest's own SHA-256 (of its other fields), so a damaged manifest that still parses is caught
SEAL = "manifest_sha256"
STEP_NAME = re.compile(r"step-(\d+)")


def capture(trainer, step: int, state=None) -> dict:
    """This rank's state at a step boundary, as npz members (collective for no algorithm).
    ``state``: the algorithm's state_dict when the caller already took it. The record names
    the rank and step, so a file put in the wrong place is caught on load."""
    arrays: dict = {}
    tree = backend.host_tree(trainer.state_dict(state))  # nested, arrays inside; device arrays copied to the host
    record = {"rank": trainer.rank, "step": int(step), **flatten(tree, arrays, "")}
    arrays["state.json"] = np.array(json.dumps(record))
    return arrays


def restore(trainer, arrays) -> int:
    """Load a rank's state captured by :func:`capture` into the trainer; returns its step."""
    record = json.loads(str(arrays["state.json"]))
    tree = {key: unflatten(value, arrays) for key, value in record.items() if key not in ("rank", "step")}
    trainer.load_state_dict(tree)
    return int(record["step"])


def step_directory(step: int) -> str:
    return f"step-{step:08d}"


def rank_file(rank: int) -> str:
    return f"rank-{rank:05d}.npz"


def manifest_for(trainer, step: int, checksums: dict | None = None) -> dict:
    """What rank 0 writes beside the rank files: enough to refuse another run's checkpoint
    and to check every rank file (``checksums``: file name -> SHA-256)."""
    objective = trainer.problem.objective
    manifest = {
        "step": int(step),
        "ranks": trainer.size,
        "n_params": int(objective.n_params),
        "dtype": np.dtype(objective.dtype).name,
        "algorithm": trainer.config.train.algorithm,
        "config_digest": config_digest(trainer.config),
        "config": trainer.config.to_dict(),
    }
    if checksums is not None:
        manifest["checksums"] = checksums
    return manifest


def manifest_digest(manifest: dict) -> str:
    """SHA-256 of the manifest's canonical JSON, its seal left out."""
    body = {key: value for key, value in manifest.items() if key != SEAL}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def sealed(manifest: dict) -> dict:
    return {**manifest, SEAL: manifest_digest(manifest)}


def step_folders(root) -> list:
    """``(step, folder)`` of the step-* folders under ``root``, oldest first."""
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return []
    found = [(int(match.group(1)), entry) for entry in entries
             if (match := STEP_NAME.fullmatch(entry.name)) and entry.is_dir()]
    return sorted(found)


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
                (folder / MANIFEST).unlink(missing_ok=True)  # a folder being rewritten is no checkpoint

        agree(self.comm, lambda: naming(folder, make_folder), what="writing a checkpoint")
        mine = folder / rank_file(self.rank)
        digest = agree(self.comm, lambda: naming(mine, lambda: write_npz_atomic(mine, capture(trainer, step, state))),
                       what="writing a checkpoint")
        digests = self.comm.gather(digest, root=0)

        def publish():
            if self.rank == 0:
                checksums = {rank_file(rank): value for rank, value in enumerate(digests)}
                naming(folder / MANIFEST, lambda: write_json_durable(
                    folder / MANIFEST, sealed(manifest_for(trainer, step, checksums))))
                naming(self.root / LATEST, lambda: write_json_durable(
                    self.root / LATEST, {"step": int(step), "directory": folder.name}))
                self.prune(step, trainer.config.run.keep_checkpoints)

        agree(self.comm, publish, what="writing a checkpoint")
        return folder

    def prune(self, latest: int, keep: int) -> None:
        """Keep the ``keep`` newest step folders up to step ``latest``; remove the rest, older
        ones and any newer one (left by a trajectory abandoned for an older checkpoint)."""
        found = step_folders(self.root)
        kept = set([folder for step, folder in found if step <= latest][-keep:])
        for _, folder in found:
            if folder not in kept:
                shutil.rmtree(folder, ignore_errors=True)


def naming(path, action):
    """``action()``, with an OSError turned into a JobError that names ``path``."""
    try:
        return action()
    except OSError as exc:
        raise JobError(f"cannot write {path}: {exc.strerror or exc}") from None
