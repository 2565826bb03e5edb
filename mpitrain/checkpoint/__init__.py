"""Checkpoints: what a run needs to continue the same trajectory, written so a crash never
leaves a broken one, and checked so a damaged one is never resumed.

Layout (one file per rank, a manifest, a pointer)::

    <output_dir>/checkpoints/
        latest                 {"step": 40, "directory": "step-00000040"}; rank 0 rewrites it last
        step-00000020/         an older checkpoint (run.keep_checkpoints are kept, default 2)
        step-00000040/
            rank-00000.npz     rank 0's arrays and a JSON record of its scalars, its rank and step
            rank-00001.npz
            manifest.json      step, ranks, d, dtype, the config and its digest, the SHA-256 of
                               every rank file and its own; written after every rank file

Why one file per rank and not one file gathered by rank 0: per-rank state really differs
(sampler streams, error-feedback residuals, Local SGD's local models), and gathering it costs
rank 0 K times the state in memory and one link's bandwidth (d = 1e7 float64 on 64 ranks is
5 GB through one process), while K files are written in parallel, each by its owner. Each rank
hashes its file's bytes as it writes them; rank 0 gathers the K digests into the manifest.

Every file is written to a temporary name, fsynced, renamed, and its folder fsynced. A
checkpoint exists only once ``latest`` names it, and ``latest`` changes only after all rank
files and the manifest are durable, so a write interrupted at any point leaves the previous
checkpoint readable. After ``latest`` moves on, rank 0 keeps the ``run.keep_checkpoints``
newest step folders up to it and removes the others (older ones, and newer ones left by a
trajectory that was abandoned when an older checkpoint was resumed).

What a resumed run may change. A checkpoint is resumed only by a run that computes the same
iterates from it: the same algorithm and options, data, objective, step size, seed, mini-batch
size, number of ranks, d and dtype. A resumed run may change where and how long it runs and
how it reports, never what it computes: every field of ``[run]`` (output_dir, so a moved or
renamed run folder resumes; log_every; progress; reference; save_parameters;
checkpoint_every; keep_checkpoints), ``train.steps`` (train longer or shorter, but not to
before the checkpoint's step; for async_sgd, whose step is the store's version, not to a budget
of updates below it), ``train.device`` and ``train.cuda_aware_mpi``, and the option
sections of the algorithms the run does not use. Two exceptions make ``train.steps`` part of
the math: with ``local_sgd.schedule = "auto"`` the averaging period H is computed from
``train.steps``, so it must not change; and ``compressed_local_sgd`` also averages after its
last step, so a checkpoint written at the last step of a run, when that step is not a multiple
of the period, holds that extra round and resumes only with the same ``train.steps``. Any
other difference is refused with one line naming the fields (``differs in: train.seed``).
:data:`MAY_CHANGE` is the list; the config digest (also the ``{config}`` of run folder names)
covers exactly the fields it leaves out.

Damaged checkpoints. On resume every rank checks its own file against the manifest (SHA-256,
a readable npz, the rank and step recorded inside) and the ranks agree whether the checkpoint
is intact on all of them. ``--resume <checkpoints folder>`` (or ``auto``) starts from what
``latest`` names and falls back to the newest older intact step folder; a missing or
unreadable ``latest`` or manifest, or ``latest`` naming a missing folder, counts as damage
too. Rank 0 then warns once, e.g. ``mpitrain: warning: checkpoint .../step-00000040 is damaged
(rank 1: checksum mismatch in rank-00001.npz); resuming from .../step-00000020``. When none
is intact, or a step folder named explicitly is damaged, the run stops with one line (exit 2).
Checkpoints written before checksums were recorded (no ``checksums`` in the manifest) are
still accepted: their rank files are checked for readability and step only.

Stopping on a signal (SIGTERM, SIGUSR1, SIGINT) and its exit codes: mpitrain.stopping.
"""
from .files import flatten, fsync_directory, unflatten, write_json_durable, write_npz_atomic
from .resume import (Damaged, Resumed, check_manifest, has_checkpoint, load, plan_resume, read_manifest,
                     read_rank_file, resolve, resume_from, truncate_metrics)
from .rule import MAY_CHANGE, comparable_config, comparable_tree, config_digest, differences
from .store import (LATEST, MANIFEST, CheckpointStore, capture, manifest_for, rank_file, restore, sealed,
                    step_directory, step_folders)

__all__ = ["CheckpointStore", "Damaged", "LATEST", "MANIFEST", "MAY_CHANGE", "Resumed", "capture", "check_manifest",
           "comparable_config", "comparable_tree", "config_digest", "differences", "flatten", "fsync_directory",
           "has_checkpoint", "load", "manifest_for", "plan_resume", "rank_file", "read_manifest", "read_rank_file",
           "resolve", "restore", "resume_from", "sealed", "step_directory", "step_folders", "truncate_metrics",
           "unflatten", "write_json_durable", "write_npz_atomic"]
