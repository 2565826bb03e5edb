"""Asynchronous Local SGD: average with a nonblocking Iallreduce and keep taking local steps.

Stich 2019 (arXiv 1805.09767, Section 5 remark) notes that Local SGD carries over to workers
that average with a stale average. The rule implemented here, on every rank k:

    after step s with (s + 1) % H == 0:   snapshot x_s^k; start Iallreduce of w_k x_s^k
    each later local step:                 Test the request (MPICH progresses a nonblocking
                                           collective only inside MPI calls)
    when it has arrived, after step s + tau:
        x^k <- avg(x_s) + (x^k - x_s^k)    avg(x_s) = sum_j w_j x_s^j

i.e. the average replaces the snapshot and the rank keeps its local progress since the
snapshot. The correction is computed as ``delta = x - x_s; x = avg + delta`` so that with
no local step in between (delta exactly 0) x equals the blocking average bit for bit.

Staleness: the average applied after step s + tau mixes models of step s; tau is at most
min(max_delay, H): a rank waits (``Wait``) when tau reaches ``max_delay`` and, at the latest,
at the next synchronisation step, before starting the next average. ``max_delay = 0`` waits
at once and is blocking Local SGD with period H. tau differs between ranks and runs (it
depends on timing), so runs with max_delay > 0 are not bit-reproducible.

The averaging uses a duplicate of the job's communicator, so evaluation collectives can run
while an average is in flight. Accounting: a started average is one round and its payload;
time in Iallreduce, Test and Wait is communication time.

Device arrays: the snapshot and the buffers live on the device; the Iallreduce is handed them
through mpitrain.comm.device_buffers (CUDA-aware MPI, or staging buffers of their own, the
received one copied to the device when the average has arrived).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass

from mpi4py import MPI

from .. import backend
from ..comm.device_buffers import default_buffers
from ..fields import ConfigError, bounded, choice
from .local_sgd import OUTPUTS, LocalModelAlgorithm, check_weight_shift
from .periods import ConstantPeriod


@dataclass(frozen=True)
class AsyncLocalSGDOptions:
    period: int = bounded(8, min=1)  # H: local steps between the starts of two averages
    max_delay: typing.Optional[int] = None  # most local steps before waiting for an average; default H
    output: str = choice("average", OUTPUTS)  # evaluated model: average of x^k, or Stich's x_hat
    weight_shift: typing.Optional[float] = None  # a in w_t = (a + t)^2; default step_size.a

    def __post_init__(self):
        if self.max_delay is not None and self.max_delay < 0:
            raise ConfigError("max_delay", f"must be >= 0, got {self.max_delay}")
        check_weight_shift(self.weight_shift)


class AsyncLocalSGD(LocalModelAlgorithm):
    name = "async_local_sgd"
    options = AsyncLocalSGDOptions

    def __init__(self, worker, options=None, step_size_shift: float = 1.0):
        super().__init__(worker, options, step_size_shift)
        self.comm = worker.comm.Dup()
        self.period = ConstantPeriod(self.opts.period)
        self.max_delay = self.opts.max_delay if self.opts.max_delay is not None else self.opts.period
        self.weight = self.x.dtype.type(worker.weight)
        self.snapshot = self.xp.empty_like(self.x)  # x_s
        self.send = self.xp.empty_like(self.x)  # w_k x_s
        self.recv = self.xp.empty_like(self.x)  # avg(x_s) once arrived
        self.buffers = default_buffers() if backend.is_device_array(self.x) else None
        self.staged = None  # the host buffer MPI writes the average into (device arrays, staging)
        self.request = None
        self.started_at = -1  # s of the average in flight
        self.delay_count = 0  # averages applied
        self.delay_sum = 0  # sum of their tau
        self.delay_max = 0  # largest tau

    def step(self, t: int) -> None:
        self.local_step(t)
        sync = self.period.syncs_after(t)
        if self.request is not None:
            if sync or t - self.started_at >= self.max_delay:
                self.wait(t)
            else:
                self.poll(t)
        if sync:
            self.start(t)
            if self.max_delay == 0 and self.request is not None:  # one rank starts none
                self.wait(t)

    def start(self, t: int) -> None:
        self.snapshot[...] = self.x
        self.started_at = t
        self.syncs += 1
        if self.comm.Get_size() == 1:  # the average of one model is itself
            self.delay_count += 1
            return
        self.xp.multiply(self.x, self.weight, out=self.send)
        send, recv = self.send, self.recv
        if self.buffers is not None:  # synchronised; staged unless MPI is CUDA-aware
            send = self.buffers.send(self.send, role="async_local_sgd send")
            recv = self.staged = self.buffers.open_receive(self.recv, role="async_local_sgd receive")
        with self.worker.stats.communicate(self.send.nbytes):
            self.request = self.comm.Iallreduce(send, recv, op=MPI.SUM)

    def poll(self, t: int) -> None:
        with self.worker.stats.communicate(0, rounds=0):
            done = self.request.Test()
        if done:
            self.apply(t)

    def wait(self, t: int) -> None:
        with self.worker.stats.communicate(0, rounds=0):
            self.request.Wait()
        self.apply(t)

    def landed(self) -> None:
        """The arrived average into ``recv`` (a staged one copied to the device)."""
        if self.staged is not None:
            self.buffers.close_receive(self.recv, self.staged)
            self.staged = None

    def apply(self, t: int) -> None:
        """x <- avg(x_s) + (x - x_s), the average arrived after step t."""
        self.landed()
        with self.worker.stats.compute():
            self.xp.subtract(self.x, self.snapshot, out=self.x)
            self.x += self.recv
        tau = t - self.started_at
        self.delay_count += 1
        self.delay_sum += tau
        self.delay_max = max(self.delay_max, tau)
        self.request = None

    def state_dict(self) -> dict:
        """Besides x: the delay counters, and an average still in flight. That one is waited for
        here (every rank checkpoints at the same step, and every rank started it) and kept, not
        applied: ``snapshot`` and ``recv`` go into the checkpoint, and the run (this one, or the one
        resumed from it) applies it at its next step, as a Test that finds it arrived would."""
        state = {**super().state_dict(), "started_at": self.started_at, "delay_count": self.delay_count,
                 "delay_sum": self.delay_sum, "delay_max": self.delay_max}
        if self.request is not None:
            with self.worker.stats.communicate(0, rounds=0):
                self.request.Wait()  # the request is now MPI_REQUEST_NULL: the next Test says arrived
            self.landed()
            state["pending"] = {"snapshot": self.snapshot, "recv": self.recv}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.started_at = int(state.get("started_at", -1))
        self.delay_count = int(state.get("delay_count", 0))
        self.delay_sum = int(state.get("delay_sum", 0))
        self.delay_max = int(state.get("delay_max", 0))
        pending = state.get("pending")
        if pending is not None:
            backend.assign(self.snapshot, pending["snapshot"])
            backend.assign(self.recv, pending["recv"])
            self.request = MPI.REQUEST_NULL  # arrived: applied at the next step's Test (or Wait)

    def metrics(self) -> dict:
        mean = self.delay_sum / self.delay_count if self.delay_count else 0.0
        return {**super().metrics(), "mean_delay": mean, "max_delay_seen": self.delay_max}

    def finish(self) -> None:
        if self.request is not None:
            self.wait(self.started_at)
        self.comm.Free()
