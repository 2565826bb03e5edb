"""Random network objectives for the tests that compare the network kernels with something
else (finite differences, the GPU twin, PyTorch): one statement of how their rows, labels and
points are drawn."""
import numpy as np
import scipy.sparse as sp

from mpitrain.objectives import Network


def random_network(head, activation, layout, hidden, *, n, d, classes, density, l2, seed=0, dtype=np.float64,
                   spread=0.3, empty_row=True):
    """(objective, x, dense rows): a Network on ``n`` random rows of ``d`` features (each non-zero
    with probability ``density``; row 2 all zero when ``empty_row``), labels for ``head``
    (``classes`` classes for softmax, -1/+1 for logistic, normal for squared), dense or CSR in
    ``dtype``, and a point x = its seeded start + ``spread`` N(0, 1), drawn from one
    ``default_rng(seed)`` stream in that order."""
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, d)) * (rng.random((n, d)) < density)
    if empty_row:
        dense[2] = 0.0
    if head == "softmax":
        labels = rng.integers(0, classes, n).astype(np.float64)
    elif head == "logistic":
        labels = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    else:
        labels = rng.standard_normal(n)
    dense = dense.astype(dtype)
    features = sp.csr_matrix(dense) if layout == "csr" else dense
    objective = Network(features, labels, l2, hidden=hidden, activation=activation, head=head,
                        n_classes=classes if head == "softmax" else None)
    x = (objective.initial_point(seed) + spread * rng.standard_normal(objective.n_params)).astype(dtype)
    return objective, x, dense
