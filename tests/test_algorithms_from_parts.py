"""Algorithms are built from parts (a Worker and an option section), not from a Config: every
method builds and steps from Python in a few lines, on one process; the layers do not import
each other in a circle; each algorithm's name is written once."""
import subprocess
import sys

import numpy as np
import pytest
from mpi4py import MPI

from mpitrain.algorithms import ALGORITHMS
from mpitrain.algorithms.base import Worker
from mpitrain.comm.accounting import CommStats
from mpitrain.data.synthetic import synthetic_classification
from mpitrain.objectives import make_objective
from mpitrain.sampling import BatchSampler
from mpitrain.schedules import Constant

OPTIONS = {  # what an algorithm needs beyond its defaults
    "compressed_sgd": {"compressor": "top_k", "k": 10},
    "compressed_local_sgd": {"compressor": "top_k", "k": 10},
    "async_sgd": {"max_updates": 40},
}


def worker(steps=40):
    data = synthetic_classification(n_samples=500, n_features=30, density=0.3, seed=1)
    objective = make_objective("logistic", data.features, data.labels, 1.0 / data.n_samples)
    return Worker(comm=MPI.COMM_SELF, objective=objective, n_global=data.n_samples, weight=1.0,
                  sampler=BatchSampler(data.n_samples, 8, seed=0, rank=0), step_size=Constant(0.5),
                  stats=CommStats(), x0=np.zeros(objective.n_features), steps=steps, seed=0, batch_size=8,
                  eval_every=10)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_builds_from_parts_and_steps(name):
    cls = ALGORITHMS[name]
    assert cls.name == name
    options = cls.options(**OPTIONS.get(name, {})) if cls.options is not None else None
    w = worker()
    algorithm = cls(w, options)
    loss0 = w.objective.loss(algorithm.evaluation_point()) if algorithm.evaluates_in_loop else None
    t = 0
    while not algorithm.done(t):
        algorithm.step(t)
        t += 1
    algorithm.finish()
    x = algorithm.trajectory()[-1]["x"] if not algorithm.evaluates_in_loop else algorithm.evaluation_point()
    assert np.isfinite(x).all() and np.abs(x).sum() > 0
    if loss0 is not None:
        assert w.objective.loss(x) < loss0


def test_the_algorithms_do_not_import_the_config():
    code = "import sys, mpitrain.algorithms; sys.exit(int('mpitrain.config' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_an_option_sections_own_check_is_named_with_the_section():
    from mpitrain.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"config field 'local_sgd.weight_shift': must be > 0"):
        load_config(None, ["train.algorithm=local_sgd", "local_sgd.weight_shift=-1"])
    with pytest.raises(ConfigError, match=r"config field 'compressed_local_sgd.error_feedback': must be"):
        load_config(None, ["train.algorithm=compressed_local_sgd", "compressed_local_sgd.error_feedback='x'"])
