"""One compressed average: each worker encodes, payloads travel, every worker decodes the mean.

Beznosikov et al. 2020 (docs/papers.md s.2). The roles, in the GRACE split:

- :class:`CompressedSender` (one per worker): seed -> compensate -> encode -> update memory
  (the feedback rules of mpitrain.algorithms.feedback).
- :func:`average_payloads` / :func:`decode_sum`: the weighted mean sum_k w_k C(p_k) from
  the K payloads (non-summable compressors), or from the summed ``values()`` sections
  (summable ones: Rand-k with a shared seed, the identity).
- :class:`CompressedAverager`: the MPI exchange between them (Allgatherv or Allreduce,
  mpitrain.comm.payloads), with bytes and bits counted. The mean is the exchange's
  ``*_apply`` function: with K ranks in one process it is computed once for all of them.

The experiments run these same classes with K ranks in one process (mpitrain.comm.inprocess), so
an experiment equals a real run up to the summation order of an Allreduce.

Seeds: a random compressor on rank k at exchange t uses derive_seed(derive_seed(s, t), k),
s = derive_seed(run seed, SEED_TAG); a summable one (Rand-k) uses derive_seed(s, t) on
every rank, so all ranks keep the same subset and the values can be summed.
"""
from __future__ import annotations

import numpy as np

from .._native.compress_random import derive_seed  # the kernel itself (mpitrain.compress.base wraps it)
from .._native.vector import add_weighted, scaled_copy, scaled_copy_from
from ..comm.payloads import PayloadExchange
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
        self.needs_seed = bool(compressor.random)  # else encode ignores the seed: none is derived
        # descend(x, mean, lr): x <- x - direction(mean, lr), in place (one pass on the host);
        # the rule's own method, bound once (a method of this class calling it costs a call a step)
        self.descend = self.rule.descend

    def seed(self, t: int) -> int:
        """The compressor seed of exchange t (uint64)."""
        step = derive_seed(self.base, int(t))
        return step if self.shared else derive_seed(step, self.rank)

    def encode(self, v: np.ndarray, lr: float, t: int) -> np.ndarray:
        """The payload (uint8) of this worker for vector v at exchange t; updates the memory."""
        rule, compressor = self.rule, self.compressor
        p = rule.compensate(v, lr)
        payload = compressor.encode(p, self.seed(t) if self.needs_seed else None)
        if rule.needs_decoded:
            rule.update(p, compressor.decode(payload))
        return payload

    def direction(self, mean: np.ndarray, lr: float) -> np.ndarray:
        """What the model moves by (x <- x - direction) given the decoded mean."""
        return self.rule.direction(mean, lr)


def payload_bits(compressor) -> int:
    """Bits one worker contributes per exchange: the payload (non-summable) or the values."""
    if compressor.summable:
        return 8 * compressor.values(np.zeros(compressor.payload_nbytes(), np.uint8)).nbytes
    return int(compressor.payload_bits())


def average_payloads(compressor, payloads, weights, dtype, out=None, scratch=None) -> np.ndarray:
    """sum_k w_k decode(payloads[k]) in rank order, accumulated in ``dtype`` (shape (d,)).

    ``out`` and ``scratch``: (d,) arrays of ``dtype`` to reuse (allocated when None; host
    arrays need no scratch); the result goes to ``out``. Each term is w_k times decode(p_k)
    cast to ``dtype``, rounded as ``dtype(w_k) * decode(p_k).astype(dtype)``; on the host it
    is added in one pass (mpitrain._native.vector.add_weighted, the same bits).
    """
    dtype = np.dtype(dtype)
    out = np.zeros(compressor.d, dtype=dtype) if out is None else out
    out.fill(0)
    for w, payload in zip(weights, payloads):
        decoded = compressor.decode(payload)
        if type(decoded) is np.ndarray and type(out) is np.ndarray:
            add_weighted(out, decoded, w)  # one pass, the same bits as the two below
        else:
            if scratch is None:
                scratch = np.empty(compressor.d, dtype=dtype)
            np.multiply(decoded, dtype.type(w), out=scratch, dtype=dtype)
            out += scratch
        del decoded  # freed before the next decode: one decoded vector at a time
    return out


