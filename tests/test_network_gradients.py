"""Network objectives: the kernels' gradient against central finite differences of their loss.

Every head (softmax, logistic, squared) x activation (relu, tanh) x input (dense, CSR) x depth
(0, 1, 2 hidden layers), float64: ||g - g_fd||_inf <= 1e-6 ||g_fd||_inf with h = 1e-6 (the
truncation error is O(h^2) and the rounding error O(eps / h), both far below the bound; a relu
kink crossed within h would show up as one wrong entry, and the seeds here cross none).
"""
import numpy as np
import pytest

from network_cases import random_network

HEADS = ["softmax", "logistic", "squared"]
ACTIVATIONS = ["relu", "tanh"]
LAYOUTS = ["dense", "csr"]
DEPTHS = [(), (5,), (5, 4)]


def make_network(head, activation, layout, hidden, l2=0.05, n=24, d=6, seed=0):
    """A small float64 network and a point x near its seeded start (biases non-zero)."""
    objective, x, _ = random_network(head, activation, layout, hidden, n=n, d=d, classes=3, density=0.5, l2=l2,
                                     seed=seed)
    return objective, x


def central_differences(function, x, h=1e-6):
    grad = np.empty_like(x)
    for j in range(x.shape[0]):
        step = np.zeros_like(x)
        step[j] = h
        grad[j] = (function(x + step) - function(x - step)) / (2 * h)
    return grad


@pytest.mark.parametrize("hidden", DEPTHS, ids=["0", "1", "2"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("head", HEADS)
def test_gradient_equals_central_differences(head, activation, layout, hidden):
    objective, x = make_network(head, activation, layout, hidden)
    expected = central_differences(objective.loss, x)
    actual = objective.gradient(x)
    assert np.abs(actual - expected).max() <= 1e-6 * np.abs(expected).max()


@pytest.mark.parametrize("head", HEADS)
def test_batch_gradient_equals_differences_of_batch_loss(head):
    objective, x = make_network(head, "tanh", "csr", (5,), seed=3)
    rows = np.array([4, 4, 0, 23, 2, 4], dtype=np.int64)
    expected = central_differences(lambda v: objective.batch_loss(v, rows), x)
    actual = objective.batch_gradient(x, rows, np.empty_like(x))
    assert np.abs(actual - expected).max() <= 1e-6 * np.abs(expected).max()
