"""Async SGD pieces without MPI: options, update rule, noise, stragglers, delay metrics, simulation."""
import math

import numpy as np
import pytest

from mpitrain.algorithms.async_rule import UpdateRule
from mpitrain.algorithms.async_simulation import Simulation
from mpitrain.algorithms.delays import delay_metrics, plot_delays
from mpitrain.algorithms.noise import SubWeibullNoise
from mpitrain.algorithms.stragglers import make_straggler
from mpitrain.clip import global_norm
from mpitrain.config import ConfigError, load_config
from mpitrain.objectives import make_objective


def config(*overrides):
    return load_config(None, ["train.algorithm=\"async_sgd\"", *overrides])


def test_options_defaults_and_none_clip():
    opts = config().section("async_sgd")
    assert opts.clip is None and opts.max_updates is None and opts.straggler_ranks == []
    assert config("async_sgd.clip=\"none\"").section("async_sgd").clip is None
    assert config("async_sgd.clip=0.5").section("async_sgd").clip == 0.5


@pytest.mark.parametrize("override, field, text", [
    ("async_sgd.clip=0", "async_sgd.clip", "must be > 0.0"),
    ("async_sgd.clip=-1.5", "async_sgd.clip", "must be > 0.0"),
    ("async_sgd.clip=\"big\"", "async_sgd.clip", "\"none\""),
    ("async_sgd.max_updates=0", "async_sgd.max_updates", "must be >= 1"),
    ("async_sgd.max_seconds=0", "async_sgd.max_seconds", "must be > 0.0"),
    ("async_sgd.max_delay=-1", "async_sgd.max_delay", "must be >= 0"),
    ("async_sgd.straggler_ranks=[-1]", "async_sgd.straggler_ranks", "integers >= 0"),
    ("async_sgd.slowdown_factor=0.5", "async_sgd.slowdown_factor", "must be >= 1.0"),
    ("async_sgd.slowdown=\"slow\"", "async_sgd.slowdown", "must be one of"),
    ("async_sgd.step_rule=\"other\"", "async_sgd.step_rule", "must be one of"),
])
def test_bad_options_name_the_field(override, field, text):
    with pytest.raises(ConfigError) as info:
        config(override)
    assert info.value.field == field and text in str(info.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rule_clipped_norm_never_exceeds_lambda(dtype):
    rng = np.random.default_rng(0)
    rule = UpdateRule(clip=0.3)
    out = np.empty(50, dtype)
    for scale in (1e-3, 0.1, 1.0, 1e3, 1e8):
        for _ in range(20):
            g = (scale * rng.standard_normal(50)).astype(dtype)
            inside = np.linalg.norm(g.astype(np.float64)) <= 0.3
            kept = g.copy()
            assert rule.delta(g, 2.0, 0, out)
            assert global_norm(g) <= 0.3  # the norm clip_by_norm guarantees (double accumulation)
            np.testing.assert_allclose(out, -2.0 * g, rtol=1e-6)
            if inside:
                assert np.array_equal(g, kept)
    assert rule.max_norm_sent <= 0.3 and rule.applied == 100 and 0 < rule.clipped < 100


def test_rule_drops_late_gradients_and_adapts_the_step():
    out, g = np.empty(3), np.ones(3)
    rule = UpdateRule(max_delay=4, workers=2)
    assert rule.delta(g.copy(), 1.0, 4, out) and not rule.delta(g.copy(), 1.0, 5, out)
    assert rule.counts()["dropped"] == 1 and rule.counts()["applied"] == 1
    adaptive = UpdateRule(step_rule="delay_adaptive", workers=4)
    assert adaptive.step_size(1.0, 2) == 1.0 and adaptive.step_size(1.0, 16) == 0.25
    assert adaptive.needs_delay and not UpdateRule().needs_delay
    with pytest.raises(ValueError, match="clip"):
        UpdateRule(clip=0.0)


@pytest.mark.parametrize("theta", [0.5, 1.0, 2.0])
def test_noise_tail_is_sub_weibull(theta):
    noise = SubWeibullNoise(sigma=2.0, theta=theta, seed=1, rank=0)
    lengths = np.array([np.linalg.norm(noise.draw(7)) for _ in range(20000)])
    for t in (1.0, 2.0, 4.0):
        expected = math.exp(-(t / 2.0) ** (1.0 / theta))  # P(||xi|| >= t), exact for this sampler
        assert abs(np.mean(lengths >= t) - expected) < 0.015
    direction = noise.draw(7)
    assert direction.shape == (7,)
    g = np.zeros(7, np.float32)
    SubWeibullNoise(0.0, 1.0, 0, 0).perturb(g)
    assert not g.any()


def test_stragglers():
    cfg = config("async_sgd.straggler_ranks=[1]", "async_sgd.slowdown_factor=4").section("async_sgd")
    assert make_straggler(cfg, 0, 0) is None
    assert make_straggler(cfg, 0, 1).extra(0.5) == pytest.approx(1.5)
    for kind in ("exponential", "pareto"):
        opts = config("async_sgd.straggler_ranks=[0]", f"async_sgd.slowdown=\"{kind}\"",
                      "async_sgd.slowdown_seconds=0.2", "async_sgd.slowdown_shape=3.0").section("async_sgd")
        straggler = make_straggler(opts, 3, 0)
        waits = np.array([straggler.extra(0.0) for _ in range(40000)])
        assert (waits >= 0).all() and abs(waits.mean() - 0.2) < 0.02


def test_delay_metrics_and_histogram(tmp_path):
    m = delay_metrics([0, 1, 2, 3, 9])
    assert m["tau_max"] == 9 and m["tau_mean"] == 3.0 and m["concurrency"] == 4.0
    assert delay_metrics([])["tau_max"] == 0
    plot_delays({0: [0, 1, 1], 1: [5, 200]}, tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"


def small_objectives(k=2, n=40, d=5):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, d))
    y = np.sign(a @ rng.standard_normal(d) + 0.3 * rng.standard_normal(n))
    return [make_objective("logistic", a[i::k], y[i::k], 0.01) for i in range(k)]


def test_simulation_follows_the_delay_schedule_exactly():
    # worker 0 takes 1 unit, worker 1 takes 3; ties go to the lower worker.
    # t=1,2,3: w0 (tau 0); t=3: w1 read v0 at t=0 -> tau 3; t=4: w0 read v3 -> tau 1;
    # t=5, 6: w0 tau 0; t=6: w1 read v4 at t=3 -> tau 3.
    sim = Simulation(small_objectives(), [1, 3], lambda v: 0.1, 4, seed=0)
    result = sim.run_async(np.zeros(5), 6.0, UpdateRule())
    assert result.taus == {0: [0, 0, 0, 1, 0, 0], 1: [3, 3]}
    assert result.updates == 8


def test_simulation_clips_and_converges_and_sync_waits_for_the_slowest():
    objectives = small_objectives()
    full = make_objective("logistic", np.vstack([o.features for o in objectives]),
                          np.concatenate([o.labels for o in objectives]), 0.01)
    sim = Simulation(objectives, [1, 4], lambda v: 0.5, 4, seed=2, jitter=0.1)
    x0 = np.zeros(5)
    for clip in (None, 0.2):
        rule = UpdateRule(clip)
        result = sim.run_async(x0, 300.0, rule)
        assert full.loss(result.x) < full.loss(x0) - 0.05
        if clip:
            assert rule.max_norm_sent <= clip
    sync = sim.run_sync(x0, 300.0)
    assert 300 / 4.4 <= sync.updates <= 300 / 3.6 and full.loss(sync.x) < full.loss(x0)
