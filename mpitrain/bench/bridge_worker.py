"""One K-rank job of ``bench bridge``, started under mpiexec by mpitrain.bench.bridge (not a user command).

    mpiexec -n K python -m mpitrain.bench.bridge_worker --out result.json --sizes 1e4,1e6
        --block-seconds 0.6 --rounds 5 --output-dir DIR

For each size, every rank builds the same MLP (:func:`mlp`, weights drawn under torch seed
``INIT_SEED``) several times over, one copy per contender (:data:`CONTENDERS`), all on the same
rows (this rank's shard of one synthetic data set, float32):

- ``plain``: plain PyTorch, no communication: ``zero_grad``, forward, ``cross_entropy`` (mean),
  ``backward``, ``torch.optim.SGD(lr=eta, fused=True).step()``;
- ``ddp`` (K > 1): the same, the module wrapped in ``torch.nn.parallel.DistributedDataParallel``
  over a gloo process group of the job's K ranks (RANK, WORLD_SIZE from MPI; MASTER_ADDR
  127.0.0.1, MASTER_PORT a free port rank 0 picked): backward averages the gradients in
  buckets, overlapped with the backward pass (DDP's defaults);
- ``sync_sgd`` and ``local_sgd`` (K > 1, H = 8) through the bridge: ``algorithm.run_steps`` of a
  :class:`mpitrain.train.Trainer` built on a ``TorchObjective`` of the module, as
  ``mpitrain.torch.train`` builds it (its sampler draws the rows; sync_sgd steps in blocks,
  mpitrain.torch.steps: on one rank the gradient is copied into the flat buffer and x stepped in
  one pass, on K > 1 ``batch_gradient``, an in-place MPI Allreduce of the gradient, the update).

The plain and DDP steps gather their batch from the shard's tensor (``index_select``) with
indices drawn before the timed loop; the bridge's gathers the rows its sampler draws.

Agreement first (collective): every contender's weights equal the plain model's, and on batch 0
of each rank the bridge's loss and gradient (averaged over ranks by an Allreduce of the weighted
gradients, as sync_sgd averages) equal plain PyTorch's (K = 1) or DDP's (averaged by its
backward) to a relative ``TOLERANCE`` (the gradient in the max norm, the worst rank); a
mismatch ends the job with an error. Then timing: ``PERIOD`` steps of each as a warm-up,
``PERIOD`` more timed (the slowest rank's time) to fit the block, a multiple of ``PERIOD`` steps
long (so Local SGD's blocks hold whole periods) and about ``block_seconds`` for the slowest
contender; then ``rounds`` rounds in which every contender runs one block in turn, the order
reversed every other round (so machine noise hits all alike), a Barrier before each block, the
slowest rank's time kept. Rank 0 writes one JSON object to ``--out``: per size, per contender,
the milliseconds per step of every round and their median.
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import socket
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

from ..argparsing import ArgumentParser, size_list

from .bridge_setup import (BATCH, DATA_SEED, INIT_SEED, N_BATCHES, N_CLASSES, N_FEATURES,  # noqa: F401
                           N_ROWS, PERIOD, STEP_SIZE, STEPS, TOLERANCE)


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain.bench.bridge_worker")
    p.add_argument("--out", required=True, help="JSON file rank 0 writes")
    p.add_argument("--sizes", type=size_list, required=True, help="target parameter counts")
    p.add_argument("--block-seconds", type=float, required=True, help="the slowest contender's time per block")
    p.add_argument("--rounds", type=int, required=True, help="interleaved rounds; the median is kept")
    p.add_argument("--output-dir", required=True, help="run folder of the trainers (nothing is written)")
    return p.parse_args(argv)


def hidden_width(n_params: int) -> int:
    """h such that d->h->h->C (biases included) has about ``n_params`` parameters:
    h^2 + h (d + C + 2) + C = n_params."""
    a = N_FEATURES + N_CLASSES + 2
    return max(1, round((-a + math.sqrt(a * a + 4 * max(n_params - N_CLASSES, 0))) / 2))


def mlp(torch, hidden: int):
    """Linear(d, h), ReLU, Linear(h, h), ReLU, Linear(h, C), float32, weights drawn under INIT_SEED
    (torch's generator forked: the caller's is left alone)."""
    nn = torch.nn
    with torch.random.fork_rng():
        torch.manual_seed(INIT_SEED)
        return nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, N_CLASSES))


def dataset():
    """(features, labels) of the whole synthetic set, float32, the same on every rank."""
    rng = np.random.default_rng(DATA_SEED)
    features = rng.standard_normal((N_ROWS, N_FEATURES), dtype=np.float32)
    return features, rng.integers(0, N_CLASSES, N_ROWS).astype(np.float32)


def bridge_trainer(torch, comm, hidden, algorithm, overrides, output_dir):
    """A Trainer for ``algorithm`` on a TorchObjective of a fresh :func:`mlp`, as mpitrain.torch.train
    builds it (collective)."""
    from ..config import config_from_dict
    from ..torch.training import apply_overrides, as_dataset, torch_problem
    from ..train import Trainer

    model, loss_fn = mlp(torch, hidden), torch.nn.CrossEntropyLoss()
    tree = {}
    apply_overrides(tree, {"algorithm": algorithm, "steps": STEPS, "batch_size": BATCH, "lr": STEP_SIZE,
                           "step_size.schedule": "constant", "objective.l2": 0.0, "run.reference": False,
                           "run.progress": False, "run.save_parameters": False, **overrides})
    full = as_dataset(dataset(), None, "softmax")
    tree.setdefault("data", {}).update(dataset=full.name, dtype=full.dtype.name)
    tree.setdefault("objective", {}).update(name="torch", head="softmax",
                                            model=f"python:{type(model).__module__}.{type(model).__qualname__}")
    config = config_from_dict(tree)
    problem = torch_problem(config, comm, model, loss_fn, full, 1)
    return Trainer(config, comm, out_dir=os.path.join(output_dir, algorithm), problem=problem)


class Bridge:
    """A bridge method: ``run(t, count)`` is the Trainer's ``algorithm.run_steps``."""

    def __init__(self, trainer):
        self.trainer, self.algorithm = trainer, trainer.algorithm
        self.objective = trainer.worker.objective

    def run(self, t, count):
        self.algorithm.run_steps(t, count)

    def weights(self):
        return self.algorithm.x

    def loss_and_gradient(self, rows):
        """Loss on ``rows`` and the gradient averaged over ranks as sync_sgd averages it."""
        worker = self.trainer.worker
        gradient = np.empty_like(self.algorithm.x)
        self.objective.batch_gradient(self.algorithm.x, rows, gradient, weight=worker.weight)
        worker.averager().average(gradient, prescaled=True)
        return self.objective.batch_loss(self.algorithm.x, rows), gradient

    def close(self):
        self.algorithm.finish()


