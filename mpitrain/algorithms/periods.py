"""When Local SGD averages: the communication period H and its schedules.

A period object answers one question, ``syncs_after(t)``: is step ``t`` (0-based) followed by
an average of the models? Stich 2019 (arXiv 1805.09767), Algorithm 1, averages when ``t + 1``
is in the set I_T of synchronisation steps; these classes are ways to choose I_T.

- constant:    every H steps, I_T = {H, 2H, ...}; H = 1 is mini-batch parallel SGD.
- post_local:  synchronous SGD (an average after every step) for ``warmup_steps`` steps, then
               every H steps counting from the end of the warm-up (Lin et al. 2020, "Don't use
               large mini-batches, use local SGD").
- auto:        constant H = max(1, floor(sqrt(T / (K b)))), the largest period for which
               Stich's Theorem 2.2 still gives linear speedup, H = O(sqrt(T / (K b))).
- growing:     the j-th period is min(max_period, ceil(H growth^j)): frequent averages while the
               iterates move fast, rare ones near the optimum.

All are stateless functions of ``t`` (a resumed run needs no period state). ``AndLast``
wraps any of them to average after the last step as well (compressed Local SGD ends on an
average, so its anchor is the model it returns). Every Local SGD variant asks a period object
when to average: this module is the one place that decides it.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConstantPeriod:
    period: int  # H >= 1

    def syncs_after(self, t: int) -> bool:
        return (t + 1) % self.period == 0

    def current(self, t: int) -> int:
        """The period in force at step t."""
        return self.period


@dataclass(frozen=True)
class PostLocalPeriod:
    warmup_steps: int  # synchronous steps before local steps start
    period: int  # H after the warm-up

    def syncs_after(self, t: int) -> bool:
        if t < self.warmup_steps:
            return True
        return (t + 1 - self.warmup_steps) % self.period == 0

    def current(self, t: int) -> int:
        return 1 if t < self.warmup_steps else self.period


@dataclass
class GrowingPeriod:
    first: int  # H_0
    growth: float  # H_j = ceil(H_0 growth^j), >= 1
    max_period: int = 0  # cap on H_j; 0 for none
    _ends: list = field(default_factory=list, repr=False)  # sync steps t + 1, ascending

    def _length(self, j: int) -> int:
        length = math.ceil(self.first * self.growth ** j - 1e-9)
        return min(length, self.max_period) if self.max_period > 0 else length

    def _extend(self, t: int):
        while not self._ends or self._ends[-1] < t + 1:
            last = self._ends[-1] if self._ends else 0
            self._ends.append(last + self._length(len(self._ends)))

    def syncs_after(self, t: int) -> bool:
        self._extend(t)
        i = bisect.bisect_left(self._ends, t + 1)
        return self._ends[i] == t + 1

    def current(self, t: int) -> int:
        self._extend(t)
        return self._length(bisect.bisect_left(self._ends, t + 1))


@dataclass(frozen=True)
class AndLast:
    """``inner``'s synchronisation steps, and the last step of a run of ``steps`` steps."""

    inner: object
    steps: int

    def syncs_after(self, t: int) -> bool:
        return self.inner.syncs_after(t) or t + 1 == self.steps

    def current(self, t: int) -> int:
        return self.inner.current(t)


def auto_period(steps: int, workers: int, batch_size: int) -> int:
    """H = max(1, floor(sqrt(T / (K b)))), Stich 2019, Theorem 2.2 (linear-speedup regime)."""
    return max(1, math.isqrt(steps // (workers * batch_size)))  # isqrt(floor(x)) == floor(sqrt(x))


def make_period(options, steps: int, workers: int, batch_size: int):
    """The period object of a ``[local_sgd]`` section for a run of ``steps`` steps on ``workers`` ranks."""
    builders = {
        "constant": lambda: ConstantPeriod(options.period),
        "post_local": lambda: PostLocalPeriod(options.warmup_steps, options.period),
        "auto": lambda: ConstantPeriod(auto_period(steps, workers, batch_size)),
        "growing": lambda: GrowingPeriod(options.period, options.growth, options.max_period),
    }
    return builders[options.schedule]()


PERIOD_SCHEDULES = ("constant", "post_local", "auto", "growing")


def count_syncs(period, steps: int) -> int:
    """How many averages a run of ``steps`` steps does (the communication rounds)."""
    return sum(period.syncs_after(t) for t in range(steps))
