"""Where a network's weights live in its flat parameter vector x, and how they start.

Widths s_0 = n_features, s_1 .. s_L (hidden), s_K = n_outputs (K = L + 1 affine layers). x holds,
layer by layer, W_l of shape (s_{l-1}, s_l) row-major and then b_l of shape (s_l,), so that
z_l = h_{l-1} W_l + b_l. (PyTorch's ``nn.Linear(s_{l-1}, s_l).weight`` is W_l transposed.)

Starting points (``initial_point``), drawn in float64 from ``numpy.random.default_rng(seed)``
layer by layer (W_1, W_2, ...), biases zero:

    tanh: Glorot/Xavier uniform   W_l ~ U(-r, r),  r = sqrt(6 / (s_{l-1} + s_l))   (Glorot, Bengio 2010)
    relu: He/Kaiming normal       W_l ~ N(0, 2 / s_{l-1})                          (He et al. 2015)

the output layer drawn by the same rule as the hidden ones. A model without a hidden layer
(softmax regression, a linear model) is convex and starts at x = 0, as the linear objectives do.
"""
from typing import NamedTuple

import numpy as np


class Parameter(NamedTuple):
    name: str  # "W1", "b1", "W2", ...: layer l's weight or bias
    offset: int  # where it starts in x
    shape: tuple  # (s_{l-1}, s_l) for a weight, (s_l,) for a bias


def layer_sizes(n_features, hidden, n_outputs):
    """The widths (s_0, s_1, ..., s_K) as a tuple of ints."""
    return (int(n_features), *(int(h) for h in hidden), int(n_outputs))


def parameter_shapes(sizes):
    """[Parameter(name, offset, shape)] of W_1, b_1, W_2, b_2, ... in x, in order."""
    parameters, offset = [], 0
    for l in range(1, len(sizes)):
        n_in, n_out = sizes[l - 1], sizes[l]
        parameters.append(Parameter(f"W{l}", offset, (n_in, n_out)))
        offset += n_in * n_out
        parameters.append(Parameter(f"b{l}", offset, (n_out,)))
        offset += n_out
    return parameters


def n_params(sizes):
    """Length of x: sum_l (s_{l-1} + 1) s_l."""
    return sum((sizes[l - 1] + 1) * sizes[l] for l in range(1, len(sizes)))


def kernel_layout(sizes, chunk):
    """int64 (4, K + 1) table the kernel reads: the widths, the offsets of W_l and of b_l in x, and
    the offset of layer l's (chunk, s_l) rows in the activation buffer (column 0 unused but s_0)."""
    table = np.zeros((4, len(sizes)), dtype=np.int64)
    table[0] = sizes
    for parameter in parameter_shapes(sizes):
        layer = int(parameter.name[1:])
        table[1 if parameter.name[0] == "W" else 2, layer] = parameter.offset
    table[3, 1:] = chunk * np.cumsum((0, *sizes[1:-1]))
    return table


def unflatten(x, sizes):
    """{name: view of x with the parameter's shape} for each W_l and b_l (views, no copies)."""
    return {p.name: x[p.offset:p.offset + int(np.prod(p.shape))].reshape(p.shape) for p in parameter_shapes(sizes)}


def initial_point(sizes, activation, seed, dtype):
    """The seeded starting x (see the module docstring); the same seed gives the same x everywhere."""
    x = np.zeros(n_params(sizes), dtype=np.float64)
    if len(sizes) > 2:
        rng = np.random.default_rng(seed)
        views = unflatten(x, sizes)
        for l in range(1, len(sizes)):
            fan_in, fan_out = sizes[l - 1], sizes[l]
            if activation == "tanh":
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                views[f"W{l}"][...] = rng.uniform(-limit, limit, size=(fan_in, fan_out))
            else:
                views[f"W{l}"][...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
    return np.ascontiguousarray(x, dtype=dtype)
