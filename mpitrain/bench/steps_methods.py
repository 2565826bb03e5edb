"""What ``bench steps`` measures, shared by its command (mpitrain.bench.steps, which starts
``mpiexec`` and never starts MPI itself) and its ranks (mpitrain.bench.steps_worker): the problem's
constants and :data:`METHODS`, one row of the table each."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

BATCH = 32
STEP_SIZE = 4.0  # constant eta, the value of jobs/configs/w8a_sync_sgd.toml
WARMUP = 64
CALIBRATION = 128
UNIT = 64
STEPS = 1_000_000_000  # train.steps: never reached, so no method's last-step rule fires
COMMON = ["data.dataset=w8a", "data.dtype=float64", "objective.name=logistic", 'objective.l2="1/n"',
          f"train.batch_size={BATCH}", f"train.steps={STEPS}", "step_size.schedule=constant",
          f"step_size.value={STEP_SIZE}", "run.reference=false", "run.progress=false",
          "run.save_parameters=false"]


def _every_step(algorithm, t):  # a synchronous method: every step communicates
    return True


def _local_sgd_syncs(algorithm, t):
    return algorithm.period.syncs_after(t)


def _hierarchical_syncs(algorithm, t):  # node or global average: both communicate
    return (t + 1) % algorithm.opts.node_period == 0


@dataclass(frozen=True)
class Method:
    name: str  # the row's label
    algorithm: str  # a key of mpitrain.algorithms.ALGORITHMS
    overrides: tuple = ()  # --set assignments on top of COMMON
    syncs: Callable = _every_step  # syncs(algorithm, t): whether step t communicates
    local: bool = False  # whether it has local (non-communicating) steps
    one_step_per_call: bool = False  # step(t) per step, as the loop with MPITRAIN_BLOCKS=0 (a synchronous method)


METHODS = (
    Method("sync_sgd", "sync_sgd"),
    Method("sync_sgd, step() per step (BLOCKS=0)", "sync_sgd", one_step_per_call=True),
    Method("local_sgd H=8", "local_sgd", ("local_sgd.period=8",), _local_sgd_syncs, True),
    Method("local_sgd H=64", "local_sgd", ("local_sgd.period=64",), _local_sgd_syncs, True),
    Method("compressed_sgd top_k k=30 ef", "compressed_sgd",
           ('compressed_sgd.compressor="top_k"', "compressed_sgd.k=30", 'compressed_sgd.error_feedback="ef"')),
    Method("compressed_sgd top_k+nat.dith. k=15 s=4 ef", "compressed_sgd",  # the w8a job's compressor
           ('compressed_sgd.compressor="top_k_natural_dithering"', "compressed_sgd.k=15", "compressed_sgd.levels=4",
            'compressed_sgd.error_feedback="ef"')),
    Method("compressed_local_sgd H=8 top_k k=30", "compressed_local_sgd",
           ("compressed_local_sgd.period=8", 'compressed_local_sgd.compressor="top_k"', "compressed_local_sgd.k=30",
            'compressed_local_sgd.error_feedback="ef"'), _local_sgd_syncs, True),
    Method("hierarchical_local_sgd H1=4 H2=16", "hierarchical_local_sgd",
           ("hierarchical_local_sgd.node_period=4", "hierarchical_local_sgd.global_period=16"),
           _hierarchical_syncs, True),
)
