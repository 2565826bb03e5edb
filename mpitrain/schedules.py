"""Step-size schedules eta_t, t = 0, 1, ... counting steps of one worker.

- constant:      eta_t = value
- inverse_time:  eta_t = c / (a + t)
- stich:         eta_t = 4 / (mu (a + t)), Stich 2019 (arXiv 1805.09767), Theorem 2.2; the
                 theory asks a > max(16 kappa, H) (docs/papers.md marks the constant as not verified).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Constant:
    value: float

    def __call__(self, t: int) -> float:
        return self.value


@dataclass(frozen=True)
class InverseTime:
    c: float
    a: float

    def __call__(self, t: int) -> float:
        return self.c / (self.a + t)


def stich(mu: float, a: float) -> InverseTime:
    """Stich's eta_t = 4 / (mu (a + t)) is inverse_time with c = 4 / mu."""
    return InverseTime(4.0 / mu, a)


def make_schedule(config, l2: float):
    """The schedule of a StepSizeConfig; ``l2`` is the default mu of ``stich``."""
    if config.schedule == "constant":
        return Constant(config.value)
    if config.schedule == "inverse_time":
        return InverseTime(config.c, config.a)
    mu = config.mu if config.mu is not None else l2
    if mu <= 0:
        raise ValueError("step_size.mu: the stich schedule needs mu > 0 (set step_size.mu or objective.l2 > 0)")
    return stich(mu, config.a)