class Torch:
    """Plain PyTorch (``ddp=False``) or DDP over the default process group, on ``features`` rows."""

    def __init__(self, torch, hidden, features, classes, batches, ddp=False):
        self.torch = torch
        self.model = mlp(torch, hidden)
        self.module = torch.nn.parallel.DistributedDataParallel(self.model) if ddp else self.model
        self.features, self.classes = torch.from_numpy(features), torch.from_numpy(classes)
        self.batches = [torch.from_numpy(rows) for rows in batches]
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=STEP_SIZE, fused=True)
        self.cross_entropy = torch.nn.functional.cross_entropy

    def _loss(self, rows):
        return self.cross_entropy(self.module(self.features.index_select(0, rows)), self.classes[rows])

    def run(self, t, count):
        batches, optimizer, loss = self.batches, self.optimizer, self._loss
        for i in range(t, t + count):
            optimizer.zero_grad()
            loss(batches[i % N_BATCHES]).backward()
            optimizer.step()

    def weights(self):
        return self._flat(p.detach() for p in self.model.parameters())

    def loss_and_gradient(self, rows):
        self.optimizer.zero_grad()
        loss = self._loss(self.torch.from_numpy(rows))
        loss.backward()
        gradient = self._flat(p.grad for p in self.model.parameters())
        self.optimizer.zero_grad()
        return loss.item(), gradient

    def _flat(self, tensors):
        return self.torch.cat([t.reshape(-1) for t in tensors]).numpy()

    def close(self):
        pass


def relative_difference(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), np.finfo(np.float64).tiny))


class AgreementError(RuntimeError):
    pass


