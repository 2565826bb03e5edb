"""Where a worker's time and bytes go: compute versus communication.

``bytes_sent`` counts the payload a rank contributes to each collective (for an Allreduce of
d float64 numbers, 8 d bytes), the convention of the compression literature ("bits sent per
worker"); a ring allreduce physically moves about 2 (K - 1) / K times that.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class CommStats:
    rounds: int = 0  # collective communication rounds this rank took part in
    bytes_sent: int = 0  # payload bytes this rank contributed, summed over rounds
    compute_seconds: float = 0.0  # time inside compute() blocks
    comm_seconds: float = 0.0  # time inside communicate() blocks (waiting included)

    @contextmanager
    def compute(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.compute_seconds += time.perf_counter() - start

    @contextmanager
    def communicate(self, nbytes: int = 0, rounds: int = 1):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.comm_seconds += time.perf_counter() - start
            self.bytes_sent += int(nbytes)
            self.rounds += rounds

    def record(self, seconds: float, nbytes: int, rounds: int = 1):
        """Account one communication measured by the caller (cheaper than the context manager)."""
        self.comm_seconds += seconds
        self.bytes_sent += nbytes
        self.rounds += rounds

    def as_dict(self) -> dict:
        return {
            "comm_rounds": self.rounds,
            "bytes_sent": self.bytes_sent,
            "compute_seconds": self.compute_seconds,
            "comm_seconds": self.comm_seconds,
        }

    def load(self, state: dict):
        self.rounds = int(state["comm_rounds"])
        self.bytes_sent = int(state["bytes_sent"])
        self.compute_seconds = float(state["compute_seconds"])
        self.comm_seconds = float(state["comm_seconds"])
