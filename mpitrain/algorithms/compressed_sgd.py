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

Steps in blocks: with Top-k (k <= 64), Top-k then dithering or natural compression
(``top_k_natural_dithering``, ...), standard or natural dithering, natural compression, biased
rounding, ternary, scaled sign, the identity or Rand-k (scaled or not; any of them as
C / (1 + omega) under error feedback), any feedback rule, with or without clipping, a linear
objective on the host and d <= 1024 (the small problems where the per-step Python was most of a
step), ``run_steps`` takes its steps in one
C call per block without the GIL (``Objective.sgd_steps`` with the exchange of
``mpitrain._native.compressed_steps``: draw, gradient, compensate, encode, MPI_Allgather of the
payloads, or for the identity and Rand-k MPI_Allreduce of the weighted values, called from C,
decode-sum, update). The iterates, the feedback memory, the row stream and the metrics (comm
rounds, bytes and bits included) are those of ``step`` called for each step, bit for bit; the
seconds inside MPI count as communication. With K ranks in one process
(mpitrain.comm.inprocess, the experiments) the K ranks' blocks run together in one C call
(:class:`GroupedSteps`: ``mpitrain._native.sgd_steps.SGDStepsGroup``; every rank's sender half,
then the gather, the mean decoded once, every rank's descent), with the same bits as ``step``
on that communicator. Other set-ups (a composition after Rand-k, or of Top-k with ternary or
scaled sign; d > 1024; a network), other communicators and an MPI library whose MPI functions C
cannot reach through mpi4py (a warning says so) take ``step`` per step.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from time import perf_counter

import numpy as np
from mpi4py import MPI

from .._native import compressed_steps
from .._native.sgd_steps import SGDStepsGroup
from ..clip import clip_by_norm
from ..compress import Composition, Identity, NaturalCompression, RandK, ScaledSign, Ternary, TopK
from ..compress.dithering import Dithering
from .base import Algorithm, run_kernel_blocks, step_size_filler
from .compressed_exchange import CompressedAverager, CompressedSender
from .contractive_scaling import ContractiveScaling
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
        self.steps = fused_steps(self, worker)
        self.fill_step_sizes = step_size_filler(worker.step_size)

    @property
    def steps(self):
        """An SGDSteps taking whole steps in C (module doc), or None: ``step`` per step."""
        return self._steps

    @steps.setter
    def steps(self, kernel):
        self._steps = kernel
        # what run_steps steps in blocks: that kernel, or this rank's side of the in-process group's
        grouped = kernel is not None and kernel.exchange.grouped
        self.blocks = GroupedSteps(kernel, self.worker.comm) if grouped else kernel

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

    def run_steps(self, t: int, count: int) -> int:
        """Steps t .. t + count - 1 (within the step budget), up to the kernel's capacity per C call."""
        kernel = self.steps
        if kernel is None:
            return super().run_steps(t, count)
        error, average = feedback_arrays(self.sender.rule, self.opts.error_feedback)
        exchange = kernel.exchange
        if exchange.bound_error is not error or exchange.bound_average is not average:  # load_state_dict
            exchange.bind_memory(error, average)
        stats, averager, nbytes = self.worker.stats, self.averager, exchange.wire_nbytes

        # n exchanges (an Allgather of a payload, or an Allreduce of its values), as n calls of
        # CompressedAverager.average count them
        def communicated(n, seconds):
            stats.record(seconds, n * nbytes, rounds=n)
            averager.bits_sent += n * averager.bits_per_exchange
        end = min(t + count, max(t, self.worker.steps))
        return run_kernel_blocks(self.blocks, self.fill_step_sizes, stats, t, end,
                                 communicated if averager.size > 1 else None, numbered=True)

    def metrics(self) -> dict:
        return {"bits_sent": self.averager.bits_sent}

    def state_dict(self) -> dict:
        return {"x": self.x, "feedback": self.sender.rule.state_dict(), "bits_sent": self.averager.bits_sent}

    def load_state_dict(self, state: dict) -> None:
        self.x[...] = state["x"]
        self.sender.rule.load_state_dict(state["feedback"])
        self.averager.bits_sent = int(state["bits_sent"])


def feedback_arrays(rule, feedback: str) -> tuple:
    """(memory, average) of a feedback rule as the exchange updates them: EF's e_k and None, EF21's
    h_k and h, None and None for no feedback."""
    if feedback == "ef":
        return rule.error, None
    if feedback == "ef21":
        return rule.local, rule.average
    return None, None


class GroupedSteps:
    """One rank's side of blocks that every rank of an in-process communicator takes together:
    what ``run_kernel_blocks`` calls (``capacity``, ``step_sizes``, ``run``, ``sum_seconds``).
    ``run`` is collective (``comm.Combine``): the last rank to arrive runs every rank's kernel in
    one ``SGDStepsGroup.run``. Of the time ``run`` takes, this rank's own draws, gradients and
    encodes count as computation; the rest (waiting for the other ranks, their parts, the steps'
    ends) is ``sum_seconds``, counted as communication, as waiting in a collective is. So the
    ranks' compute seconds add up to the group's, not K times it."""

    def __init__(self, kernel, comm):
        self.kernel, self.comm, self.rank = kernel, comm, comm.Get_rank()
        self.capacity, self.step_sizes = kernel.capacity, kernel.step_sizes
        self.sum_seconds = 0.0
        self.group = None  # the SGDStepsGroup of every rank's kernel, made by the first call

    def run(self, count: int, first: int = 0) -> None:
        started = perf_counter()
        own = self.comm.Combine((self, count, first), run_grouped)[self.rank]
        self.sum_seconds = max(0.0, (perf_counter() - started) - own)


def run_grouped(contributions) -> tuple:
    """Every rank's block (``GroupedSteps.run``), in one C call; each rank's seconds of its own part."""
    views = [view for view, _, _ in contributions]
    _, count, first = contributions[0]
    if any((c, f) != (count, first) for _, c, f in contributions):
        raise RuntimeError(f"the ranks of an in-process group disagree on the block: "
                           f"{[(c, f) for _, c, f in contributions]} (steps, first step)")
    group = views[0].group
    if group is None or any(kernel is not view.kernel for kernel, view in zip(group.kernels, views)):
        group = SGDStepsGroup([view.kernel for view in views])
        for view in views:
            view.group = group
    group.run(count, first)
    return group.member_seconds


def quantiser_parameters(quantiser, scale) -> tuple:
    """(dithering, natural): what the C exchange takes for an unbiased quantiser (of a composition,
    whose 1 / (1 + omega) is ``scale``, or alone: 1.0), one of them None; both None for another
    quantiser (ternary, scaled sign) or a dithering of more than 255 levels (which the ditherings
    refuse anyway)."""
    if isinstance(quantiser, Dithering) and quantiser.levels <= 255:
        return (quantiser.levels, quantiser.bucket_size, quantiser.natural, quantiser.p, scale), None
    if isinstance(quantiser, NaturalCompression):  # and biased rounding; its range check in C, its refusal here
        return None, (quantiser.deterministic, *quantiser.input_range(), scale, quantiser.check_range)
    return None, None


def fused_steps(algorithm: CompressedSGD, worker, capacity: int | None = None):
    """An SGDSteps over the algorithm's x whose steps are whole compressed SGD steps (module doc),
    at most ``capacity`` a call (None: the objective's default), or None where the set-up has no
    such kernel."""
    compressor, opts = algorithm.compressor, algorithm.opts
    grouped = worker.size > 1 and not isinstance(worker.comm, MPI.Comm)  # K ranks of this process
    if grouped and not hasattr(worker.comm, "Combine"):
        return None
    contractive_scale = None
    if type(compressor) is ContractiveScaling:  # an unbiased C run as C / (1 + omega) with error feedback
        compressor, contractive_scale = compressor.inner, compressor.scale
    top_k, dithering, natural, kind, k, bits = compressor, None, None, "top_k", 0, 0
    if type(compressor) is Composition and type(compressor.biased) is TopK:  # Top-k, then a quantiser
        top_k, u = compressor.biased, compressor.unbiased_part
        dithering, natural = quantiser_parameters(u, compressor.scale)
        if dithering is None and natural is None:
            return None
    if type(compressor) in (Identity, RandK):  # summable: the exchange is an Allreduce of the values
        kind, k = ("identity", compressor.d) if type(compressor) is Identity else ("rand_k", compressor.k)
    elif type(compressor) in (ScaledSign, Ternary):  # a scale, then a code per entry
        kind, k = ("scaled_sign" if type(compressor) is ScaledSign else "ternary"), compressor.d
    elif isinstance(compressor, (Dithering, NaturalCompression)):  # a quantiser of all d entries
        dithering, natural = quantiser_parameters(compressor, 1.0)
        if dithering is None and natural is None:
            return None
        kind, k = ("dithering" if dithering is not None else "natural"), compressor.d
    elif type(top_k) is TopK and top_k.k <= compressed_steps.MAX_K:
        k, bits = top_k.k, top_k.index_bits
    else:
        return None
    if compressor.d > compressed_steps.MAX_D:
        return None
    error, average = feedback_arrays(algorithm.sender.rule, opts.error_feedback)
    if any(type(a) is not np.ndarray for a in (algorithm.x, error, average) if a is not None):
        return None
    make = getattr(worker.objective, "sgd_steps", None)
    sized = {} if capacity is None else {"capacity": capacity}
    kernel = make(algorithm.x, algorithm.grad, worker.sampler, **sized) if make is not None else None
    if kernel is None:
        return None
    averager = algorithm.averager
    try:
        exchange = compressed_steps.FeedbackExchange(
            compressor.d, k, bits, compressor.dtype, algorithm.x.dtype, error,
            averager.mean, averager.weights if worker.size > 1 else [1.0],
            worker.comm if worker.size > 1 and not grouped else None, feedback=opts.error_feedback,
            average=average, dithering=dithering, natural=natural, seed_base=algorithm.sender.base,
            rank=worker.rank, grouped=grouped, kind=kind,
            randk_scale=float(compressor.scale) if kind == "rand_k" else 1.0, contractive_scale=contractive_scale,
            range_check=compressor.check_range if kind == "rand_k" else None)
    except RuntimeError as exc:  # the same MPI library on every rank: rank 0 says it for all
        if worker.rank == 0:
            warnings.warn(f"compressed_sgd steps one Python call a step: {exc}", RuntimeWarning, stacklevel=3)
        return None
    if exchange.payload_nbytes != compressor.payload_nbytes():  # the same payload, or no kernel
        return None
    kernel.exchange_steps(exchange)
    kernel.clip_gradients(algorithm.clip)  # clip_by_norm before the exchange, as step does
    return kernel
