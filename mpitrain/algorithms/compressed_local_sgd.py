"""Compressed Local SGD: Local SGD (Stich 2019, docs/papers.md s.1) whose averages send compressed
model changes, with error feedback on the change (Beznosikov et al. 2020, docs/papers.md s.2).

Built from the Local SGD parts (mpitrain.algorithms.local_sgd): the same local step, any period
schedule of mpitrain.algorithms.periods (constant, post_local, auto, growing; plus an average
after the last step), the same outputs; only the exchange differs. All workers share the
anchor x_a (the last average; x_0 at the start). Worker k takes local steps
x_k <- x_k - eta_t g_k(x_k) (g_k clipped to ``clip`` when set), and at an averaging round r
(when the period says so, and after the last step)

    Delta_k = x_k - x_a                                (the model change since the average)
    none:  x_a <- x_a + sum_k w_k C(Delta_k)
    ef:    v_k = C(e_k + Delta_k);  e_k <- e_k + Delta_k - v_k;  x_a <- x_a + sum_k w_k v_k
    x_k <- x_a                                         (every worker restarts from the average)

With the identity compressor this is Local SGD (up to the rounding of Delta in the wire
dtype). The evaluated model (``output = "average"``) is the anchor x_a, the same on every
rank (no extra traffic); ``output = "weighted"`` is Stich's x_hat_T over the local iterates,
averaged over the ranks like Local SGD's. EF21 tracks a converging quantity (a gradient),
not a model change: it is not offered here. The local steps up to each round run in one C
call, as Local SGD's do (``LocalModelAlgorithm.run_steps``; clipped there in C as here, with the
C of mpitrain.clip), bit for bit the steps taken one at a time.

Steady memory: a round allocates no parameter-sized temporary here. Delta_k is computed
in place in x (bit-identical to ``x - x_a``), since x is overwritten with the new x_a at the
end of the round anyway; the feedback rule (mpitrain.algorithms.feedback) and the averager
(mpitrain.algorithms.compressed_exchange) reuse their own buffers. What remains per round
is the compressor's payload and the (d,) vector its decode returns. Fresh (d,) temporaries
every round grow a rank's resident memory under MPICH's ch4:ucx netmod (see
CompressedAverager); tests/test_compressed_local_memory.py pins this.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from ..clip import clip_by_norm
from ..fields import ConfigError, bounded, choice
from .compressed_exchange import CompressedAverager, CompressedSender
from .compressed_sgd import warn_if_biased_without_feedback
from .compression_options import CompressionOptions, build_compressor, check_compression_options
from .local_sgd import OUTPUTS, LocalModelAlgorithm, check_period_options, check_weight_shift
from .periods import PERIOD_SCHEDULES, AndLast, make_period


@dataclass(frozen=True)
class CompressedLocalSGDOptions(CompressionOptions):
    period: int = bounded(8, min=1)  # H: local steps between averaging rounds (first period for "growing")
    schedule: str = choice("constant", PERIOD_SCHEDULES)  # constant | post_local | auto | growing
    warmup_steps: int = bounded(0, min=0)  # post_local: synchronous steps before the local ones
    growth: float = bounded(2.0, min=1.0)  # growing: each period is this times the previous one
    max_period: int = bounded(0, min=0)  # growing: cap on H; 0 for none
    output: str = choice("average", OUTPUTS)  # evaluated model: the anchor x_a, or Stich's x_hat
    weight_shift: typing.Optional[float] = None  # a in w_t = (a + t)^2; default step_size.a

    def __post_init__(self):
        super().__post_init__()
        check_weight_shift(self.weight_shift)


def averages_after(t: int, period: int, steps: int) -> bool:
    """Whether step t (0-based) ends with an averaging round under a constant period H: every
    H steps, and the last (the schedule-free form of ``AndLast(ConstantPeriod(H), steps)``)."""
    return (t + 1) % period == 0 or t + 1 == steps


class CompressedLocalSGD(LocalModelAlgorithm):
    """Local steps, then a compressed average of the model changes when the period says so."""

    name = "compressed_local_sgd"
    options = CompressedLocalSGDOptions

    def __init__(self, worker, options=None, step_size_shift: float = 1.0):
        super().__init__(worker, options, step_size_shift)
        self.period = AndLast(make_period(self.opts, worker.steps, worker.size, worker.batch_size), worker.steps)
        self.compressor = build_compressor(self.opts, self.x.size, self.name)
        self.sender = CompressedSender(self.compressor, self.opts.error_feedback, self.x.dtype, worker.seed, worker.rank)
        self.averager = CompressedAverager(worker.comm, worker.stats, worker.weight, self.compressor, self.x.dtype)
        warn_if_biased_without_feedback(worker, self.name, self.opts, self.compressor)
        self.anchor = self.x.copy()  # x_a, the last average
        self.steps_done = 0
        self.use_step_blocks(clip=self.opts.clip)  # the local steps in C, clipped as stochastic_gradient clips

    @classmethod
    def validate(cls, config):
        opts = config.section(cls.name)
        if opts.error_feedback == "ef21":
            raise ConfigError(f"{cls.name}.error_feedback", "'ef21' is for gradients; use 'ef' or 'none' "
                              "for compressed Local SGD")
        check_compression_options(opts, cls.name)
        check_period_options(opts, config.train.steps, cls.name)

    def stochastic_gradient(self) -> np.ndarray:
        """A fresh mini-batch gradient at x, clipped when ``clip`` > 0."""
        g = super().stochastic_gradient()
        if self.opts.clip > 0:
            started = perf_counter()
            clip_by_norm(g, self.opts.clip, out=g)
            self.worker.stats.compute_seconds += perf_counter() - started
        return g

    def synchronise(self, t: int) -> None:
        """One averaging round (module doc); x holds Delta_k between the encode and the reset."""
        stats = self.worker.stats  # compute time by clock pairs, as compressed_sgd's step
        started = perf_counter()
        change = np.subtract(self.x, self.anchor, out=self.x)  # Delta_k in x's storage; x <- x_a below
        payload = self.sender.encode(change, 1.0, self.syncs)
        stats.compute_seconds += perf_counter() - started
        mean = self.averager.average(payload)
        started = perf_counter()
        self.anchor += self.sender.direction(mean, 1.0)
        self.x[...] = self.anchor
        stats.compute_seconds += perf_counter() - started
        self.syncs += 1

    def evaluation_point(self) -> np.ndarray:
        """The anchor x_a (the same on every rank), or Stich's x_hat averaged over the ranks."""
        if self.output is None:
            return self.anchor
        return super().evaluation_point()

    def metrics(self) -> dict:
        return {**super().metrics(), "bits_sent": self.averager.bits_sent, "period": self.period.current(self.steps_done)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "feedback": self.sender.rule.state_dict(), "bits_sent": self.averager.bits_sent,
                "anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sender.rule.load_state_dict(state["feedback"])
        self.averager.bits_sent = int(state["bits_sent"])
        self.anchor[...] = state["anchor"]
