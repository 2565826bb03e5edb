"""Data: LIBSVM reader, registry of named data sets, synthetic generators, sharding.

``open_dataset`` is the one entry point the training code needs::

    data = open_dataset("w8a", dtype=np.float32)                   # registry name
    data = open_dataset("/scratch/big.svm", part=(rank, size))     # this rank's lines
    data = open_dataset("synthetic-least-squares",
                        synthetic={"n_features": 100, "condition_number": 1e3})
    mine = shard(data, rank, size, scheme="dirichlet", alpha=0.1)

Multiclass sets ("mnist", "synthetic-multiclass", a file of C classes) come back with
their labels as written; a softmax head codes them as class indices over all parts::

    classes = classes_of_union([all_distinct_labels(data.labels)])  # one part per rank
    indices = to_class_indices(data.labels, classes)                 # 0.0 .. C-1
"""
from pathlib import Path

import numpy as np

from .dataset import Dataset
from .errors import DataError
from .labels import (MAX_CLASSES, all_distinct_labels, classes_of_union, coding_of_union, distinct_labels,
                     label_coding, normalize_labels, objective_refusal, to_class_indices)
from .registry import DATASETS, RemoteDataset, cache_dir, data_dir, locate
from .sharding import SCHEMES, assignment, shard, shard_rows, shard_sizes
from .svmlight import read_svmlight
from .synthetic import GENERATORS, synthetic_classification, synthetic_least_squares, synthetic_multiclass

__all__ = [
    "DATASETS", "DataError", "Dataset", "GENERATORS", "MAX_CLASSES", "RemoteDataset", "SCHEMES",
    "all_distinct_labels", "assignment", "cache_dir", "classes_of_union", "coding_of_union", "data_dir",
    "distinct_labels", "label_coding", "locate", "normalize_labels", "objective_refusal", "open_dataset",
    "read_svmlight", "shard", "shard_rows", "shard_sizes", "synthetic_classification",
    "synthetic_least_squares", "synthetic_multiclass", "to_class_indices",
]


def open_dataset(name, *, dtype=np.float64, part=None, synthetic=None, n_features=None,
                 classes=None, raw_labels=False) -> Dataset:
    """Open a data set by registry name, file path or generator name.

    name        a registry name (``DATASETS``: binary "w8a", "a9a", "rcv1.binary",
                "real-sim", "epsilon", "covtype.binary"; multiclass "mnist", "usps",
                "covtype", "letter", "pendigits", "satimage", "dna"), a generator name
                ("synthetic-classification", "synthetic-least-squares",
                "synthetic-multiclass", options in ``synthetic``), or a path to a LIBSVM
                file (plain, .bz2 or .gz).
    dtype       float32 or float64, for features and labels.
    part        (index, count): only that share of the rows. Files: the index-th of
                count line-aligned byte ranges (see ``read_svmlight``). Generators: the
                whole set is generated and the index-th of count balanced contiguous
                row blocks is kept.
    synthetic   keyword arguments of the generator (only with a generator name).
    n_features  column count for a file path (registry entries know theirs and are
                padded to it); pass it with ``part`` so that all parts agree.
    classes     (negative, positive) label coding of a file path; by default found
                from the labels read (see ``mpitrain.data.labels``).
    raw_labels  True: a file path's labels come back as written, no coding applied, for a
                caller that decides the coding over all parts of the file (a part can hold
                one class only). Registry sets and generators are coded as usual.

    Binary-classification labels come back as -1.0 / +1.0; multiclass labels as written
    (registry sets, files) or as 0.0 .. C-1 ("synthetic-multiclass"): a multiclass
    objective maps them with ``to_class_indices``. Raises DataError when the data cannot
    be found or a line is broken.
    """
    if synthetic is not None and name not in GENERATORS:
        raise ValueError(f"synthetic options apply only to {sorted(GENERATORS)}, not {name!r}")
    if name in GENERATORS:
        return generated(name, dtype, part, synthetic or {})
    if name in DATASETS:
        return registered(DATASETS[name], dtype, part)
    path = Path(name).expanduser()
    if not path.is_file():
        raise DataError(f"{name!r} is neither a file nor a known data set; registry names: "
                        f"{', '.join(sorted(DATASETS))}; generators: {', '.join(sorted(GENERATORS))}")
    data = read_svmlight(path, dtype=dtype, n_features=n_features, part=part)
    if raw_labels:
        return data
    try:
        labels = normalize_labels(data.labels, classes)
    except ValueError as error:
        raise DataError(f"{path}: {error}") from None
    return Dataset(data.features, labels, data.name, data.fingerprint)


def registered(entry, dtype, part):
    """Read a registry entry, padded to its n_features; a binary entry's labels normalised
    to -1/+1, a multiclass entry's as written."""
    path = locate(entry.name)
    data = read_svmlight(path, dtype=dtype, n_features=entry.n_features, part=part)
    labels = data.labels
    if entry.kind == "binary":
        try:
            labels = normalize_labels(data.labels, entry.classes)
        except ValueError as error:
            raise DataError(f"{path}: {error} (registry coding of {entry.name!r})") from None
    if entry.sha256 is not None and path.name == entry.file:
        fingerprint = f"libsvm:{entry.name}:sha256={entry.sha256}"
    else:
        stat = path.stat()
        fingerprint = f"libsvm:{entry.name}:size={stat.st_size}:mtime_ns={stat.st_mtime_ns}"
    if part is not None:
        fingerprint += f":part={part[0]}/{part[1]}"
    return Dataset(data.features, labels, entry.name, fingerprint)


def generated(name, dtype, part, options):
    """Run a generator; keep the part's contiguous block of rows when asked."""
    data = GENERATORS[name](dtype=dtype, **options)
    if part is None:
        return data
    index, count = part
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"part must be (index, count) with 0 <= index < count, got {part}")
    bounds = np.concatenate([[0], np.cumsum(shard_sizes(data.n_samples, count))])
    rows = slice(int(bounds[index]), int(bounds[index + 1]))
    features = data.features[rows]
    if not data.is_sparse:
        features = np.ascontiguousarray(features)
    return Dataset(features, data.labels[rows], data.name,
                   f"{data.fingerprint}:part={index}/{count}", x_star=data.x_star)
