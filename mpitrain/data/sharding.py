"""Split a Dataset's rows across MPI ranks.

Every rank calls ``shard(dataset, rank, size, ...)`` on the same data with the same
arguments and keeps its own rows; the assignment is computed from ``seed`` alone with
``numpy.random.default_rng(seed)``, so all ranks agree without communicating.

Schemes (``SCHEMES`` maps each name to its assignment function):

iid        rows in a seeded random permutation, cut into ``size`` blocks whose sizes
           differ by at most 1 (the homogeneous setting of Local SGD, Stich 2019).
label      rows sorted by label (stable), cut into contiguous blocks as balanced as
           iid: each rank sees one or few classes (a heterogeneous setting, as the
           federated data of Erickson and Johansson 2026).
dirichlet  for every label class c (ascending), its rows in a seeded random order are
           cut between ranks in proportions p_c ~ Dirichlet(alpha, ..., alpha); small
           alpha gives skewed label mixes per rank, large alpha approaches iid. Then no
           rank is left empty: while some rank has no row, the lowest such rank takes
           the last row of the currently largest shard (lowest rank on ties). This
           moves at most size - 1 rows and needs n_samples >= size.

Rows keep their original order inside a shard.
"""
import numpy as np

from .dataset import Dataset


def assign_iid(labels, size, rng, alpha):
    """Owner rank of every row: random permutation cut into balanced blocks."""
    owners = np.empty(labels.shape[0], dtype=np.int64)
    owners[rng.permutation(labels.shape[0])] = balanced_blocks(labels.shape[0], size)
    return owners


def assign_label(labels, size, rng, alpha):
    """Owner rank of every row: stable sort by label, balanced contiguous blocks."""
    owners = np.empty(labels.shape[0], dtype=np.int64)
    owners[np.argsort(labels, kind="stable")] = balanced_blocks(labels.shape[0], size)
    return owners


def assign_dirichlet(labels, size, rng, alpha):
    """Owner rank of every row: per-class Dirichlet(alpha) proportions over ranks."""
    owners = np.empty(labels.shape[0], dtype=np.int64)
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        proportions = rng.dirichlet(np.full(size, float(alpha)))
        cuts = np.round(np.cumsum(proportions)[:-1] * rows.shape[0]).astype(np.int64)
        for rank, block in enumerate(np.split(rows, cuts)):
            owners[block] = rank
    return fill_empty_ranks(owners, size)


SCHEMES = {"iid": assign_iid, "label": assign_label, "dirichlet": assign_dirichlet}


def balanced_blocks(n, size):
    """Ranks 0..size-1 repeated in contiguous runs of n // size or n // size + 1."""
    return np.repeat(np.arange(size, dtype=np.int64), shard_sizes(n, size))


def shard_sizes(n, size):
    """Balanced block sizes: the first n % size ranks get one row more."""
    return np.full(size, n // size, dtype=np.int64) + (np.arange(size) < n % size)


def fill_empty_ranks(owners, size):
    """Give every empty rank one row from the largest shard (see module docstring)."""
    counts = np.bincount(owners, minlength=size)
    for rank in np.flatnonzero(counts == 0):
        donor = int(np.argmax(counts))
        row = np.flatnonzero(owners == donor)[-1]
        owners[row] = rank
        counts[donor] -= 1
        counts[rank] += 1
    return owners


def assignment(labels, size, *, scheme="iid", seed=0, alpha=1.0):
    """Owner rank (int64, in [0, size)) of every row, for labels of shape (n_samples,)."""
    labels = np.asarray(labels)
    check_size(size)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {sorted(SCHEMES)}, got {scheme!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if labels.shape[0] < size:
        raise ValueError(f"size={size} ranks exceed the {labels.shape[0]} rows (n_samples)")
    return SCHEMES[scheme](labels, size, np.random.default_rng(seed), alpha)


def check_size(size):
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")


def shard_rows(labels, rank, size, *, scheme="iid", seed=0, alpha=1.0):
    """Sorted row indices (int64) that ``rank`` of ``size`` owns."""
    check_size(size)
    if not isinstance(rank, (int, np.integer)) or not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, size={size}), got {rank!r}")
    owners = assignment(labels, size, scheme=scheme, seed=seed, alpha=alpha)
    return np.flatnonzero(owners == rank)


def shard(dataset: Dataset, rank, size, *, scheme="iid", seed=0, alpha=1.0) -> Dataset:
    """The rows of ``dataset`` that ``rank`` of ``size`` owns, as a Dataset.

    Its fingerprint appends the scheme, seed (and alpha for dirichlet), rank and size;
    x_star stays the full data set's.
    """
    rows = shard_rows(dataset.labels, rank, size, scheme=scheme, seed=seed, alpha=alpha)
    features = dataset.features[rows]
    if not dataset.is_sparse:
        features = np.ascontiguousarray(features)
    detail = f":alpha={alpha}" if scheme == "dirichlet" else ""
    fingerprint = f"{dataset.fingerprint}:shard={scheme}:seed={seed}{detail}:{rank}/{size}"
    return Dataset(features, dataset.labels[rows], dataset.name, fingerprint, x_star=dataset.x_star)
