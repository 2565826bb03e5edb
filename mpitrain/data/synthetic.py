"""Synthetic data sets, deterministic from a seed, with no files.

The generators draw everything from ``numpy.random.default_rng(seed)``, so the same
arguments give the same Dataset on every rank and every run (for a given NumPy version).
The fingerprint is the generator name and its parameters (dtype excluded).
"""
import numpy as np
import scipy.sparse as sp

from .dataset import FLOAT_DTYPES, Dataset
from .labels import MAX_CLASSES


def synthetic_classification(n_samples=20000, n_features=300, density=0.04, seed=0,
                             dtype=np.float64, *, positive_fraction=0.5,
                             label_noise=0.1) -> Dataset:
    """Sparse binary features and {-1, +1} labels from a noisy linear teacher, like w8a.

    Shaped like LIBSVM w8a (49,749 x 300, 3.9 % of entries are 1, features of very
    unequal frequency): column j holds a 1 in a row with probability about
    ``density * q_j``, with q_j log-normal of mean 1, rows drawn uniformly, so rows
    carry ``density * n_features`` ones on average. Labels: a teacher w ~ N(0, I) gives
    margins m = X w; y = +1 where m + label_noise * std(m) * N(0, 1) is above its
    (1 - positive_fraction) quantile, else -1. ``positive_fraction=0.03`` gives w8a's
    class imbalance. The features are CSR with sorted indices, values 1.0.
    """
    _check_dtype(dtype)
    if n_samples < 1 or n_features < 1:
        raise ValueError(f"n_samples and n_features must be >= 1, got {n_samples}, {n_features}")
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    if not 0 < positive_fraction < 1:
        raise ValueError(f"positive_fraction must be in (0, 1), got {positive_fraction}")
    if label_noise < 0:
        raise ValueError(f"label_noise must be >= 0, got {label_noise}")
    rng = np.random.default_rng(seed)
    frequency = rng.lognormal(mean=0.0, sigma=1.0, size=n_features)
    frequency /= frequency.sum()
    n_entries = int(round(n_samples * n_features * density))
    columns = rng.choice(n_features, size=n_entries, p=frequency)
    rows = rng.integers(0, n_samples, size=n_entries)
    features = sp.csr_matrix((np.ones(n_entries, dtype=dtype), (rows, columns)),
                             shape=(n_samples, n_features))
    features.sum_duplicates()
    features.data[:] = 1.0
    teacher = rng.standard_normal(n_features)
    margins = features @ teacher
    noisy = margins + label_noise * margins.std() * rng.standard_normal(n_samples)
    threshold = np.quantile(noisy, 1.0 - positive_fraction)
    labels = np.where(noisy > threshold, 1.0, -1.0).astype(dtype)
    fingerprint = (f"synthetic-classification:n_samples={n_samples}:n_features={n_features}:"
                   f"density={density}:seed={seed}:positive_fraction={positive_fraction}:"
                   f"label_noise={label_noise}")
    return Dataset(features, labels, "synthetic-classification", fingerprint)


