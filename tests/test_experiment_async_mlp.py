"""async-stragglers-mlp: the --quick run end to end, the sub-Weibull noise's tail, the tuned steps,
tau_max against the slowdown, and the simulation's start point on a network."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mpitrain.algorithms.async_rule import UpdateRule
from mpitrain.algorithms.async_simulation import Simulation
from mpitrain.algorithms.noise import SubWeibullNoise
from mpitrain.experiments import EXPERIMENTS, async_stragglers_mlp
from mpitrain.objectives import make_objective

DATA = Path(os.environ.get("MPITRAIN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The --quick run's output folder and results.json (w8a too where it is found: about 15 s, else 3 s)."""
    out = tmp_path_factory.mktemp("async-mlp")
    argv = ["--quick", "--out", str(out)]
    if not (DATA / "w8a").is_file():
        argv += ["--problem", "synthetic"]
    mp = pytest.MonkeyPatch()
    mp.setenv("MPITRAIN_DATA", str(DATA))
    try:
        assert async_stragglers_mlp.main(argv) == 0
    finally:
        mp.undo()
    return out, json.loads((out / "results.json").read_text())


def test_quick_runs_end_to_end_and_writes_its_outputs(quick):
    out, data = quick
    assert "async-stragglers-mlp" in EXPERIMENTS
    text = (out / "async_stragglers_mlp.md").read_text()
    assert "--quick" in text and "synthetic: final loss, median / p90" in text and "Tuned steps" in text
    assert (out / "async_stragglers_mlp.png").read_bytes()[:4] == b"\x89PNG"
    for by_theta in data["results"].values():
        for res in by_theta.values():
            for cell in res["cells"].values():
                for method in async_stragglers_mlp.COLUMNS:
                    assert len(cell[method]["loss"]) == 3 and all(0 <= a <= 1 for a in cell[method]["accuracy"])


def test_tuned_steps_are_powers_of_two_from_the_grid(quick):
    _, data = quick
    grid = data["grid"]
    assert grid == [2.0 ** e for e in (-4, -3, -2)]
    for by_theta in data["results"].values():
        for res in by_theta.values():
            chosen = list(res["steps"].values()) + list(res["retuned"].values())
            assert all(gamma in grid and math.log2(gamma).is_integer() for gamma in chosen)
            for method, scores in res["tuning"].items():  # the chosen step has the least tuning score
                gamma = res["steps"].get(method) or res["retuned"][method.rsplit("x", 1)[1]]
                assert scores[str(gamma)] == min(scores.values())


def test_tau_max_grows_with_the_slowdown_and_tau_c_does_not(quick):
    _, data = quick
    for by_theta in data["results"].values():
        for res in by_theta.values():
            cells = [res["cells"][str(s)] for s in async_stragglers_mlp.SLOWDOWNS]
            tau_max = [np.median(c["tau_max"]) for c in cells]
            assert all(a < b for a, b in zip(tau_max, tau_max[1:])), tau_max
            assert all(3.0 <= np.median(c["tau_C"]) <= 4.5 for c in cells)  # about K = 4 workers


@pytest.mark.parametrize("theta", [0.5, 1.0, 2.0])
def test_noise_norm_is_sigma_times_exponential_to_the_theta(theta):
    """||xi|| / sigma has the quantiles (-log(1 - q))^theta of E^theta, E ~ Exp(1): the law with
    P(||xi|| >= t) = exp(-(t / sigma)^(1 / theta)), the paper's sub-Weibull(theta) tail (constant 1 <= 2)."""
    sigma, n = 0.7, 20000
    noise = SubWeibullNoise(sigma, theta, seed=5, rank=2)
    g = np.zeros(16)
    lengths = np.empty(n)
    for i in range(n):
        g[:] = 0
        lengths[i] = np.linalg.norm(noise.perturb(g))
    q = np.array([0.1, 0.5, 0.9, 0.99])
    exponential = (lengths / sigma) ** (1.0 / theta)  # E itself: its quantiles are -log(1 - q)
    assert np.allclose(np.quantile(exponential, q), -np.log1p(-q), rtol=0.1)
    assert np.allclose(np.quantile(lengths, q), sigma * (-np.log1p(-q)) ** theta, rtol=0.1 * max(1.0, theta) + 0.05)
    assert stats.kstest(lengths, stats.weibull_min(1.0 / theta, scale=sigma).cdf).pvalue > 1e-3
    for t in (2.0, 5.0):  # the tail bound of the definition, with the sampling error allowed
        assert np.mean(lengths >= t * sigma) <= 2 * math.exp(-t ** (1.0 / theta)) + 3 / math.sqrt(n)


def test_noise_direction_is_centred_and_perturb_matches_draw():
    a, b = SubWeibullNoise(1.0, 1.0, 3, 0), SubWeibullNoise(1.0, 1.0, 3, 0)
    g = np.ones(50, np.float32)
    assert np.allclose(a.perturb(g), 1.0 + b.draw(50).astype(np.float32))
    units = [v / np.linalg.norm(v) for v in (a.draw(50) for _ in range(4000))]
    assert np.abs(np.mean(units, axis=0)).max() < 0.02  # each coordinate's sd is 1 / sqrt(50 * 4000)


def test_simulation_starts_a_network_at_its_initial_point_and_repeats_its_noise():
    rng = np.random.default_rng(0)
    a, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60).astype(float)
    workers = [make_objective("mlp", a[k::2], y[k::2], 0.01, hidden=(4,), activation="tanh", n_classes=3)
               for k in range(2)]
    sim = Simulation(workers, [1, 3], lambda v: 0.1, 4, seed=7, noise_sigma=0.5, noise_theta=2.0)
    assert np.array_equal(sim.start_point(), workers[0].initial_point(7)) and sim.start_point().any()
    with pytest.raises(ValueError, match="n_params"):
        sim.start_point(np.zeros(5))
    first, again = sim.run_async(None, 20.0, UpdateRule()), sim.run_async(None, 20.0, UpdateRule())
    assert first.x.shape == (workers[0].n_params,) and np.array_equal(first.x, again.x)
