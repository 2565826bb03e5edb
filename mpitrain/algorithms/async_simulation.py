"""A discrete-event simulation of asynchronous (and synchronous) SGD in one process.

For experiments with many seeds on few cores. It runs the algorithm of
:mod:`mpitrain.algorithms.async_sgd` on a simulated clock: worker k reads x (and the
version v0), its gradient takes ``slowdowns[k]`` time units (times a uniform jitter
factor in [1 - jitter, 1 + jitter]), and the server applies the updates in arrival order
(ties: lower worker first) through the same :class:`UpdateRule` (same clipping, step
rule and dropping), with the same gradient kernels, the same per-rank mini-batch streams
(``BatchSampler(n, b, seed, rank)``) and the same delay definition tau = v - 1 - v0. A
worker reads the new x right after its update lands, as in ``pull`` after ``push``.
Differences from the MPI run: reads are exact snapshots (no torn reads), and the delay
an update rule sees is the exact one (the MPI run sees a lower bound).

Synchronous SGD on the same clock: every round waits for the slowest worker, then
x <- x - gamma sum_k (n_k / N) g_k (as mpitrain.algorithms.sync_sgd).

Every run starts afresh: x from ``x0`` (by default ``objectives[0].initial_point(seed)``, of
length ``n_params``: zeros for a linear model, the seeded weights of a network), and new
sampling, clock and noise streams, so two runs of one Simulation see the same mini-batches,
durations and noise draws. Optional sub-Weibull gradient noise (``noise_sigma`` > 0) is added
to each stochastic gradient before the update rule, from the stream of
``SubWeibullNoise(noise_sigma, noise_theta, seed, k)`` (as the MPI algorithm's rank k). A run
whose x stops being finite ends early (``diverged``; checked every CHECK_EVERY updates).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from ..clip import global_norm
from ..sampling import BatchSampler
from .async_rule import UpdateRule
from .noise import SubWeibullNoise

CHECK_EVERY = 256  # updates between two checks that x is still finite


@dataclass
class SimulationResult:
    x: np.ndarray                         # the final parameters
    updates: int                          # updates applied (async) or rounds (sync)
    taus: dict = field(default_factory=dict)  # worker -> list of delays of its applied updates
    counts: dict = field(default_factory=dict)  # UpdateRule counts (async)
    diverged: bool = False                # x stopped being finite; the run ended there


class Simulation:
    """K simulated workers, one objective (local shard) each.

    objectives: list of mpitrain.objectives.Objective, one per worker. slowdowns: time
    units per gradient of each worker. step_size: callable eta(version). batch_size: b.
    seed: the sampling seed (worker k's stream is seeded from (seed, k)). jitter: in [0, 1).
    noise_sigma, noise_theta: sub-Weibull gradient noise (mpitrain.algorithms.noise; sigma 0:
    none), worker k's stream seeded from (seed, k).
    """

    def __init__(self, objectives, slowdowns, step_size, batch_size, seed, jitter=0.0, noise_sigma=0.0,
                 noise_theta=0.5):
        if len(objectives) != len(slowdowns):
            raise ValueError(f"{len(objectives)} objectives but {len(slowdowns)} slowdowns")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        self.objectives = objectives
        self.slowdowns = [float(s) for s in slowdowns]
        self.step_size = step_size
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.jitter = float(jitter)
        SubWeibullNoise(noise_sigma, noise_theta, seed, 0)  # checks sigma and theta now
        self.noise_sigma, self.noise_theta = float(noise_sigma), float(noise_theta)
        n = [obj.n_samples for obj in objectives]
        self.weights = [k / sum(n) for k in n]

    def _streams(self):
        """Fresh (samplers, clock, noise) for one run; noise is None without noise."""
        samplers = [BatchSampler(obj.n_samples, self.batch_size, self.seed, k) for k, obj in enumerate(self.objectives)]
        clock = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, 0x434C4B])))
        noise = None
        if self.noise_sigma > 0:
            noise = [SubWeibullNoise(self.noise_sigma, self.noise_theta, self.seed, k) for k in range(len(samplers))]
        return samplers, clock, noise

    def start_point(self, x0=None) -> np.ndarray:
        """A copy of x0 (default ``initial_point(seed)`` of the first objective), checked to be a
        vector of ``n_params`` entries in the objectives' dtype."""
        model = self.objectives[0]
        x = model.initial_point(self.seed) if x0 is None else np.array(x0, copy=True)
        if x.shape != (model.n_params,) or x.dtype != model.dtype:
            raise ValueError(f"x0 must be a {model.dtype} vector of n_params = {model.n_params} entries, "
                             f"got {x.dtype} of shape {x.shape}")
        return x

    def _duration(self, k, clock):
        if self.jitter == 0:
            return self.slowdowns[k]
        return self.slowdowns[k] * (1.0 + self.jitter * clock.uniform(-1.0, 1.0))

    def _gradient(self, k, x, rows, out, noise):
        self.objectives[k].batch_gradient(x, rows, out)
        if noise is not None:
            noise[k].perturb(out)
        return out

    def run_async(self, x0, horizon, rule: UpdateRule) -> SimulationResult:
        """Asynchronous SGD until simulated time ``horizon``; updates arriving later are not applied.
        x0: the start (None: ``start_point()``)."""
        samplers, clock, noise = self._streams()
        x = self.start_point(x0)
        K = len(self.objectives)
        grads = [np.empty_like(x) for _ in range(K)]
        read = [0] * K
        delta = np.empty_like(x)
        taus = {k: [] for k in range(K)}
        version, events = 0, []

        def start(k, now):
            read[k] = version
            self._gradient(k, x, samplers[k].draw(), grads[k], noise)
            heapq.heappush(events, (now + self._duration(k, clock), k))

        for k in range(K):
            start(k, 0.0)
        while events:
            now, k = heapq.heappop(events)
            if now > horizon:
                break
            tau = version - read[k]
            if rule.delta(grads[k], self.step_size(read[k]), tau, delta):
                x += delta
                version += 1
                taus[k].append(tau)
                if version % CHECK_EVERY == 0 and not np.isfinite(global_norm(x)):
                    return SimulationResult(x, version, taus, rule.counts(), diverged=True)
            start(k, now)
        return SimulationResult(x, version, taus, rule.counts())

    def run_sync(self, x0, horizon) -> SimulationResult:
        """Synchronous SGD: rounds of K gradients, each as long as its slowest, until ``horizon``.
        x0: the start (None: ``start_point()``)."""
        samplers, clock, noise = self._streams()
        x = self.start_point(x0)
        g, total = np.empty_like(x), np.empty_like(x)
        now, rounds = 0.0, 0
        while True:
            now += max(self._duration(k, clock) for k in range(len(self.objectives)))
            if now > horizon:
                break
            total[:] = 0
            for k, w in enumerate(self.weights):
                total += x.dtype.type(w) * self._gradient(k, x, samplers[k].draw(), g, noise)
            x -= x.dtype.type(self.step_size(rounds)) * total
            rounds += 1
            if rounds % CHECK_EVERY == 0 and not np.isfinite(global_norm(x)):
                return SimulationResult(x, rounds, diverged=True)
        return SimulationResult(x, rounds)
