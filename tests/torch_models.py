"""Model functions for the PyTorch bridge's tests (objective.model = "torch_models:<function>").

``mlp`` is the built-in mlp (one relu hidden layer, softmax head) written in torch, started at
the built-in's own initial point for init_seed 0 (mpitrain.objectives.layout.initial_point), so a
bridge run and an ``objective.name = "mlp"`` run start from the same weights: W_l (in, out) of the
built-in is Linear.weight (out, in) transposed.
"""
import numpy as np
import torch

from mpitrain.objectives import layout

HIDDEN = 8  # the hidden width the tests give the built-in mlp too (objective.hidden = [8])


def builtin_weights(n_features, n_classes, hidden=HIDDEN, seed=0):
    """{name: array} of the built-in mlp's initial W1, b1, W2, b2 (float64)."""
    sizes = layout.layer_sizes(n_features, (hidden,), n_classes)
    return {k: v.copy() for k, v in layout.unflatten(layout.initial_point(sizes, "relu", seed, np.float64),
                                                     sizes).items()}


def torch_mlp(n_features, n_classes, hidden=HIDDEN):
    """Linear-ReLU-Linear in float64, default torch initialisation."""
    return torch.nn.Sequential(torch.nn.Linear(n_features, hidden, dtype=torch.float64), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, n_classes, dtype=torch.float64))


def set_builtin_weights(model, weights):
    """Copy the built-in's {W1, b1, W2, b2} into the Sequential's two Linear layers (W transposed)."""
    with torch.no_grad():
        for layer, l in ((model[0], 1), (model[2], 2)):
            layer.weight.copy_(torch.from_numpy(weights[f"W{l}"].T))
            layer.bias.copy_(torch.from_numpy(weights[f"b{l}"]))
    return model


def mlp(n_features, n_classes):
    """(the built-in mlp in torch at the built-in's initial point, CrossEntropyLoss)."""
    model = set_builtin_weights(torch_mlp(n_features, n_classes), builtin_weights(n_features, n_classes))
    return model, torch.nn.CrossEntropyLoss()


def bridge_to_builtin(x_bridge, n_features, n_classes, hidden=HIDDEN):
    """The bridge's flat x (fc1.weight, fc1.bias, fc2.weight, fc2.bias) in the built-in's layout."""
    sizes = layout.layer_sizes(n_features, (hidden,), n_classes)
    out = np.empty(layout.n_params(sizes))
    views = layout.unflatten(out, sizes)
    offset = 0
    for name, shape in (("W1", (hidden, n_features)), ("b1", (hidden,)), ("W2", (n_classes, hidden)),
                        ("b2", (n_classes,))):
        size = int(np.prod(shape))
        block = x_bridge[offset:offset + size].reshape(shape)
        views[name][...] = block.T if name.startswith("W") else block
        offset += size
    return out


def torch_mlp_default(n_features, n_classes):
    """(Linear-ReLU-Linear with torch's own seeded initialisation, CrossEntropyLoss)."""
    return torch_mlp(n_features, n_classes), torch.nn.CrossEntropyLoss()
