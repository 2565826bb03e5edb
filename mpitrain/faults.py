"""Fault injection for tests of failure handling: ``MPITRAIN_FAULT=kind:rank:step``.

kinds: ``raise`` (a RuntimeError), ``kill`` (SIGKILL to this process), ``nan`` (the
parameters become NaN, so the next gradient is NaN), ``sleep`` (the rank sleeps
``MPITRAIN_FAULT_SECONDS``, default 0.05, every step from ``step`` on: a straggler). The loop
fires a fault at the start of a step, inside the step's timed part, so a sleeping rank's time
counts as its own work (what mpitrain.monitor looks at). A fault that fires once does so on the
path the run takes (its steps in blocks: the block before it ends at its step); a straggler makes
the loop take one step per call. Unset, it costs one comparison per block or step.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: int
    step: int
    seconds: float = 0.0

    @property
    def every_step(self) -> bool:
        """Whether it fires at every step from ``step`` on (a straggler), not once: the loop then
        takes one step per call; a fault that fires once ends a block of steps at its step."""
        return self.kind == "sleep"

    def maybe_fire(self, rank: int, step: int, algorithm) -> None:
        if rank != self.rank or step < self.step:
            return
        if self.kind == "sleep":
            time.sleep(self.seconds)
            return
        if step != self.step:
            return
        if self.kind == "raise":
            raise RuntimeError(f"injected fault at step {step}")
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.kind == "nan":
            algorithm.x[...] = float("nan")


def fault_from_environment() -> Fault | None:
    spec = os.environ.get("MPITRAIN_FAULT")
    if not spec:
        return None
    try:
        kind, rank, step = spec.split(":")
        if kind not in ("raise", "kill", "nan", "sleep"):
            raise ValueError
        return Fault(kind, int(rank), int(step), float(os.environ.get("MPITRAIN_FAULT_SECONDS", "0.05")))
    except ValueError:
        raise ValueError(f"MPITRAIN_FAULT={spec!r}: expected kind:rank:step with kind raise|kill|nan|sleep") from None
