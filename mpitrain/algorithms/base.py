"""What every algorithm sees (:class:`Worker`) and must provide (:class:`Algorithm`).

The training loop (mpitrain.train) owns timing, evaluation, metrics and checkpoints; an
algorithm owns only its math and its communication. One ``step(t)`` is one iteration of one
worker; ``evaluation_point()`` is the model the loop evaluates (for Local SGD the weighted
average, for example); ``state_dict()`` / ``load_state_dict()`` hold everything a resumed
run needs beyond the parameters and the sampler.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..comm.accounting import CommStats
from ..comm.averaging import Averager
from ..sampling import BatchSampler


@dataclass
class Worker:
    """One rank's share of the problem and its tools."""

    comm: Any  # the mpi4py communicator of all workers
    objective: Any  # mpitrain.objectives.Objective over this rank's rows
    n_global: int  # N, total samples over all ranks
    weight: float  # n_local / N, this rank's weight in averages
    sampler: BatchSampler  # draws local mini-batches, seeded from (seed, rank)
    step_size: Callable[[int], float]  # eta_t
    stats: CommStats  # compute/communication accounting
    config: Any  # the whole mpitrain.config.Config
    x0: np.ndarray  # starting point (same on every rank)

    @property
    def rank(self) -> int:
        return self.comm.Get_rank()

    @property
    def size(self) -> int:
        return self.comm.Get_size()

    def averager(self) -> Averager:
        return Averager(self.comm, self.weight, self.stats)


class Algorithm:
    """Base class: holds ``x`` and a gradient buffer; subclasses implement ``step``."""

    #: option section class (a frozen dataclass) of this algorithm, or None
    options = None

    def __init__(self, worker: Worker):
        self.worker = worker
        self.x = worker.x0.copy()
        self.grad = np.empty_like(self.x)

    @classmethod
    def validate(cls, config):
        """Cross-section checks on the config (raise mpitrain.config.ConfigError)."""

    def step(self, t: int) -> None:
        raise NotImplementedError

    def stochastic_gradient(self) -> np.ndarray:
        """grad on a fresh local mini-batch at self.x, into self.grad (timed as compute)."""
        w = self.worker
        with w.stats.compute():
            w.objective.batch_gradient(self.x, w.sampler.draw(), self.grad)
        return self.grad

    def evaluation_point(self) -> np.ndarray:
        """The model the loop evaluates; collective if the algorithm needs to average."""
        return self.x

    def metrics(self) -> dict:
        """Extra numbers for the metrics line (JSON-serialisable)."""
        return {}

    def state_dict(self) -> dict:
        return {"x": self.x}

    def load_state_dict(self, state: dict) -> None:
        self.x[...] = state["x"]

    def finish(self) -> None:
        """Called once after the last step (collective)."""
