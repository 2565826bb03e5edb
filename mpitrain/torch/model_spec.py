"""The model a config names: ``objective.model = "package.module:function"``.

The function returns ``(model, loss_fn)``: a ``torch.nn.Module`` and the loss it is trained on,
``loss_fn(model(inputs), targets)`` averaged over the rows (see mpitrain.torch.objective). It may
take the keywords ``n_features`` (the data's columns: a row's input is that long, an image model
reshapes it in its forward) and ``n_classes`` (C for a softmax head, else None); it is called
with those of them its signature names (all of them when it takes ``**kwargs``).

It runs with torch's CPU random generator forked and seeded with ``seed`` (config field
objective.init_seed), so every rank builds the same initial weights and the caller's own
generator state is left as it was. The module is imported as Python imports it: from the
working directory (``python -m mpitrain`` puts it on sys.path) or from PYTHONPATH.
"""
from __future__ import annotations

import importlib
import inspect

import torch

ARGUMENTS = ("n_features", "n_classes")  # the keywords a model function may take


def resolve(spec: str):
    """The function that ``spec`` ("package.module:function", or ":Class.method") names; ValueError
    naming objective.model when it cannot be found."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"objective.model must be \"package.module:function\", got {spec!r}")
    module_name, attribute = spec.split(":")
    if not module_name or not attribute:
        raise ValueError(f"objective.model must be \"package.module:function\", got {spec!r}")
    try:
        target = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"objective.model = {spec!r}: cannot import {module_name!r} ({exc}); run from the "
                         "folder that holds it or put it on PYTHONPATH") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"objective.model = {spec!r}: {module_name!r} has no {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"objective.model = {spec!r}: {attribute!r} is not a function")
    return target


def arguments_taken(function, values: dict) -> dict:
    """The entries of ``values`` that ``function``'s signature names (all of them with **kwargs)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(values)
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {key: value for key, value in values.items() if key in names}


def load_model(spec: str, *, seed: int = 0, n_features=None, n_classes=None):
    """``(model, loss_fn)`` from the function ``spec`` names, built under torch's CPU generator forked
    and seeded with ``seed``. ValueError (naming objective.model) when the function is not found or
    returns something else."""
    function = resolve(spec)
    keywords = arguments_taken(function, {"n_features": n_features, "n_classes": n_classes})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = function(**keywords)
    if not (isinstance(built, tuple) and len(built) == 2):
        raise ValueError(f"objective.model = {spec!r} must return (model, loss_fn), got {type(built).__name__}")
    model, loss_fn = built
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"objective.model = {spec!r} returned a {type(model).__name__} as its model; "
                         "expected a torch.nn.Module")
    if not callable(loss_fn):
        raise ValueError(f"objective.model = {spec!r} returned a {type(loss_fn).__name__} as its loss; "
                         "expected a callable loss_fn(output, target)")
    return model, loss_fn