def weighted_values(compressor, payload, weight, out=None) -> np.ndarray:
    """w_k times the summable section of this worker's payload (wire dtype; into ``out``,
    a new array when None). On the host, into ``out``: one kernel call
    (mpitrain._native.vector.scaled_copy, the bits of the NumPy product)."""
    values = compressor.values(payload)
    if type(out) is np.ndarray and type(values) is np.ndarray:
        scaled_copy(out, values, weight)
        return out
    return np.multiply(values, compressor.dtype.type(weight), out=out)


def decode_sum(compressor, payload, summed, dtype, template=None, out=None) -> np.ndarray:
    """decode of ``payload`` with its values section replaced by ``summed`` (sum_k w_k values_k).

    ``template`` (uint8, the payload's size) and ``out`` ((d,), ``dtype``) are buffers to reuse;
    without them a copy of the payload and a new array are made.
    """
    if template is None:
        template = payload.copy()
    else:
        template[...] = payload
    compressor.values(template)[...] = summed
    decoded = compressor.decode(template)
    if out is None:
        return decoded.astype(dtype, copy=False)
    out[...] = decoded
    return out


class CompressedAverager:
    """sum_k w_k C(p_k) over ``comm``; counts bytes (CommStats) and bits (``bits_sent``).

    Steady memory: every d-sized array it writes is allocated once, here: the mean (model
    dtype) it returns (non-summable payloads are added into it, each in one pass), and for
    summable ones a payload template and the values section. Allocating fresh d-sized
    temporaries every step made a rank's resident memory grow by about 300 bytes a step under MPICH's ch4:ucx
    netmod (its memory-event hooks fire on every heap grow and trim; ``bench scale steady``).
    The decoders of mpitrain.compress still return a new (d,) array per call.
    """

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
        self.mean = np.zeros(compressor.d, dtype=self.dtype)  # what average() returns
        self.size = comm.Get_size()
        self.summable = bool(compressor.summable)
        distributed = self.size > 1
        self._template = np.empty(compressor.payload_nbytes(), np.uint8) if compressor.summable else None
        self._values = (np.empty_like(compressor.values(self._template))
                        if distributed and compressor.summable else None)
        self._values_offset = self._tail_offset(compressor) if self._values is not None else None
        self._payload = None  # the payload of the exchange under way (summable: _decoded's template)

    def average(self, payload: np.ndarray) -> np.ndarray:
        """The weighted mean of the decoded payloads of all ranks (model dtype, shape (d,)).

        Returns ``self.mean``, overwritten by the next call.
        """
        c = self.compressor
        if self.size == 1:
            self.mean[...] = c.decode(payload)
            return self.mean
        self.bits_sent += self.bits_per_exchange
        if self.summable:
            self._payload = payload  # the template of _decoded (its seed is every rank's)
            values = self._values
            if self._values_offset is not None and type(payload) is np.ndarray:
                scaled_copy_from(values, payload, self._values_offset, self.weight)  # weighted_values' bits
            else:
                values = weighted_values(c, payload, self.weight, out=values)
            return self.exchange.allreduce_apply(values, self._decoded, self.mean)
        return self.exchange.allgather_apply(payload, self.counts, self._weighted_mean, self.mean)

    def _tail_offset(self, compressor):
        """Where a host payload's values section starts when it is the payload's contiguous tail
        (Rand-k: after the seed; the identity: at 0), so that one kernel call reads it
        (``scaled_copy_from``) instead of a slice and a view every step; None otherwise."""
        values = compressor.values(self._template)
        if type(values) is not np.ndarray or not values.flags.c_contiguous:
            return None
        offset = values.__array_interface__["data"][0] - self._template.__array_interface__["data"][0]
        return offset if 0 <= offset and offset + values.nbytes == self._template.nbytes else None

    # the functions of the exchange (bound methods, not closures made every step)
    def _weighted_mean(self, payloads, out=None) -> np.ndarray:
        """sum_k w_k decode(payloads[k]), into ``out`` (a new array when None)."""
        return average_payloads(self.compressor, payloads, self.weights, self.dtype, out=out)

    def _decoded(self, summed, out=None) -> np.ndarray:
        """decode of this rank's last payload with its values section replaced by ``summed``."""
        return decode_sum(self.compressor, self._payload, summed, self.dtype, template=self._template, out=out)
