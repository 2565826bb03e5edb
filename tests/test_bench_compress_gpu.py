"""The GPU compression benchmark: a clear error without a GPU; its SGD step loop on the CPU."""
import subprocess
import sys

import numpy as np
import pytest

from mpitrain import backend
from mpitrain.bench.compress_gpu import steps_per_second
from mpitrain.compress import make_compressor
from mpitrain.objectives import make_objective


@pytest.mark.skipif(backend.gpu_unavailable_reason() is None, reason="a GPU is visible here")
def test_gpu_bench_without_gpu_is_a_clear_error():
    result = subprocess.run([sys.executable, "-m", "mpitrain", "bench", "compress", "--device", "gpu",
                             "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--device gpu" in result.stderr and ("CuPy" in result.stderr or "GPU" in result.stderr)


def test_step_loop_moves_towards_the_solution_on_the_cpu():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 100)).astype(np.float32)
    y = a[:, :3].sum(axis=1)
    obj = make_objective("least_squares", a, y, 0.0)
    rows = [rng.integers(0, 64, 8).astype(np.int64) for _ in range(4)]
    for comp in (None, make_compressor("top_k", 100, k=10)):
        x = np.zeros(100, np.float32)
        before = obj.loss(x)
        assert steps_per_second(obj, x, rows, 50, 0.01, lambda: None, comp) > 0
        assert obj.loss(x) < before
