"""The container every loader, generator and sharding scheme returns."""
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples (rows of ``features``) with their labels.

    features     scipy.sparse.csr_matrix with sorted indices, or a C-contiguous 2-D
                 ndarray; shape (n_samples, n_features); float32 or float64. A CSR matrix
                 uses the index dtype scipy picks (int32 whenever it fits).
    labels       1-D ndarray (n_samples,), same dtype as features. Binary classification
                 sets use {-1, +1} (see ``mpitrain.data.labels``).
    name         short human name ("w8a", "synthetic-least-squares", a file name).
    fingerprint  string that identifies the data: registry name + sha256 (or size and
                 mtime) of the file, or the generator name and its parameters; a shard
                 or a partial read appends what selected its rows. Use it as the cache
                 key of a reference optimum f* computed on this data.
    x_star       a known solution, shape (n_features,), when one exists (the least-squares
                 generator sets it; see there which objective it minimises). A shard keeps
                 the x_star of the full data set.
    """

    features: object
    labels: np.ndarray
    name: str
    fingerprint: str
    x_star: np.ndarray | None = None

    def __post_init__(self):
        features, labels = self.features, self.labels
        if sp.issparse(features):
            if not isinstance(features, sp.csr_matrix):
                raise TypeError(f"features must be a csr_matrix, got {type(features).__name__}")
            if not features.has_sorted_indices:
                features.sort_indices()
        elif isinstance(features, np.ndarray):
            if features.ndim != 2 or not features.flags.c_contiguous:
                raise ValueError("features must be a C-contiguous 2-D array")
        else:
            raise TypeError(f"features must be a csr_matrix or an ndarray, got {type(features).__name__}")
        if features.dtype not in FLOAT_DTYPES:
            raise ValueError(f"features dtype must be float32 or float64, got {features.dtype}")
        if not isinstance(labels, np.ndarray) or labels.ndim != 1:
            raise ValueError("labels must be a 1-D ndarray")
        if labels.shape[0] != features.shape[0]:
            raise ValueError(f"labels has {labels.shape[0]} entries for {features.shape[0]} samples")
        if labels.dtype != features.dtype:
            raise ValueError(f"labels dtype {labels.dtype} differs from features dtype {features.dtype}")
        if self.x_star is not None and self.x_star.shape != (features.shape[1],):
            raise ValueError(f"x_star must have shape ({features.shape[1]},), got {self.x_star.shape}")

    @property
    def n_samples(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.features.dtype

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.features)

    def __repr__(self):
        kind = f"csr nnz={self.features.nnz}" if self.is_sparse else "dense"
        return (f"Dataset({self.name!r}, {self.n_samples} x {self.n_features}, {self.dtype}, "
                f"{kind}, fingerprint={self.fingerprint!r})")
