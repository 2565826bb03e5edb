"""L2-regularised least squares (ridge regression)."""
import numpy as np

from mpitrain._native import objectives as kernels
from mpitrain.objectives.base import Objective


class LeastSquares(Objective):
    """f_i(x) = 0.5 (a_i . x - y_i)^2.

    loss(x) = (1/n) sum_i 0.5 (a_i . x - y_i)^2 + (l2/2)||x||^2;
    grad f_i(x) = (a_i . x - y_i) a_i.
    """

    name = "least_squares"
    kind = kernels.LOSS_KINDS["least_squares"]

    def curvature(self, z):
        """f_i''(z) = 1."""
        return np.ones_like(z, dtype=np.float64)
