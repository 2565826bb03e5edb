"""Hierarchical Local SGD: average inside a node every H1 steps, over all nodes every H2 steps.

The same local steps as :mod:`mpitrain.algorithms.local_sgd` (Stich 2019, Algorithm 1), with
two synchronisation sets: after step t,

    if (t + 1) % H2 == 0:  x^k <- sum_j w_j x^j                     (all ranks; node Reduce,
                                                                      leader Allreduce, node Bcast)
    elif (t + 1) % H1 == 0: x^k <- sum_{j in node} w_j x^j / W_node  (one Allreduce in the node)

H2 must be a multiple of H1. With H1 = H2 = H it is Local SGD with period H (same iterates up
to summation order). The local steps between two averages run as one C call, as Local SGD's
(``LocalModelAlgorithm.run_steps``). Nodes come from ``MPI.COMM_TYPE_SHARED``, or are faked on one machine
with ``ranks_per_node`` consecutive ranks (it must divide the number of ranks; checked at
start on all ranks). This is the pattern of Lin et al. 2020 ("hierarchical local SGD") for
Slurm jobs whose inter-node network is the bottleneck.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass

from ..comm.hierarchy import HierarchicalAverager, NodeHierarchy
from ..fields import ConfigError, bounded, choice
from .local_sgd import OUTPUTS, LocalModelAlgorithm, check_weight_shift
from .periods import ConstantPeriod


@dataclass(frozen=True)
class HierarchicalOptions:
    node_period: int = bounded(4, min=1)  # H1: local steps between averages inside a node
    global_period: int = bounded(16, min=1)  # H2: local steps between averages over all nodes
    ranks_per_node: int = bounded(0, min=0)  # fake nodes of this many consecutive ranks; 0: real nodes
    output: str = choice("average", OUTPUTS)  # evaluated model: average of x^k, or Stich's x_hat
    weight_shift: typing.Optional[float] = None  # a in w_t = (a + t)^2; default step_size.a

    def __post_init__(self):
        if self.global_period % self.node_period != 0:
            raise ConfigError("global_period",
                              f"must be a multiple of node_period ({self.node_period}), got {self.global_period}")
        check_weight_shift(self.weight_shift)


class HierarchicalLocalSGD(LocalModelAlgorithm):
    name = "hierarchical_local_sgd"
    options = HierarchicalOptions

    def __init__(self, worker, options=None, step_size_shift: float = 1.0):
        super().__init__(worker, options, step_size_shift)
        self.hierarchy = NodeHierarchy(worker.comm, self.opts.ranks_per_node,
                                       field=f"{self.name}.ranks_per_node")
        self.averager = HierarchicalAverager(self.hierarchy, worker.weight, worker.stats)
        self.node_syncs = 0
        self.steps_done = 0
        self.global_period = ConstantPeriod(self.opts.global_period)
        self.period = ConstantPeriod(self.opts.node_period)  # every average, node or global (H1 divides H2)
        self.use_step_blocks()

    def synchronise(self, t: int) -> None:
        """After step t, a boundary of H1: over all nodes when it is one of H2, else in the node."""
        if self.global_period.syncs_after(t):
            self.averager.average_global(self.x)
            self.syncs += 1
        else:
            self.averager.average_node(self.x)
            self.node_syncs += 1

    def metrics(self) -> dict:
        return {**super().metrics(), "node_syncs": self.node_syncs, "nodes": self.hierarchy.n_nodes}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "node_syncs": self.node_syncs}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.node_syncs = int(state.get("node_syncs", 0))  # 0: a checkpoint written before it was kept

    def finish(self) -> None:
        self.hierarchy.free()
