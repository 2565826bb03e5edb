"""Set up what every rank trains on: its shard of the data, the objective, f*.

Errors a rank can meet here (a missing data set, a broken LIBSVM line, NaN in the data, a
rank with no rows) are agreed over all ranks (mpitrain.runtime.agree): rank 0 prints one
message naming the rank and the problem, and every rank exits, no hang.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .runtime import JobError, agree


@dataclass
class Problem:
    objective: object  # mpitrain.objectives.Objective over this rank's rows
    dataset: object  # this rank's mpitrain.data.Dataset
    n_global: int  # N, samples over all ranks
    weight: float  # n_local / N
    f_star: float | None  # F(x*) when known or computed
    x0: np.ndarray  # starting point, zeros


def _synthetic_options(data_config) -> dict:
    if data_config.dataset == "synthetic-least-squares":
        return dict(n_samples=data_config.n_samples, n_features=data_config.n_features,
                    condition_number=data_config.condition_number, noise=data_config.noise,
                    seed=data_config.data_seed)
    return dict(n_samples=data_config.n_samples, n_features=data_config.n_features,
                density=data_config.density, seed=data_config.data_seed)


def load_shard(data_config, comm):
    """This rank's rows, as configured (collective on errors)."""
    from .data import DATASETS, locate, open_dataset, shard

    rank, size = comm.Get_rank(), comm.Get_size()
    if data_config.dataset in DATASETS and size > 1:  # rank 0 downloads (if needed) before the others look
        agree(comm, lambda: locate(data_config.dataset) if rank == 0 else None, what="loading data")
    dtype = np.dtype(data_config.dtype)
    synthetic = _synthetic_options(data_config) if data_config.dataset.startswith("synthetic-") else None

    def load():
        if data_config.read == "partitioned":
            return open_dataset(data_config.dataset, dtype=dtype, part=(rank, size), synthetic=synthetic)
        full = open_dataset(data_config.dataset, dtype=dtype, synthetic=synthetic)
        return shard(full, rank, size, scheme=data_config.sharding, seed=data_config.data_seed,
                     alpha=data_config.dirichlet_alpha)

    local = agree(comm, load, what="loading data")
    n_features = comm.allreduce(local.n_features, op=_max())
    if local.n_features < n_features:  # a partitioned read saw fewer columns on this rank
        features = local.features.copy()
        features.resize((local.n_samples, n_features))
        local = dataclasses.replace(local, features=features)

    def check_finite():
        values = local.features.data if local.is_sparse else local.features
        if not (np.isfinite(values).all() and np.isfinite(local.labels).all()):
            raise ValueError(f"data set {data_config.dataset!r} holds NaN or Inf values")
        if local.n_samples == 0:
            raise ValueError("this rank holds no samples: use fewer ranks or another sharding")

    agree(comm, check_finite, what="checking data")
    return local


def _max():
    from mpi4py import MPI

    return MPI.MAX


def build_problem(config, comm) -> Problem:
    from .objectives import make_objective
    from .objectives.reference import reference_optimum

    if config.train.device == "gpu":
        from .device import select_for_config

        select_for_config(comm, config)  # ConfigError naming train.device without CuPy or a GPU
        raise JobError("config field 'train.device': 'gpu' is not wired into training yet (the "
                       "algorithms allocate NumPy arrays); the CuPy kernels run through the library "
                       "API (Objective.to_device, compressors and clipping on CuPy arrays) and "
                       "'mpitrain bench compress --device gpu'")
    local = load_shard(config.data, comm)
    n_global = comm.allreduce(local.n_samples)
    l2 = config.objective.l2_value(n_global)
    objective = agree(comm, lambda: make_objective(config.objective.name, local.features, local.labels, l2),
                      what="building the objective")
    f_star = None
    if config.run.reference:
        solution = reference_optimum(objective, comm, fingerprint=local.fingerprint)
        f_star = float(solution.f_star)
    x0 = np.zeros(objective.n_features, dtype=objective.dtype)
    if n_global < comm.Get_size():
        raise JobError(f"{n_global} samples cannot be split over {comm.Get_size()} ranks")
    return Problem(objective, local, n_global, local.n_samples / n_global, f_star, x0)