def synthetic_least_squares(n_samples=2000, n_features=50, condition_number=100.0,
                            noise=0.0, seed=0, dtype=np.float64) -> Dataset:
    """Dense least squares with a chosen conditioning and a known minimiser.

    A = U diag(s) V^T with U (n x d, orthonormal columns) and V (d x d, orthogonal)
    random, and s_i = sqrt(n * lambda_i) where lambda_i are log-spaced from 1 down to
    1 / condition_number: the eigenvalues of A^T A / n are exactly the lambda_i, so
    its condition number is ``condition_number`` and its largest eigenvalue (the
    smoothness constant L of f) is 1. Labels b = A x_teacher + noise * N(0, I), with
    x_teacher ~ N(0, I).

    x_star (float64) minimises the plain, unregularised least squares
    f(x) = 1/(2n) ||A x - b||^2 on the data as stored (the caller adds any
    regularisation and then needs its own solution). With noise=0 and float64 it is
    x_teacher exactly and f(x_star) = 0 up to rounding; otherwise it is the least-squares
    solution in float64 of the stored A and b. Needs n_samples >= n_features.
    """
    _check_dtype(dtype)
    if n_features < 1 or n_samples < n_features:
        raise ValueError(f"need n_samples >= n_features >= 1, got n_samples={n_samples}, "
                         f"n_features={n_features}")
    if not condition_number >= 1:
        raise ValueError(f"condition_number must be >= 1, got {condition_number}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    eigenvalues = np.geomspace(1.0, 1.0 / condition_number, n_features)
    left, _ = np.linalg.qr(rng.standard_normal((n_samples, n_features)))
    right, _ = np.linalg.qr(rng.standard_normal((n_features, n_features)))
    design = (left * np.sqrt(n_samples * eigenvalues)) @ right.T
    teacher = rng.standard_normal(n_features)
    targets = design @ teacher + noise * rng.standard_normal(n_samples)
    features = np.ascontiguousarray(design, dtype=dtype)
    labels = targets.astype(dtype)
    if noise == 0 and np.dtype(dtype) == np.float64:
        x_star = teacher
    else:
        x_star = np.linalg.lstsq(features.astype(np.float64), labels.astype(np.float64),
                                 rcond=None)[0]
    fingerprint = (f"synthetic-least-squares:n_samples={n_samples}:n_features={n_features}:"
                   f"condition_number={condition_number}:noise={noise}:seed={seed}")
    return Dataset(features, labels, "synthetic-least-squares", fingerprint, x_star=x_star)


TEACHER_HIDDEN = 32  # tanh units of synthetic_multiclass's teacher network
BLOCK_ROWS = 8192  # rows drawn at a time by synthetic_multiclass (the random stream does not depend on it)


def synthetic_multiclass(n_samples=20000, n_features=50, n_classes=10, seed=0, dtype=np.float64, *,
                         hidden=TEACHER_HIDDEN) -> Dataset:
    """Dense Gaussian features labelled by a random teacher network: C classes, labels 0..C-1.

    Features X ~ N(0, I), shape (n_samples, n_features). Teacher: one hidden layer of
    ``hidden`` tanh units, z = tanh(X W1) W2 with W1 (n_features x hidden) and
    W2 (hidden x n_classes) standard normal scaled by 1 / sqrt(fan_in). Each logit column
    is standardised over the rows (minus its mean, over its standard deviation), so that no
    class wins by offset or scale alone and every class holds a fair share of the rows
    (about 1/C each; the tests ask for at least 1/(4C) at C = 10). The label of a row is
    argmax_c z_c, stored as the float 0.0 .. C-1 of ``dtype`` (what a softmax head takes).

    Features are drawn in float64 and rounded to ``dtype``; the labels come from the
    float64 draw, so both dtypes hold the same labels. Needs n_classes >= 2 (at most
    ``MAX_CLASSES``). A class can be empty with few rows, or with very few features (the
    logits of one or two features cannot all win somewhere: use n_features >= 5 or so).
    """
    _check_dtype(dtype)
    if n_samples < 1 or n_features < 1 or hidden < 1:
        raise ValueError(f"n_samples, n_features and hidden must be >= 1, got {n_samples}, {n_features}, {hidden}")
    if not 2 <= n_classes <= MAX_CLASSES:
        raise ValueError(f"n_classes must be in [2, {MAX_CLASSES}], got {n_classes}")
    rng = np.random.default_rng(seed)
    first = rng.standard_normal((n_features, hidden)) / np.sqrt(n_features)
    second = rng.standard_normal((hidden, n_classes)) / np.sqrt(hidden)
    features = np.empty((n_samples, n_features), dtype=dtype)
    logits = np.empty((n_samples, n_classes))
    for start in range(0, n_samples, BLOCK_ROWS):  # blocks: one float64 copy of BLOCK_ROWS rows at a time
        rows = slice(start, min(start + BLOCK_ROWS, n_samples))
        block = rng.standard_normal((rows.stop - rows.start, n_features))
        features[rows] = block
        logits[rows] = np.tanh(block @ first) @ second
    logits -= logits.mean(axis=0)
    logits /= np.maximum(logits.std(axis=0), np.finfo(np.float64).tiny)
    labels = np.argmax(logits, axis=1).astype(dtype)
    fingerprint = (f"synthetic-multiclass:n_samples={n_samples}:n_features={n_features}:"
                   f"n_classes={n_classes}:seed={seed}:hidden={hidden}")
    return Dataset(features, labels, "synthetic-multiclass", fingerprint)


GENERATORS = {
    "synthetic-classification": synthetic_classification,
    "synthetic-least-squares": synthetic_least_squares,
    "synthetic-multiclass": synthetic_multiclass,
}


def _check_dtype(dtype):
    if np.dtype(dtype) not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
