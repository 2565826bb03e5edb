"""Distributed compressed SGD (Beznosikov, Horvath, Richtarik, Safaryan 2020, arXiv 2002.12410;
docs/papers.md s.2), with error feedback (EF) or EF21 (Richtarik et al. 2021, arXiv 2106.05203).

Every step, worker k draws a mini-batch gradient g_k at the shared x (clipped to
``clip`` first when set: clip_lambda(g) = min(1, lambda / ||g||) g, mpitrain.clip), then

    none:  x <- x - gamma_t sum_k w_k C(g_k)
    ef:    v_k = C(e_k + gamma_t g_k);  e_k <- e_k + gamma_t g_k - v_k;  x <- x - sum_k w_k v_k
    ef21:  c_k = C(g_k - h_k);  h_k <- h_k + c_k;  h <- h + sum_k w_k c_k;  x <- x - gamma_t h

with w_k = n_k / N. Payloads travel by one Allgatherv and every rank decodes all K of them;
summable ones (Rand-k, whose seed is shared by all ranks, and the identity) by one
Allreduce of their values (mpitrain.algorithms.compressed_exchange). ``bytes_sent`` counts
the bytes this rank put on the wire (the payload, or the values section); the metrics add
``bits_sent``, the information-theoretic size (mpitrain.compress ``payload_bits``).

A biased compressor without error feedback can make the distributed method diverge (the
paper's counter-example: Top-1 with 3 workers); rank 0 warns when a run asks for that.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from time import perf_counter

from ..clip import clip_by_norm
from .base import Algorithm
from .compressed_exchange import CompressedAverager, CompressedSender
from .compression_options import CompressionOptions, build_compressor, check_compression_options, is_biased


@dataclass(frozen=True)
class CompressedSGDOptions(CompressionOptions):
    pass


def divergence_warning(section: str, name: str, size: int) -> str:
    return (f"mpitrain: warning: {section}: the biased compressor {name!r} without error feedback "
            f"on {size} ranks may diverge (Beznosikov et al. 2020: Top-1 with 3 workers diverges); "
            f"set {section}.error_feedback = \"ef\" (or \"ef21\")")


def warn_if_biased_without_feedback(worker, section: str, opts, compressor) -> None:
    """Rank 0 prints the divergence warning once (distributed runs only)."""
    if opts.error_feedback == "none" and is_biased(compressor) and worker.size > 1 and worker.rank == 0:
        print(divergence_warning(section, opts.compressor, worker.size), file=sys.stderr, flush=True)


class CompressedSGD(Algorithm):
    """Compressed synchronous SGD; ``state_dict`` holds x and the feedback memory."""

    name = "compressed_sgd"
    options = CompressedSGDOptions

    def __init__(self, worker, options=None):
        super().__init__(worker, options)
        self.compressor = build_compressor(self.opts, self.x.size, self.name)
        self.sender = CompressedSender(self.compressor, self.opts.error_feedback, self.x.dtype, worker.seed, worker.rank)
        self.averager = CompressedAverager(worker.comm, worker.stats, worker.weight, self.compressor, self.x.dtype)
        warn_if_biased_without_feedback(worker, self.name, self.opts, self.compressor)
        self.clip = float(self.opts.clip)  # lambda of clip_by_norm; 0: off

    @classmethod
    def validate(cls, config):
        check_compression_options(config.section(cls.name), cls.name)

    def step(self, t: int) -> None:
        # Compute time: the step's time less the communication its exchange recorded, from one
        # pair of clock reads (this runs every step: a pair around each part, or the
        # stats.compute() context manager, cost as much as a small kernel).
        stats = self.worker.stats
        started, communicated = perf_counter(), stats.comm_seconds
        g = self.fresh_gradient()
        if self.clip > 0:
            clip_by_norm(g, self.clip, out=g)
        lr = self.worker.step_size(t)
        payload = self.sender.encode(g, lr, t)
        mean = self.averager.average(payload)
        self.sender.descend(self.x, mean, lr)
        stats.compute_seconds += (perf_counter() - started) - (stats.comm_seconds - communicated)

    def metrics(self) -> dict:
        return {"bits_sent": self.averager.bits_sent}

    def state_dict(self) -> dict:
        return {"x": self.x, "feedback": self.sender.rule.state_dict(), "bits_sent": self.averager.bits_sent}

    def load_state_dict(self, state: dict) -> None:
        self.x[...] = state["x"]
        self.sender.rule.load_state_dict(state["feedback"])
        self.averager.bits_sent = int(state["bits_sent"])
