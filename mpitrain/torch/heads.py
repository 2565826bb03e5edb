"""The head of a PyTorch loss: how the labels feed it, read off its type (mpitrain.torch.objective).

softmax (class indices, CrossEntropyLoss), logistic (0/1 targets from -1/+1 labels,
BCEWithLogitsLoss) or squared (real values, MSELoss and kin): the same three heads as the built-in
mlp and config field objective.head. And what a loss must be for mpitrain to add its values up
over chunks of rows: the mean over the rows it is given.
"""
from __future__ import annotations

import torch

functional = torch.nn.functional

#: how each head takes its labels, in words (for messages)
HEADS = {
    "softmax": "class indices 0..C-1 (as CrossEntropyLoss)",
    "logistic": "0/1 targets from labels -1/+1 (as BCEWithLogitsLoss)",
    "squared": "real values (as MSELoss)",
}
#: the loss modules whose head is known; a subclass counts as its base
LOSS_HEADS = {
    torch.nn.CrossEntropyLoss: "softmax", torch.nn.NLLLoss: "softmax",
    torch.nn.BCEWithLogitsLoss: "logistic",
    torch.nn.MSELoss: "squared", torch.nn.L1Loss: "squared", torch.nn.HuberLoss: "squared",
    torch.nn.SmoothL1Loss: "squared",
}
#: the same for torch.nn.functional's losses
FUNCTION_HEADS = {
    functional.cross_entropy: "softmax", functional.nll_loss: "softmax",
    functional.binary_cross_entropy_with_logits: "logistic",
    functional.mse_loss: "squared", functional.l1_loss: "squared", functional.huber_loss: "squared",
    functional.smooth_l1_loss: "squared",
}


def describe(loss_fn) -> str:
    return getattr(loss_fn, "__name__", None) or type(loss_fn).__name__


def head_of(loss_fn, head=None) -> str:
    """The head ("softmax", "logistic" or "squared") for ``loss_fn``: ``head`` when given (checked
    against the loss's type when that is known), else read off the type; ValueError otherwise."""
    known = next((h for cls, h in LOSS_HEADS.items() if isinstance(loss_fn, cls)), None)
    if known is None:
        try:
            known = FUNCTION_HEADS.get(loss_fn)
        except TypeError:  # an unhashable callable
            known = None
    if head is None:
        if known is None:
            raise ValueError(f"cannot tell how {describe(loss_fn)} takes its targets: pass head='softmax' "
                             f"({HEADS['softmax']}), 'logistic' ({HEADS['logistic']}) or 'squared' "
                             f"({HEADS['squared']})")
        return known
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(map(repr, HEADS))}, got {head!r}")
    if known is not None and head != known:
        raise ValueError(f"head {head!r} does not fit {describe(loss_fn)}, which takes {HEADS[known]}: "
                         f"use head {known!r}")
    return head


def check_loss(loss_fn) -> None:
    """ValueError when ``loss_fn`` does not return the mean over rows (see the module doc)."""
    reduction = getattr(loss_fn, "reduction", "mean")
    if reduction != "mean":
        raise ValueError(f"{describe(loss_fn)} has reduction={reduction!r}: mpitrain needs the mean over the "
                         "rows (reduction='mean'); it adds chunks up itself")
    if isinstance(loss_fn, (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)) and loss_fn.weight is not None:
        raise ValueError(f"{describe(loss_fn)} has class weights: its 'mean' divides by the batch's weight sum, "
                         "not by its rows, so chunks of rows do not add up; weight the rows by repeating them")
