"""Compressed SGD and compressed Local SGD with K workers simulated in one process.

A single-process copy of :class:`~mpitrain.algorithms.compressed_sgd.CompressedSGD` and
:class:`~mpitrain.algorithms.compressed_local_sgd.CompressedLocalSGD` on K MPI ranks: the
same shards and sampling streams (``BatchSampler(n_k, b, seed, k)``), the same Objective
kernels, the same clipping, the same :class:`CompressedSender` per worker (compressor built
by ``build_compressor``, seeds derived from (run seed, exchange, rank), EF / EF21 memory) and
the same combining functions (``average_payloads`` in rank order; for summable compressors
``weighted_values`` summed then ``decode_sum``). Only the summation order of the Allreduce
of summable values may differ from MPI's, so iterates agree with a real run to float
rounding (tests/test_compressed_mpi.py checks it). ``bits_sent`` counts the bits one worker
sends, as the MPI algorithm does.
"""
from __future__ import annotations

import numpy as np

from ..clip import clip_by_norm
from ..sampling import BatchSampler
from .compressed_exchange import (CompressedSender, average_payloads, decode_sum, payload_bits,
                                  weighted_values)
from .compressed_local_sgd import averages_after
from .compression_options import build_compressor


class SimulatedCompressedSGD:
    """K compressed-SGD workers sharing x; ``run(steps)`` advances all of them.

    ``period`` None: compressed SGD (one exchange of gradients per step). ``period`` H:
    compressed Local SGD (local models, an exchange of model changes every H steps and, when
    ``steps`` is given, after step ``steps - 1``). ``x`` is the shared model (the anchor).
    """

    def __init__(self, objectives, weights, batch_size: int, seed: int, step_size, x0, opts,
                 section: str = "compressed_sgd", period=None, steps=None):
        self.objectives = list(objectives)
        self.K = len(self.objectives)
        self.dtype = np.dtype(x0.dtype)
        self.weights = [float(w) for w in weights]  # n_k / N
        self.samplers = [BatchSampler(o.n_samples, batch_size, seed, k) for k, o in enumerate(self.objectives)]
        self.step_size = step_size
        self.clip = opts.clip
        self.senders = [CompressedSender(build_compressor(opts, x0.size, section), opts.error_feedback,
                                         self.dtype, seed, k) for k in range(self.K)]
        self.compressor = self.senders[0].compressor
        self.period = period
        self.steps = steps
        self.x = x0.copy()  # the shared model x (compressed SGD) or anchor x_a (Local SGD)
        self.X = np.tile(x0, (self.K, 1)) if period is not None else None  # (K, d) local models
        self.G = np.empty((self.K, x0.size), dtype=self.dtype)
        self.t = 0
        self.rounds = 0
        self.bits_sent = 0  # per worker

    def gradient(self, k: int, x: np.ndarray) -> np.ndarray:
        g = self.G[k]
        self.objectives[k].batch_gradient(x, self.samplers[k].draw(), g)
        if self.clip > 0:
            clip_by_norm(g, self.clip, out=g)
        return g

    def mean(self, payloads) -> np.ndarray:
        """sum_k w_k C(p_k), combined as the MPI averager does."""
        c = self.compressor
        if self.K == 1:
            return c.decode(payloads[0]).astype(self.dtype, copy=False)
        self.bits_sent += payload_bits(c)
        if c.summable:
            summed = weighted_values(c, payloads[0], self.weights[0])
            for k in range(1, self.K):
                summed += weighted_values(c, payloads[k], self.weights[k])
            return decode_sum(c, payloads[0], summed, self.dtype)
        return average_payloads(c, payloads, self.weights, self.dtype)

    def exchange(self, vectors, lr: float, tag: int) -> np.ndarray:
        """The step every worker takes (x <- x - step): encode, combine, feedback rule."""
        payloads = [s.encode(v, lr, tag) for s, v in zip(self.senders, vectors)]
        mean = self.mean(payloads)
        steps = [s.direction(mean, lr) for s in self.senders]  # every worker updates its memory
        return steps[0]

    def step(self) -> None:
        t, lr = self.t, self.step_size(self.t)
        if self.period is None:
            self.x -= self.exchange([self.gradient(k, self.x) for k in range(self.K)], lr, t)
        else:
            for k in range(self.K):
                g = self.gradient(k, self.X[k])
                g *= self.dtype.type(lr)
                self.X[k] -= g
            if averages_after(t, self.period, self.steps if self.steps is not None else -1):
                self.synchronise()
        self.t += 1

    def synchronise(self) -> None:
        self.x += self.exchange([row - self.x for row in self.X], 1.0, self.rounds)
        self.X[:] = self.x
        self.rounds += 1

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()
