"""Set up what every rank trains on: its shard of the data, the objective, f*.

Errors a rank can meet here (a missing data set, a broken LIBSVM line, NaN in the data, a
rank with no rows) are agreed over all ranks (mpitrain.runtime.agree): rank 0 prints one
message naming the rank and the problem, and every rank exits, no hang. So are sizes this
machine cannot hold (a synthetic set, a mini-batch), refused before anything is allocated.

Binary labels are coded once for the whole data set: every rank reports the distinct
labels it read and the coding (-1/+1, 0/1 or 1/2 to -1/+1) is chosen from their union, so
a partitioned read in which a rank sees one class only codes it like the others. An
objective that cannot take the labels (logistic on labels of three classes) is refused.

``train.device = "gpu"``: each rank takes one GPU (mpitrain.device), builds the objective on the
host (the reference solve for f* runs there), then moves it and x0 to its GPU. The methods in
``DEVICE_METHODS`` keep their arrays on the device; the others are refused naming the field.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from . import backend
from .progress import phase
from .runtime import JobError, agree


# models whose minimum f* the reference solve finds (convex, linear in x): the others report no suboptimality
REFERENCE_MODELS = ("logistic", "least_squares")
# the methods that train with train.device = "gpu" (parameters, gradients, memories on the device)
DEVICE_METHODS = ("sync_sgd", "local_sgd", "hierarchical_local_sgd", "async_local_sgd")


@dataclass
class Problem:
    objective: object  # mpitrain.objectives.Objective over this rank's rows
    dataset: object  # this rank's mpitrain.data.Dataset
    n_global: int  # N, samples over all ranks
    weight: float  # n_local / N
    f_star: float | None  # F(x*) when known or computed
    x0: np.ndarray  # starting point, zeros
    f_star_converged: bool | None = None  # False: the reference solve stopped short of gtol
    f_star_grad_norm: float | None = None  # ||grad F|| the reference solve reached


def _synthetic_options(data_config) -> dict:
    if data_config.dataset == "synthetic-multiclass":
        return dict(n_samples=data_config.n_samples, n_features=data_config.n_features,
                    n_classes=data_config.n_classes, seed=data_config.data_seed)
    if data_config.dataset == "synthetic-least-squares":
        return dict(n_samples=data_config.n_samples, n_features=data_config.n_features,
                    condition_number=data_config.condition_number, noise=data_config.noise,
                    seed=data_config.data_seed)
    return dict(n_samples=data_config.n_samples, n_features=data_config.n_features,
                density=data_config.density, seed=data_config.data_seed)


def load_shard(data_config, comm, objective=None, head=None):
    """This rank's rows, as configured, labels coded over the whole set (collective on errors).

    ``objective``, the configured objective's name (and ``head``, an mlp's), when given: labels
    it cannot take are refused (see mpitrain.data.labels.objective_refusal); a multiclass model
    gets its labels as class indices 0..C-1 (mpitrain.data.labels.to_class_indices).
    """
    from .data import DATASETS, locate, open_dataset, shard

    rank, size = comm.Get_rank(), comm.Get_size()
    if data_config.dataset in DATASETS and size > 1:  # rank 0 downloads (if needed) before the others look
        agree(comm, lambda: locate(data_config.dataset) if rank == 0 else None, what="loading data")
    dtype = np.dtype(data_config.dtype)
    synthetic = _synthetic_options(data_config) if data_config.dataset.startswith("synthetic-") else None
    if synthetic is not None:
        _check_synthetic_size(comm, data_config.dataset, synthetic)
    partitioned = data_config.read == "partitioned"
    part = (rank, size) if partitioned else None
    read = agree(comm, lambda: open_dataset(data_config.dataset, dtype=dtype, part=part, synthetic=synthetic,
                                            raw_labels=True), what="loading data")
    read = _code_labels(_pad_features(read, comm, data_config.dataset), comm, data_config.dataset, objective, head)
    local = read if partitioned else agree(
        comm, lambda: shard(read, rank, size, scheme=data_config.sharding, seed=data_config.data_seed,
                            alpha=data_config.dirichlet_alpha), what="loading data")

    def check_finite():
        values = local.features.data if local.is_sparse else local.features
        if not (np.isfinite(values).all() and np.isfinite(local.labels).all()):
            raise ValueError(f"data set {data_config.dataset!r} holds NaN or Inf values")
        if local.n_samples == 0:
            raise ValueError("this rank holds no samples: use fewer ranks or another sharding")

    agree(comm, check_finite, what="checking data")
    return local


def _pad_features(local, comm, name):
    """All ranks' parts widened to the widest (a part may not reach the last column);
    a data set with no feature at all is refused (a linear model needs one)."""
    n_features = comm.allreduce(local.n_features, op=MPI.MAX)
    if n_features == 0:
        raise JobError(f"{name}: no features (no line holds an index:value pair, only labels); "
                       "a model needs at least one feature")
    if local.n_features < n_features:  # a partitioned read saw fewer columns on this rank
        features = local.features.copy()
        features.resize((local.n_samples, n_features))
        local = dataclasses.replace(local, features=features)
    return local


def _code_labels(local, comm, name, objective, head=None):
    """Labels coded over the union of all ranks' labels: class indices 0..C-1 for a multiclass
    model (a rank that holds no row of some class still gets the same indices), else -1/+1 for
    two classes; JobError naming the data set and the labels when ``objective`` cannot take them."""
    from .data import (all_distinct_labels, classes_of_union, coding_of_union, distinct_labels, label_coding,
                       normalize_labels, objective_refusal, to_class_indices)

    if objective is not None and label_coding(objective, head) == "classes":
        try:
            classes = classes_of_union(comm.allgather(all_distinct_labels(local.labels)))
        except ValueError as error:
            raise JobError(f"{name}: objective {objective!r}: {error}") from None
        return dataclasses.replace(local, labels=to_class_indices(local.labels, classes))
    classes, values, more = coding_of_union(comm.allgather(distinct_labels(local.labels)))
    refusal = objective_refusal(objective, values, more, head=head) if objective is not None else None
    if refusal is not None:
        raise JobError(f"{name}: {refusal}")
    if classes is None:
        return local
    return dataclasses.replace(local, labels=normalize_labels(local.labels, classes))


def _check_synthetic_size(comm, name, options):
    """Refuse a synthetic set this machine cannot generate, naming the larger of the config
    fields 'data.n_samples' and 'data.n_features'."""
    from .data.sizes import synthetic_bytes

    shape = f"{options['n_samples']} samples x {options['n_features']} features"
    if "n_classes" in options:
        shape += f" ({options['n_classes']} classes)"
    if "density" in options:
        shape += f" (density {options['density']:g})"
    field = "data.n_samples" if options["n_samples"] >= options["n_features"] else "data.n_features"
    _refuse_beyond_memory(comm, field, f"{name} with {shape}", synthetic_bytes(name, options))


def _check_batch_size(comm, batch_size):
    """Refuse (config field 'train.batch_size') a mini-batch whose sampler cannot be allocated.

    A batch larger than a rank's rows is fine otherwise: rows are drawn with replacement.
    """
    from .data.sizes import SAMPLER_BYTES_PER_ROW, sampler_bytes

    what = (f"a mini-batch of {float(batch_size):.3g} rows ({SAMPLER_BYTES_PER_ROW} bytes each for the "
            "drawn row indices)")
    _refuse_beyond_memory(comm, "train.batch_size", what, sampler_bytes(batch_size))


def _refuse_beyond_memory(comm, field, what, per_rank):
    """JobError ``config field '<field>': <what> needs about ...`` on every rank when
    ``per_rank`` bytes on each rank sharing this machine exceed its memory (any rank's
    machine: they may differ)."""
    from .data.sizes import beyond_memory

    reasons = comm.allgather(beyond_memory(per_rank, _ranks_on_this_machine(comm)))
    reason = next((r for r in reasons if r is not None), None)
    if reason is not None:
        raise JobError(f"config field {field!r}: {what} {reason}")


def _ranks_on_this_machine(comm):
    """How many ranks of ``comm`` share this rank's machine (and so its memory)."""
    if comm.Get_size() == 1:
        return 1
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return local.Get_size()
    finally:
        local.Free()



