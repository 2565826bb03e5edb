"""The experiments' scoring (mpitrain.experiments.workers.checked_run): models scored on
threads of their own while the workers step on give the checks and values of scoring each model
before the next block, end at the first that meets the stop rule, never run more than the
scorer's depth past it, and pass a scoring error on."""
import time

import numpy as np
import pytest

from mpitrain.comm import inprocess
from mpitrain.experiments.workers import Scorer, checked_run


class Curve:
    """A stand-in Problem whose F(x) - f* is x[0], scored slowly (so the workers run ahead)."""

    def __init__(self, seconds=0.002, fail_at=None):
        self.seconds, self.fail_at, self.calls = seconds, fail_at, 0

    def suboptimality(self, x):
        self.calls += 1
        time.sleep(self.seconds)
        if self.fail_at is not None and x[0] == self.fail_at:
            raise ValueError("scoring failed")
        return float(x[0])


class Steps:
    """A stand-in algorithm: its model after t steps has value values(t) on every rank."""

    def __init__(self, values):
        self.values, self.t = values, 0

    def run_steps(self, t, count):
        self.t = t + count
        return count

    def evaluation_point(self):
        return np.array([self.values(self.t), 0.0])


def values(t):
    return 1.0 / (1 + t) if t != 30 else 0.001  # a dip at t = 30, then the decay


def sequential(check, max_steps, stop, score_initial=False):
    out = [(0, values(0))] if score_initial else []
    t = 0
    while t < max_steps:
        t += check
        out.append((t, values(t)))
        if stop(out[-1][1]):
            break
    return out


@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.parametrize("target", [0.05, 0.001, 1e-9], ids=["decay", "dip", "never"])
def test_checked_run_scores_what_scoring_each_check_in_turn_would(ranks, target):
    stop = lambda value: value <= target  # noqa: E731
    problem = Curve()
    ran = {}

    def rank(comm):
        method = Steps(values)
        scored = checked_run(comm, problem, method, check=10, max_steps=200, stop=stop, score_initial=True)
        ran[comm.Get_rank()] = method.t
        return scored

    got = inprocess.run(ranks, rank)
    want = sequential(10, 200, stop, score_initial=True)
    assert got[0] == want and all(other is None for other in got[1:])
    assert len(set(ran.values())) == 1  # every rank stopped after the same block
    assert ran[0] <= want[-1][0] + 10 * 6  # at most the scorer's depth (6) checks past the end


def test_the_initial_point_never_ends_the_run():
    scored = inprocess.run(1, lambda comm: checked_run(comm, Curve(0.0), Steps(lambda t: 0.0), check=5,
                                                      max_steps=20, stop=lambda v: True, score_initial=True))[0]
    assert scored == [(0, 0.0), (5, 0.0)]


def test_tags_are_taken_at_each_check():
    method = Steps(values)
    scored = inprocess.run(1, lambda comm: checked_run(comm, Curve(0.0), method, check=10, max_steps=50,
                                                      stop=lambda v: False, tag=lambda t: (t, 2 * method.t)))[0]
    assert [tag for tag, _ in scored] == [(t, 2 * t) for t in range(10, 51, 10)]


@pytest.mark.parametrize("ranks", [1, 2])
def test_a_scoring_error_ends_the_run_with_it(ranks):
    problem = Curve(0.0, fail_at=values(40))
    with pytest.raises(ValueError, match="scoring failed"):
        inprocess.run(ranks, lambda comm: checked_run(comm, problem, Steps(values), check=10, max_steps=200,
                                                      stop=lambda v: False))


def test_models_are_copied_when_submitted():
    scorer = Scorer(Curve(0.01), stop=lambda v: False)
    x = np.array([0.5, 0.0])
    scorer.submit(1, x)
    x[0] = 9.0  # the algorithm overwrites its vector in the next block
    assert scorer.close() == [(1, 0.5)]
