"""What a stale gradient becomes before it is applied, in asynchronous SGD.

Erickson and Johansson 2026 (docs/papers.md s.3): the server step is
x <- x - gamma * clip_lambda(g), clip_lambda(g) = min(1, lambda / ||g||_2) g. Two optional
variants of the baselines named there:

- ``step_rule = "delay_adaptive"``: gamma_k = gamma * min(1, K / tau_k), the step shrinks
  as 1/tau once the delay exceeds the number of workers K (the form of the delay-adaptive
  step sizes of Koloskova, Stich, Jaggi 2022 and Mishchenko et al. 2022, with the
  concurrency K in place of their constants);
- ``max_delay``: a gradient whose delay exceeds it is dropped (Ringmaster ASGD,
  Maranjyan, Tyurin, Richtarik 2025).

The same :class:`UpdateRule` runs in the MPI algorithm (mpitrain.algorithms.async_sgd)
and in its discrete-event simulation (mpitrain.algorithms.async_simulation).
"""
from __future__ import annotations

import numpy as np

from ..clip import clip_by_norm, global_norm

STEP_RULES = ("constant", "delay_adaptive")


class UpdateRule:
    """Turns (g, gamma, tau) into the delta -gamma_k * clip(g), or drops it.

    clip: lambda > 0, or None for no clipping. step_rule: a name of STEP_RULES.
    max_delay: drop threshold (None: keep all). workers: K, the delay-adaptive scale.
    Counts what it did: ``applied``, ``dropped``, ``clipped`` and ``max_norm_sent``
    (the largest ||clip(g)|| it produced, which never exceeds lambda).
    """

    def __init__(self, clip=None, step_rule="constant", max_delay=None, workers=1):
        if clip is not None and not clip > 0:
            raise ValueError(f"clip (lambda) must be > 0, got {clip!r}")
        if step_rule not in STEP_RULES:
            raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
        self.clip = clip
        self.step_rule = step_rule
        self.max_delay = max_delay
        self.workers = int(workers)
        self.applied = self.dropped = self.clipped = 0
        self.max_norm_sent = 0.0

    @property
    def needs_delay(self) -> bool:
        """Whether ``delta`` uses tau (then the caller must know it before applying)."""
        return self.step_rule != "constant" or self.max_delay is not None

    def step_size(self, gamma: float, tau: int) -> float:
        if self.step_rule == "delay_adaptive" and tau > self.workers:
            return gamma * self.workers / tau
        return gamma

    def delta(self, g: np.ndarray, gamma: float, tau: int, out: np.ndarray) -> bool:
        """out = -gamma_k * clip(g) (g is clipped in place); False if the gradient is dropped."""
        if self.max_delay is not None and tau > self.max_delay:
            self.dropped += 1
            return False
        if self.clip is not None:
            _, norm = clip_by_norm(g, self.clip, out=g)
            self.clipped += norm > self.clip
        self.max_norm_sent = max(self.max_norm_sent, global_norm(g))
        np.multiply(g, g.dtype.type(-self.step_size(gamma, tau)), out=out)
        self.applied += 1
        return True

    def counts(self) -> dict:
        return {"applied": self.applied, "dropped": self.dropped, "clipped": int(self.clipped),
                "max_norm_sent": float(self.max_norm_sent)}

    def state_dict(self) -> dict:
        """The counts, for a checkpoint (the settings come from the config)."""
        return self.counts()

    def load_state_dict(self, state: dict) -> None:
        self.applied, self.dropped = int(state["applied"]), int(state["dropped"])
        self.clipped, self.max_norm_sent = int(state["clipped"]), float(state["max_norm_sent"])
