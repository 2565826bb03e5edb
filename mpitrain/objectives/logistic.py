"""L2-regularised logistic regression, the objective of the Local SGD experiment
(Stich 2019, docs/papers.md s.1: w8a, l2 = 1/n)."""

from mpitrain._native import objectives as kernels
from mpitrain.objectives.base import Objective


class LogisticRegression(Objective):
    """f_i(x) = log(1 + exp(-y_i a_i . x)), labels y_i in {-1, +1}.

    loss(x) = (1/n) sum_i log(1 + exp(-y_i a_i . x)) + (l2/2)||x||^2;
    grad f_i(x) = -y_i sigmoid(-y_i a_i . x) a_i. The kernels evaluate
    log(1 + exp(-m)) as max(-m, 0) + log1p(exp(-|m|)) and the sigmoid by sign, so
    margins of any size give finite values.
    """

    name = "logistic"
    kind = kernels.LOSS_KINDS["logistic"]
    is_classifier = True

    def correct_sum(self, x):
        """Number of local rows with y_i (a_i . x) > 0, the margin in float64: the sign of the
        margin is the predicted label, and a margin of exactly 0 counts as wrong (no prediction)."""
        self._check(x, "x")
        xp = self.xp
        margins = self.features @ x.astype(xp.float64, copy=False)
        return int((self.labels * margins > 0).sum())

    def curvature(self, z):
        """f_i''(z) = sigmoid(z) sigmoid(-z), independent of the label's sign."""
        from scipy.special import expit  # here: 0.07 s of import, for the reference solve only

        return expit(z) * expit(-z)