def check_agreement(comm, contenders, reference, rows):
    """Weights of every contender against ``reference``'s, and the bridge's loss and averaged
    gradient on ``rows`` against ``reference``'s; the worst rank's relative differences (collective)."""
    base = contenders[reference]
    weights = max(relative_difference(c.weights(), base.weights()) for c in contenders.values())
    expected_loss, expected = base.loss_and_gradient(rows)
    loss, gradient = contenders["sync_sgd"].loss_and_gradient(rows)
    found = {"reference": reference, "weights": weights, "loss": relative_difference(loss, expected_loss),
             "gradient": relative_difference(gradient, expected)}
    found = {key: value if key == "reference" else comm.allreduce(value, op=MPI.MAX) for key, value in found.items()}
    found["tolerance"] = TOLERANCE
    if not (found["weights"] == 0.0 and found["loss"] < TOLERANCE and found["gradient"] < TOLERANCE):
        raise AgreementError(f"the bridge and {reference} disagree at the start: weights {found['weights']:.3g}, "
                             f"loss {found['loss']:.3g}, gradient {found['gradient']:.3g} (relative, the worst "
                             f"rank; tolerance {TOLERANCE:g}, weights exactly equal)")
    return found


def timed(comm, contender, t, count) -> tuple:
    """(the slowest rank's seconds, this rank's CPU seconds) for steps t .. t + count - 1 of ``contender``."""
    comm.Barrier()
    cpu, started = time.process_time(), time.perf_counter()
    contender.run(t, count)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return comm.allreduce(seconds, op=MPI.MAX), cpu


def measure(comm, torch, target, args):
    """One size: build, check, warm up, fit the block, interleave; its result dict (collective)."""
    size, rank = comm.Get_size(), comm.Get_rank()
    hidden = hidden_width(target)
    contenders = {"sync_sgd": Bridge(bridge_trainer(torch, comm, hidden, "sync_sgd", {}, args.output_dir))}
    if size > 1:
        contenders["local_sgd"] = Bridge(bridge_trainer(torch, comm, hidden, "local_sgd",
                                                        {"local_sgd.period": PERIOD}, args.output_dir))
    objective = contenders["sync_sgd"].objective  # this rank's shard: plain and DDP train on the same rows
    rng = np.random.default_rng([DATA_SEED, rank])
    batches = rng.integers(0, objective.n_samples, size=(N_BATCHES, BATCH), dtype=np.int64)
    classes = objective.labels.astype(np.int64)
    contenders["plain"] = Torch(torch, hidden, objective.features, classes, batches)
    if size > 1:
        contenders["ddp"] = Torch(torch, hidden, objective.features, classes, batches, ddp=True)
    agreement = check_agreement(comm, contenders, "ddp" if size > 1 else "plain", batches[0])
    order = [name for name in ("plain", "ddp", "sync_sgd", "local_sgd") if name in contenders]
    for name in order:  # warm-up
        contenders[name].run(0, PERIOD)
    slowest = max(timed(comm, contenders[name], PERIOD, PERIOD)[0] for name in order) / PERIOD
    count = PERIOD * max(1, math.ceil(args.block_seconds / max(slowest, 1e-9) / PERIOD))
    t = dict.fromkeys(order, 2 * PERIOD)
    rounds, cpu_rounds = ({name: [] for name in order} for _ in range(2))
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            seconds, cpu = timed(comm, contenders[name], t[name], count)
            rounds[name].append(1e3 * seconds / count)
            cpu_rounds[name].append(1e3 * cpu / count)
            t[name] += count
    for contender in contenders.values():
        contender.close()
    return {"target": target, "hidden": hidden, "n_params": int(objective.n_params),
            "n_local_rows_rank0": int(objective.n_samples), "agreement": agreement, "steps_per_block": count,
            "ms_per_step": {name: statistics.median(rounds[name]) for name in order}, "rounds_ms": rounds,
            "cpu_ms_per_step_rank0": {name: statistics.median(cpu_rounds[name]) for name in order},
            "cpu_rounds_ms_rank0": cpu_rounds}


@contextlib.contextmanager
def process_group(comm, torch):
    """torch.distributed's gloo group over the job's ranks (none for one rank), destroyed after."""
    if comm.Get_size() == 1:
        yield
        return
    port = None
    if comm.Get_rank() == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    port = comm.bcast(port, root=0)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(comm.Get_rank()),
                      WORLD_SIZE=str(comm.Get_size()))
    torch.distributed.init_process_group("gloo")
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def main(argv) -> int:
    import torch
    import torch.distributed  # noqa: F401

    from ..runtime import JobError

    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    torch.set_num_threads(1)
    results = []
    try:
        with process_group(comm, torch):
            for target in args.sizes:
                results.append(measure(comm, torch, target, args))
                gc.collect()
    except (JobError, AgreementError) as exc:
        if comm.Get_rank() == 0:
            print(f"mpitrain: error: {exc}", file=sys.stderr, flush=True)
        return 1
    if comm.Get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump({"ranks": comm.Get_size(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                       "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "sizes": results}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
