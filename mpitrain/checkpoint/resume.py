"""Resuming: which step folders to try, checking each on every rank, falling back from a
damaged one to the newest older intact one."""
from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..atomic import replacing
from ..plot import read_metrics
from ..runtime import JobError, agree
from .rule import comparable_tree, differences, steps_refusal
from .store import LATEST, MANIFEST, SEAL, STEP_NAME, manifest_digest, manifest_for, rank_file, restore, step_folders


class Damaged(Exception):
    """A checkpoint file that cannot be trusted; the message says which file and why."""


class Plan(NamedTuple):
    """The step folders a resume tries, in order; what is already known to be damaged; and
    whether the user named one step folder (then there is no fallback)."""

    folders: list
    notes: list
    explicit: bool


def is_step_folder(path: Path) -> bool:
    return path.is_dir() and (STEP_NAME.fullmatch(path.name) is not None or (path / MANIFEST).is_file())


def read_pointer(root: Path):
    """``(step, folder)`` named by ``root/latest``; raises Damaged when it is missing or unreadable."""
    pointer = root / LATEST
    if not pointer.exists():
        raise Damaged(f"checkpoint pointer {pointer} is missing")
    try:
        record = json.loads(pointer.read_text())
        return int(record["step"]), root / record["directory"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Damaged(f"checkpoint pointer {pointer} is unreadable ({type(exc).__name__}: {exc})") from None


def plan_resume(path) -> Plan:
    """The folders to try for ``--resume path``: a step folder alone, or a checkpoints folder's
    ``latest`` then its older step folders, newest first. ValueError when there is nothing."""
    path = Path(path)
    if is_step_folder(path):
        return Plan([path], [], True)
    found = step_folders(path) if path.is_dir() else []
    if not found and not (path / LATEST).exists():
        raise ValueError(f"no checkpoint at {path}: expected a checkpoints folder (with '{LATEST}') "
                         "or one of its step-* folders")
    newest_first = [folder for _, folder in reversed(found)]
    try:
        step, named = read_pointer(path)
    except Damaged as exc:
        return Plan(newest_first, [str(exc)], False)
    older = [folder for s, folder in reversed(found) if s < step]
    if named.is_dir():
        return Plan([named, *older], [], False)
    return Plan(older, [f"checkpoint {named} named by {path / LATEST} is missing"], False)


def has_checkpoint(root) -> bool:
    """Whether ``root`` holds anything to resume from (for ``--resume auto``): a ``latest``,
    or a complete step folder (a run killed while writing its first one has none)."""
    root = Path(root)
    return (root / LATEST).is_file() or any((folder / MANIFEST).is_file() for _, folder in step_folders(root))


def resolve(path) -> Path:
    """The step folder ``path`` names first: a step folder itself, or what a checkpoints folder's
    ``latest`` names (its newest step folder when ``latest`` is unusable). Unverified."""
    plan = plan_resume(path)
    if not plan.folders:
        raise ValueError(f"no checkpoint at {path}: {'; '.join(plan.notes)}")
    return plan.folders[0]


# --- checking a checkpoint ---------------------------------------------------------------

def read_manifest(folder: Path) -> dict:
    """The manifest of ``folder``; raises Damaged when it is missing or unreadable."""
    path = folder / MANIFEST
    if not path.is_file():
        raise Damaged(f"{MANIFEST} is missing: not a complete checkpoint")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise Damaged(f"{MANIFEST} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict):
        raise Damaged(f"{MANIFEST} is not a JSON object")
    if "n_params" not in manifest and "n_features" in manifest:  # written before non-linear models
        manifest["n_params"] = manifest["n_features"]
    missing = [key for key in ("step", "ranks", "n_params", "dtype", "config") if key not in manifest]
    if missing or not isinstance(manifest["config"], dict):
        raise Damaged(f"{MANIFEST} lacks {', '.join(missing or ['config'])}")
    if SEAL in manifest and manifest[SEAL] != manifest_digest(manifest):  # no seal: written before seals
        raise Damaged(f"{MANIFEST} does not match its own checksum")
    return manifest


def read_rank_file(folder: Path, manifest: dict, rank: int) -> dict:
    """This rank's arrays from ``folder``, once its bytes match the manifest's checksum and its
    record names this rank and the manifest's step; raises Damaged otherwise."""
    name = rank_file(rank)
    try:
        data = (folder / name).read_bytes()
    except FileNotFoundError:
        raise Damaged(f"{name} is missing") from None
    except OSError as exc:
        raise Damaged(f"{name} is unreadable ({exc.strerror or exc})") from None
    checksums = manifest.get("checksums")  # None: written before checksums were recorded
    if checksums is not None and name not in checksums:
        raise Damaged(f"the manifest has no checksum for {name}")
    if checksums is not None and hashlib.sha256(data).hexdigest() != checksums[name]:
        raise Damaged(f"checksum mismatch in {name}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        record = json.loads(str(arrays["state.json"]))
        if not isinstance(record, dict):
            raise ValueError("state.json is not a JSON object")
    except Exception as exc:  # untrusted bytes: BadZipFile, EOFError, ValueError, KeyError, zlib.error, ...
        raise Damaged(f"{name} is unreadable ({type(exc).__name__}: {exc})") from None
    if record.get("rank", rank) != rank:
        raise Damaged(f"{name} holds the state of rank {record['rank']}")
    if record.get("step") != manifest["step"]:
        raise Damaged(f"{name} holds step {record.get('step')}, the manifest step {manifest['step']}")
    return arrays


def check_manifest(manifest: dict, trainer, folder) -> None:
    """Raise ValueError when the checkpoint was written by another kind of run (the module
    doc says what may differ)."""
    here = manifest_for(trainer, 0)
    if manifest["ranks"] != here["ranks"]:
        raise ValueError(f"checkpoint {folder} was written by {manifest['ranks']} ranks; this run has "
                         f"{here['ranks']} (resume with the same number of ranks)")
    if manifest["n_params"] != here["n_params"] or manifest["dtype"] != here["dtype"]:
        raise ValueError(f"checkpoint {folder} holds d={manifest['n_params']} {manifest['dtype']} "
                         f"parameters; this run has d={here['n_params']} {here['dtype']}")
    differ = differences(comparable_tree(manifest["config"]), comparable_tree(here["config"]))
    if differ:
        raise ValueError(f"checkpoint {folder} was written with another configuration "
                         f"(differs in: {', '.join(differ)}); resume with the config it was written with")
    refusal = steps_refusal(manifest, trainer.config)
    if refusal:
        raise ValueError(f"checkpoint {folder} cannot continue with this train.steps: {refusal}")


# --- resuming ----------------------------------------------------------------------------

class Resumed(NamedTuple):
    step: int  # the step the run continues from
    folder: Path  # the step folder it was restored from


def from_rank0(comm, action, what: str):
    """``action()`` run on rank 0 alone and its result sent to all ranks; ValueError / OSError /
    JobError there becomes one JobError on every rank."""
    result, error = None, None
    if comm.Get_rank() == 0:
        try:
            result = action()
        except (JobError, ValueError, OSError) as exc:
            error = str(exc)
    result, error = comm.bcast((result, error), root=0)
    if error is not None:
        raise JobError(f"{what}: {error}")
    return result


def manifest_or_damage(folder: Path):
    """``(manifest, None)``, or ``(None, why)`` when the manifest cannot be trusted."""
    try:
        return read_manifest(folder), None
    except Damaged as exc:
        return None, str(exc)


def try_folder(trainer, folder: Path):
    """Restore every rank from ``folder`` if it is intact on all ranks (collective): returns
    ``(step, None)``, or ``(None, what is damaged)`` (e.g. ``rank 1: checksum mismatch in
    rank-00001.npz``) having restored nothing."""
    comm = trainer.comm
    manifest, damage = from_rank0(comm, lambda: manifest_or_damage(folder), what="resuming")
    if damage is not None:
        return None, damage
    agree(comm, lambda: check_manifest(manifest, trainer, folder), what="resuming")
    arrays, mine = None, None
    try:
        arrays = read_rank_file(folder, manifest, trainer.rank)
    except Damaged as exc:
        mine = f"rank {trainer.rank}: {exc}"
    damaged = [why for why in comm.allgather(mine) if why is not None]
    if damaged:
        return None, "; ".join(damaged)
    return agree(comm, lambda: restore(trainer, arrays), what="resuming"), None


def resume_from(trainer, path) -> Resumed:
    """Restore every rank from the newest intact checkpoint at ``path`` (collective): a step
    folder named explicitly must be intact; a checkpoints folder falls back from a damaged one
    to the newest older intact one, and rank 0 warns once about what it skipped."""
    comm = trainer.comm
    plan = from_rank0(comm, lambda: plan_resume(path), what="resuming")
    notes = list(plan.notes)
    for folder in plan.folders:
        step, damage = try_folder(trainer, folder)
        if damage is None:
            if notes and comm.Get_rank() == 0:
                print(f"mpitrain: warning: {'; '.join(notes)}; resuming from {folder}", file=sys.stderr, flush=True)
            return Resumed(step, folder)
        if plan.explicit:
            parent = folder.parent
            hint = f"; --resume {parent} resumes the newest intact one" if (parent / LATEST).exists() else ""
            raise JobError(f"resuming: checkpoint {folder} is damaged ({damage}){hint}")
        notes.append(f"checkpoint {folder} is damaged ({damage})")
    raise JobError(f"resuming: no intact checkpoint in {path}: {'; '.join(notes)}")


def load(trainer, path) -> int:
    """:func:`resume_from`, returning the step alone."""
    return resume_from(trainer, path).step


def truncate_metrics(path, step: int) -> None:
    """Keep the records of ``path`` up to ``step`` (rank 0, before appending on resume)."""
    path = Path(path)
    if not path.exists():
        return
    kept = [record for record in read_metrics(path) if record["step"] <= step]
    with replacing(path) as handle:
        handle.writelines(json.dumps(record) + "\n" for record in kept)
