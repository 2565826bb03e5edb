"""Synchronous SGD: K ranks with batch b take the iterates of one process with batch K b over
the same samples (the union of the ranks' mini-batches), in float64 and float32."""
import numpy as np
import pytest
import scipy.sparse as sp

from mpi_run import run_mpi
from mpitrain.data import open_dataset, shard
from mpitrain.objectives import make_objective
from mpitrain.sampling import BatchSampler

N, D, B, STEPS, ETA, SEED = 2000, 50, 4, 30, 0.5, 3


def simulate_one_process(ranks, dtype):
    """One process, batch K*b: the rows rank r would draw, offset into the stacked shards."""
    full = open_dataset("synthetic-classification", dtype=dtype,
                        synthetic=dict(n_samples=N, n_features=D, density=0.04, seed=0))
    shards = [shard(full, r, ranks, scheme="iid", seed=0) for r in range(ranks)]
    features = sp.vstack([s.features for s in shards], format="csr")
    labels = np.concatenate([s.labels for s in shards])
    offsets = np.cumsum([0] + [s.n_samples for s in shards])[:-1]
    objective = make_objective("logistic", features, labels, 1.0 / N)
    samplers = [BatchSampler(s.n_samples, B, SEED, r) for r, s in enumerate(shards)]
    x = np.zeros(D, dtype=dtype)
    g = np.empty_like(x)
    for _ in range(STEPS):
        rows = np.concatenate([off + smp.draw() for off, smp in zip(offsets, samplers)])
        objective.batch_gradient(x, rows, g)
        x -= dtype(ETA) * g
    return x


@pytest.mark.parametrize("ranks", [1, 2, 4])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_k_ranks_equal_one_process_with_k_times_the_batch(tmp_path, ranks, dtype, rtol):
    args = ["-m", "mpitrain", "train"]
    for kv in (f"data.n_samples={N}", f"data.n_features={D}", f"data.dtype={np.dtype(dtype).name}",
               f"train.batch_size={B}", f"train.steps={STEPS}", f"train.seed={SEED}",
               f"step_size.value={ETA}", "run.reference=false", "run.progress=false",
               f"run.log_every={STEPS}", f"run.output_dir={tmp_path}"):
        args += ["--set", kv]
    result = run_mpi(ranks, args, timeout=90)
    assert result.returncode == 0, result.output
    x_mpi = np.load(tmp_path / "parameters.npy")
    x_one = simulate_one_process(ranks, dtype)
    assert x_mpi.dtype == dtype
    assert np.linalg.norm(x_one) > 0.1  # the run moved
    np.testing.assert_allclose(x_mpi, x_one, rtol=rtol, atol=rtol * np.abs(x_one).max())
