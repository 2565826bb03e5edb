"""Objectives: L2-regularised models on this rank's rows, and the global optimum f*.

``make_objective("logistic", features, labels, l2)`` builds one by name. The linear models
(``mpitrain.objectives.base.Objective``: logistic, least_squares) take no options; the networks
(``mpitrain.objectives.network``: softmax, mlp) take the keywords in their ``OPTIONS``
(hidden, activation, head, n_classes); "torch" (``TorchModel``: any PyTorch model through
mpitrain.torch, imported only then) takes model, head, n_classes, init_seed. Every objective
has the same methods on a flat x of length ``n_params``.
"""
from mpitrain.objectives.base import Objective
from mpitrain.objectives.least_squares import LeastSquares
from mpitrain.objectives.logistic import LogisticRegression
from mpitrain.objectives.network import MLP, Network, Softmax

TORCH_MISSING = "objective.name = 'torch' needs PyTorch: pip install 'mpitrain[torch]'"


class MissingPyTorch(ImportError, ValueError):
    """PyTorch is not installed. An ImportError to Python callers; a ValueError too, so that
    mpitrain.runtime.agree reports it as one line on every rank instead of aborting the job."""


class TorchModel:
    """Any PyTorch model and loss: objective.model = "package.module:function" (needs PyTorch)

    Building one returns a ``mpitrain.torch.TorchObjective`` (``TorchObjective.from_spec``);
    torch is imported then, never with this package.
    """

    name = "torch"
    OPTIONS = ("model", "head", "n_classes", "init_seed")

    def __new__(cls, features, labels, l2, *, model=None, **options):
        try:
            import torch  # noqa: F401  (the one place the core asks for it)
        except ImportError:
            raise MissingPyTorch(TORCH_MISSING) from None
        from mpitrain.torch import TorchObjective

        if not model:
            raise ValueError("objective 'torch' needs the option model: \"package.module:function\" returning "
                             "(model, loss_fn)")
        return TorchObjective.from_spec(features, labels, l2, model, **options)


OBJECTIVES = {
    "logistic": LogisticRegression,
    "least_squares": LeastSquares,
    "softmax": Softmax,
    "mlp": MLP,
    "torch": TorchModel,
}


def make_objective(name, features, labels, l2, **options):
    """The objective called ``name`` (a key of OBJECTIVES) on these rows, with regulariser (l2/2)||x||^2.

    ``options``: the model's keywords (``OBJECTIVES[name].OPTIONS``; the linear models have none).
    An option given as None counts as not given; any other option the model does not take is a
    ValueError naming it.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"name must be one of {sorted(OBJECTIVES)}, got {name!r}")
    if not l2 >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2!r}")
    cls = OBJECTIVES[name]
    options = {key: value for key, value in options.items() if value is not None}
    accepted = getattr(cls, "OPTIONS", ())
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"it takes {', '.join(accepted)}" if accepted else "it takes none"
        raise ValueError(f"objective {name!r} does not take the option(s) {', '.join(unknown)}: {takes}")
    return cls(features, labels, l2, **options)


__all__ = ["OBJECTIVES", "Objective", "LogisticRegression", "LeastSquares", "Network", "Softmax", "MLP",
           "MissingPyTorch", "TorchModel", "make_objective"]
