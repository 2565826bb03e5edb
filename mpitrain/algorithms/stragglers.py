"""Slowed-down workers for asynchronous experiments: how long a straggler waits per step.

With one worker slowed so that its gradients arrive rarely, the largest delay tau_max grows
with the slowdown while the concurrency tau_C (gradients in flight, about the number of
workers) does not: the regime of Erickson and Johansson 2026 (docs/papers.md s.3).

A :class:`Straggler` returns the extra seconds to wait after a step's own work took
``elapsed`` seconds. ``SLOWDOWNS`` maps the config names to the classes:

factor       wait (factor - 1) * elapsed: the step takes ``factor`` times as long
fixed        wait ``seconds`` every step
exponential  wait E * seconds, E ~ Exp(1) (mean ``seconds``)
pareto       wait a Lomax(shape) draw scaled to mean ``seconds`` (heavy-tailed: the
             variance is infinite for shape <= 2)

:func:`sleep` waits in slices so that a stop request reaches a sleeping straggler within
:data:`STOP_CHECK_SECONDS` (a signal alone does not end ``time.sleep``: Python resumes it);
:func:`rng_state` / :func:`load_rng_state` checkpoint the random slowdowns' streams.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


@dataclass
class Factor:
    factor: float

    def extra(self, elapsed: float) -> float:
        return (self.factor - 1.0) * elapsed


@dataclass
class Fixed:
    seconds: float

    def extra(self, elapsed: float) -> float:
        return self.seconds


@dataclass
class Exponential:
    seconds: float
    rng: np.random.Generator

    def extra(self, elapsed: float) -> float:
        return self.seconds * self.rng.exponential()


@dataclass
class Pareto:
    seconds: float
    shape: float
    rng: np.random.Generator

    def extra(self, elapsed: float) -> float:
        # numpy's pareto(a) is Lomax with mean 1 / (a - 1) for a > 1
        return self.seconds * (self.shape - 1.0) * self.rng.pareto(self.shape)


SLOWDOWNS = ("factor", "fixed", "exponential", "pareto")


def make_straggler(options, seed: int, rank: int):
    """The Straggler of this rank from the [async_sgd] options, or None if it is not slowed."""
    if rank not in options.straggler_ranks:
        return None
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, rank, 0x5354])))
    kinds = {
        "factor": lambda: Factor(options.slowdown_factor),
        "fixed": lambda: Fixed(options.slowdown_seconds),
        "exponential": lambda: Exponential(options.slowdown_seconds, rng),
        "pareto": lambda: Pareto(options.slowdown_seconds, options.slowdown_shape, rng),
    }
    return kinds[options.slowdown]()


#: a sleeping straggler asks ``stop()`` at least this often (seconds)
STOP_CHECK_SECONDS = 0.05


def sleep(seconds: float, stop: Callable[[], bool] = lambda: False, tick: Optional[Callable[[], None]] = None,
          tick_seconds: float = 1e-3, check_seconds: float = STOP_CHECK_SECONDS) -> bool:
    """Sleep ``seconds`` in slices; False as soon as ``stop()`` is true (checked about every
    ``check_seconds``; the sleep is cut short), True when the whole time was slept. ``tick``:
    called about every ``tick_seconds`` (a store's RMA progress when no thread serves it)."""
    end = time.perf_counter() + seconds
    next_check = time.perf_counter() + check_seconds
    pause = check_seconds if tick is None else min(tick_seconds, check_seconds)
    while (left := end - time.perf_counter()) > 0:
        if tick is not None:
            tick()
        if time.perf_counter() >= next_check:
            if stop():
                return False
            next_check = time.perf_counter() + check_seconds
        time.sleep(min(left, pause))
    return True


def rng_state(straggler) -> Optional[dict]:
    """The state of a random slowdown's stream (None for a deterministic one, or no straggler)."""
    rng = getattr(straggler, "rng", None)
    return None if rng is None else rng.bit_generator.state


def load_rng_state(straggler, state: Optional[dict]) -> None:
    if state is not None:
        straggler.rng.bit_generator.state = state
