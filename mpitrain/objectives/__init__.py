"""Objectives: L2-regularised linear models on this rank's rows, and the global optimum f*.

``make_objective("logistic", features, labels, l2)`` builds one by name; see
``mpitrain.objectives.base.Objective`` for the formulas and the methods.
"""
from mpitrain.objectives.base import Objective
from mpitrain.objectives.least_squares import LeastSquares
from mpitrain.objectives.logistic import LogisticRegression

OBJECTIVES = {
    "logistic": LogisticRegression,
    "least_squares": LeastSquares,
}


def make_objective(name, features, labels, l2):
    """The objective called ``name`` (a key of OBJECTIVES) on these rows, with regulariser (l2/2)||x||^2."""
    if name not in OBJECTIVES:
        raise ValueError(f"name must be one of {sorted(OBJECTIVES)}, got {name!r}")
    if not l2 >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2!r}")
    return OBJECTIVES[name](features, labels, l2)


__all__ = ["OBJECTIVES", "Objective", "LogisticRegression", "LeastSquares", "make_objective"]
