"""Network objectives against PyTorch autograd on the same weights, float64.

The same flat x is split into W_l (s_{l-1}, s_l) and b_l (mpitrain.objectives.layout), PyTorch
evaluates z_l = h_{l-1} W_l + b_l, relu/tanh, and the head's mean loss (F.cross_entropy,
softplus(-y o), 0.5 (o - y)^2) plus (l2/2)||x||^2; loss and gradient must agree to a relative
error of 1e-10 (gradient: in the max norm). CSR objectives are compared with PyTorch on the same
matrix made dense. Skips where torch is not installed (.venv has none).
"""
import numpy as np
import pytest

from network_cases import random_network

torch = pytest.importorskip("torch")
functional = torch.nn.functional

pytestmark = pytest.mark.torch

HEADS = ["softmax", "logistic", "squared"]
ACTIVATIONS = ["relu", "tanh"]
LAYOUTS = ["dense", "csr"]
DEPTHS = [(), (7,), (7, 5)]
TOLERANCE = 1e-10


def make_network(head, activation, layout, hidden, n=50, d=12, seed=0):
    objective, x, dense = random_network(head, activation, layout, hidden, n=n, d=d, classes=4, density=0.3,
                                         l2=0.03, seed=seed, spread=0.2, empty_row=False)
    return objective, dense, x


def torch_loss_and_gradient(objective, dense, x, rows=None):
    """(loss, gradient) of the objective at x by PyTorch autograd, on all rows or on ``rows``."""
    flat = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    inputs = torch.tensor(dense if rows is None else dense[rows], dtype=torch.float64)
    labels = objective.labels if rows is None else objective.labels[rows]
    h = inputs
    shapes = objective.parameter_shapes()
    layers = len(shapes) // 2
    for l in range(layers):
        weight, bias = shapes[2 * l], shapes[2 * l + 1]
        w = flat[weight.offset:weight.offset + weight.shape[0] * weight.shape[1]].view(weight.shape)
        b = flat[bias.offset:bias.offset + bias.shape[0]]
        h = h @ w + b
        if l < layers - 1:
            h = torch.relu(h) if objective.activation == "relu" else torch.tanh(h)
    if objective.head == "softmax":
        data = functional.cross_entropy(h, torch.tensor(labels, dtype=torch.int64))
    elif objective.head == "logistic":
        data = functional.softplus(-torch.tensor(labels) * h[:, 0]).mean()
    else:
        data = (0.5 * (h[:, 0] - torch.tensor(labels)) ** 2).mean()
    loss = data + 0.5 * objective.l2 * (flat * flat).sum()
    loss.backward()
    return loss.item(), flat.grad.numpy()


def relative_errors(objective, dense, x, rows=None):
    expected_loss, expected = torch_loss_and_gradient(objective, dense, x, rows)
    if rows is None:
        loss, gradient = objective.loss(x), objective.gradient(x)
    else:
        loss, gradient = objective.batch_loss(x, rows), objective.batch_gradient(x, rows, np.empty_like(x))
    return (abs(loss - expected_loss) / abs(expected_loss),
            np.abs(gradient - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("hidden", DEPTHS, ids=["0", "1", "2"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("head", HEADS)
def test_loss_and_gradient_equal_pytorch_autograd(head, activation, layout, hidden):
    objective, dense, x = make_network(head, activation, layout, hidden)
    loss_error, gradient_error = relative_errors(objective, dense, x)
    assert loss_error <= TOLERANCE and gradient_error <= TOLERANCE


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("head", HEADS)
def test_batch_with_repeated_rows_equals_pytorch_autograd(head, layout):
    objective, dense, x = make_network(head, "tanh", layout, (7,), seed=1)
    rows = np.array([3, 3, 0, 49, 17, 3], dtype=np.int64)
    loss_error, gradient_error = relative_errors(objective, dense, x, rows)
    assert loss_error <= TOLERANCE and gradient_error <= TOLERANCE


def test_more_rows_than_one_chunk_equal_pytorch_autograd():
    objective, dense, x = make_network("softmax", "relu", "csr", (9,), n=700, d=20, seed=2)
    loss_error, gradient_error = relative_errors(objective, dense, x)
    assert loss_error <= TOLERANCE and gradient_error <= TOLERANCE