def build_problem(config, comm) -> Problem:
    from .objectives import make_objective
    from .objectives.reference import reference_optimum

    on_device = config.train.device == "gpu"
    if on_device:
        from .device import select_for_config

        if config.train.algorithm not in DEVICE_METHODS:
            raise JobError(f"config field 'train.device': 'gpu' trains {', '.join(DEVICE_METHODS)} today; "
                           f"{config.train.algorithm} runs on the CPU only (train.device = 'cpu')")
        select_for_config(comm, config)  # ConfigError naming train.device without CuPy or a GPU
    _check_batch_size(comm, config.train.batch_size)
    speaker = comm.Get_rank() == 0 and config.run.progress
    with phase(f"loading {config.data.dataset}", speaker):
        local = load_shard(config.data, comm, objective=config.objective.name, head=config.objective.head)
    n_global = comm.allreduce(local.n_samples)
    l2 = config.objective.l2_value(n_global)
    options = config.objective.model_options()
    if config.objective.label_head == "softmax":  # every class index is held by some rank
        options["n_classes"] = int(comm.allreduce(float(local.labels.max(initial=-1.0)), op=MPI.MAX)) + 1
    objective = agree(comm, lambda: make_objective(config.objective.name, local.features, local.labels, l2, **options),
                      what="building the objective")
    f_star = converged = grad_norm = None
    if config.run.reference and config.objective.name in REFERENCE_MODELS:
        with phase("solving for f*", speaker) as solving:
            solution = reference_optimum(objective, comm, fingerprint=local.fingerprint, warn=_warn,
                                         progress=solving)
        f_star = float(solution.f_star) if math.isfinite(solution.f_star) else None
        converged, grad_norm = solution.converged, float(solution.grad_norm)
    x0 = objective.initial_point(config.objective.init_seed)  # zeros for a linear model; the same on every rank
    if n_global < comm.Get_size():
        raise JobError(f"{n_global} samples cannot be split over {comm.Get_size()} ranks")
    if on_device:  # every rank on its GPU: the objective's features and the starting point
        objective = agree(comm, lambda: backend.device_objective(objective), what="moving the objective to the GPU")
        x0 = x0 if backend.is_device_array(x0) else backend.to_device(x0)
    return Problem(objective, local, n_global, local.n_samples / n_global, f_star, x0, converged, grad_norm)


def _warn(text):
    """Print ``mpitrain: warning: <text>`` (reference_optimum calls it on rank 0 only)."""
    print(f"mpitrain: warning: {text}", file=sys.stderr, flush=True)
