"""Compressed Local SGD: Local SGD (Stich 2019, PAPERS.md s.1) whose averages send compressed
model changes, with error feedback on the change (Beznosikov et al. 2020, PAPERS.md s.2).

All workers share the anchor x_a (the last average; x_0 at the start). Worker k takes H
local steps x_k <- x_k - eta_t g_k(x_k) (g_k clipped to ``clip`` when set), then at an
averaging round r (after steps H, 2H, ..., and after the last step)

    Delta_k = x_k - x_a                                (the model change since the average)
    none:  x_a <- x_a + sum_k w_k C(Delta_k)
    ef:    v_k = C(e_k + Delta_k);  e_k <- e_k + Delta_k - v_k;  x_a <- x_a + sum_k w_k v_k
    x_k <- x_a                                         (every worker restarts from the average)

With the identity compressor this is Local SGD (up to the rounding of Delta in the wire
dtype). The evaluated model is the anchor x_a (the same on every rank; no extra traffic).
EF21 tracks a converging quantity (a gradient), not a model change: it is not offered here.

Steady memory: a round allocates no parameter-sized temporary here. Delta_k is computed
in place in x (bit-identical to ``x - x_a``), since x is overwritten with the new x_a at the
end of the round anyway; the feedback rule (mpitrain.algorithms.feedback) and the averager
(mpitrain.algorithms.compressed_exchange) reuse their own buffers. What remains per round
is the compressor's payload and the (d,) vector its decode returns. Fresh (d,) temporaries
every round grow a rank's resident memory under MPICH's ch4:ucx netmod (see
CompressedAverager); tests/test_compressed_local_memory.py pins this.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fields import ConfigError, bounded
from .compressed_sgd import CompressedSGD
from .compression_options import CompressionOptions, check_compression_options


@dataclass(frozen=True)
class CompressedLocalSGDOptions(CompressionOptions):
    period: int = bounded(8, min=1)  # H: local steps between averaging rounds


def averages_after(t: int, period: int, steps: int) -> bool:
    """Whether step t (0-based) ends with an averaging round: every H steps, and the last."""
    return (t + 1) % period == 0 or t + 1 == steps


class CompressedLocalSGD(CompressedSGD):
    """H local steps, then a compressed average of the model changes."""

    name = "compressed_local_sgd"
    options = CompressedLocalSGDOptions

    def __init__(self, worker, options=None):
        super().__init__(worker, options)
        self.anchor = self.x.copy()  # x_a, the last average
        self.rounds = 0

    @classmethod
    def validate(cls, config):
        opts = config.section(cls.name)
        if opts.error_feedback == "ef21":
            raise ConfigError(f"{cls.name}.error_feedback", "'ef21' is for gradients; use 'ef' or 'none' "
                              "for compressed Local SGD")
        check_compression_options(opts, cls.name)

    def step(self, t: int) -> None:
        g = self.gradient()
        with self.worker.stats.compute():
            g *= self.x.dtype.type(self.worker.step_size(t))
            self.x -= g
        if averages_after(t, self.opts.period, self.worker.steps):
            self.synchronise()

    def synchronise(self) -> None:
        """One averaging round (module doc); x holds Delta_k between the encode and the reset."""
        with self.worker.stats.compute():
            change = np.subtract(self.x, self.anchor, out=self.x)  # Delta_k in x's storage; x <- x_a below
            payload = self.sender.encode(change, 1.0, self.rounds)
        mean = self.averager.average(payload)
        with self.worker.stats.compute():
            self.anchor += self.sender.direction(mean, 1.0)
            self.x[...] = self.anchor
        self.rounds += 1

    def evaluation_point(self) -> np.ndarray:
        return self.anchor

    def metrics(self) -> dict:
        return {**super().metrics(), "syncs": self.rounds}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "anchor": self.anchor, "rounds": self.rounds}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.anchor[...] = state["anchor"]
        self.rounds = int(state["rounds"])
