"""One compressed average: each worker encodes, payloads travel, every worker decodes the mean.

Beznosikov et al. 2020 (PAPERS.md s.2). The roles, in the GRACE split:

- :class:`CompressedSender` (one per worker): seed -> compensate -> encode -> update memory
  (the feedback rules of mpitrain.algorithms.feedback).
- :func:`average_payloads` / :func:`decode_sum`: the weighted mean sum_k w_k C(p_k) from
  the K payloads (non-summable compressors), or from the summed ``values()`` sections
  (summable ones: Rand-k with a shared seed, the identity).
- :class:`CompressedAverager`: the MPI exchange between them (Allgatherv or Allreduce,
  mpitrain.comm.payloads), with bytes and bits counted.

The single-process simulation (simulated_compressed_sgd) uses the same sender and the same
combining functions, so it equals a real run up to the summation order of an Allreduce.

Seeds: a random compressor on rank k at exchange t uses derive_seed(derive_seed(s, t), k),
s = derive_seed(run seed, SEED_TAG); a summable one (Rand-k) uses derive_seed(s, t) on
every rank, so all ranks keep the same subset and the values can be summed.
"""
from __future__ import annotations

import numpy as np

from ..comm.payloads import PayloadExchange
from ..compress.base import derive_seed
from .feedback import FEEDBACKS

SEED_TAG = 0xC0DE  # separates compressor streams from other uses of the run seed


def shares_seed(compressor) -> bool:
    """Whether all ranks use one seed per exchange (so payloads are summable)."""
    return bool(compressor.summable)


class CompressedSender:
    """One worker's compressor, feedback memory and seed stream."""

    def __init__(self, compressor, feedback: str, model_dtype, run_seed: int, rank: int):
        self.compressor = compressor
        self.rule = FEEDBACKS[feedback](compressor, model_dtype)
        self.rank = int(rank)
        self.shared = shares_seed(compressor)
        self.base = derive_seed(int(run_seed), SEED_TAG)

    def seed(self, t: int) -> int:
        """The compressor seed of exchange t (uint64)."""
        step = derive_seed(self.base, int(t))
        return step if self.shared else derive_seed(step, self.rank)

    def encode(self, v: np.ndarray, lr: float, t: int) -> np.ndarray:
        """The payload (uint8) of this worker for vector v at exchange t; updates the memory."""
        p = self.rule.compensate(v, lr)
        payload = self.compressor.encode(p, self.seed(t))
        if self.rule.needs_decoded:
            self.rule.update(p, self.compressor.decode(payload))
        return payload

    def direction(self, mean: np.ndarray, lr: float) -> np.ndarray:
        """What the model moves by (x <- x - direction) given the decoded mean."""
        return self.rule.direction(mean, lr)


def payload_bits(compressor) -> int:
    """Bits one worker contributes per exchange: the payload (non-summable) or the values."""
    if compressor.summable:
        return 8 * compressor.values(np.zeros(compressor.payload_nbytes(), np.uint8)).nbytes
    return int(compressor.payload_bits())


def average_payloads(compressor, payloads, weights, dtype) -> np.ndarray:
    """sum_k w_k decode(payloads[k]) in rank order, accumulated in ``dtype`` (shape (d,))."""
    out = np.zeros(compressor.d, dtype=dtype)
    for w, payload in zip(weights, payloads):
        out += np.dtype(dtype).type(w) * compressor.decode(payload).astype(dtype, copy=False)
    return out


def weighted_values(compressor, payload, weight) -> np.ndarray:
    """w_k times the summable section of this worker's payload (a new wire-dtype array)."""
    return compressor.values(payload) * compressor.dtype.type(weight)


def decode_sum(compressor, payload, summed, dtype) -> np.ndarray:
    """decode of ``payload`` with its values section replaced by ``summed`` (sum_k w_k values_k)."""
    template = payload.copy()
    compressor.values(template)[...] = summed
    return compressor.decode(template).astype(dtype, copy=False)


class CompressedAverager:
    """sum_k w_k C(p_k) over ``comm``; counts bytes (CommStats) and bits (``bits_sent``)."""

    def __init__(self, comm, stats, weight: float, compressor, dtype):
        self.comm = comm
        self.compressor = compressor
        self.dtype = np.dtype(dtype)
        self.exchange = PayloadExchange(comm, stats)
        self.weight = float(weight)
        self.weights = comm.allgather(self.weight)  # n_k / N of every rank (set-up, not counted)
        self.counts = [compressor.payload_nbytes()] * comm.Get_size()
        self.bits_per_exchange = payload_bits(compressor)
        self.bits_sent = 0

    def average(self, payload: np.ndarray) -> np.ndarray:
        """The weighted mean of the decoded payloads of all ranks (model dtype, shape (d,))."""
        c = self.compressor
        if self.comm.Get_size() == 1:
            return c.decode(payload).astype(self.dtype, copy=False)
        self.bits_sent += self.bits_per_exchange
        if c.summable:
            summed = self.exchange.allreduce(weighted_values(c, payload, self.weight))
            return decode_sum(c, payload, summed, self.dtype)
        return average_payloads(c, self.exchange.allgather(payload, self.counts), self.weights, self.dtype)
