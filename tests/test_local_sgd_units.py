"""Local SGD pieces in one process: periods, the running weighted average, config errors."""
import numpy as np
import pytest

from mpitrain.algorithms.iterate_average import WeightedIterateAverage
from mpitrain.algorithms.periods import (ConstantPeriod, GrowingPeriod, PostLocalPeriod, auto_period,
                                         count_syncs)
from mpitrain.config import ConfigError, load_config


def test_running_weighted_average_equals_brute_force():
    rng = np.random.default_rng(3)
    iterates = rng.standard_normal((57, 11))
    a = 7.5
    avg = WeightedIterateAverage(11, a)
    for t, x in enumerate(iterates):
        avg.add(t, x)
    w = (a + np.arange(57)) ** 2
    brute = (w[:, None] * iterates).sum(axis=0) / w.sum()
    np.testing.assert_allclose(avg.value(), brute, rtol=1e-13, atol=1e-15)
    assert WeightedIterateAverage(3, 1.0).value() is None


@pytest.mark.parametrize("period", [1, 3, 8])
def test_constant_period_syncs_every_h_steps(period):
    p = ConstantPeriod(period)
    assert [t + 1 for t in range(40) if p.syncs_after(t)] == list(range(period, 41, period))
    assert count_syncs(ConstantPeriod(40), 40) == 1


def test_post_local_period_is_synchronous_then_local():
    p = PostLocalPeriod(warmup_steps=5, period=4)
    assert [t for t in range(20) if p.syncs_after(t)] == [0, 1, 2, 3, 4, 8, 12, 16]
    assert p.current(2) == 1 and p.current(10) == 4


def test_growing_period_lengths():
    p = GrowingPeriod(2, 2.0, max_period=8)
    ends = [t + 1 for t in range(60) if p.syncs_after(t)]
    assert ends == [2, 6, 14, 22, 30, 38, 46, 54]
    assert p.current(0) == 2 and p.current(3) == 4 and p.current(50) == 8


def test_auto_period_is_sqrt_t_over_kb():
    assert auto_period(4000, 4, 4) == 15  # floor(sqrt(250))
    assert auto_period(10, 16, 4) == 1


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["train.algorithm=local_sgd", "local_sgd.period=0"], "local_sgd.period"),
        (["train.algorithm=local_sgd", "local_sgd.schedule=post_local", "local_sgd.warmup_steps=100",
          "train.steps=100"], "local_sgd.warmup_steps"),
        (["train.algorithm=local_sgd", "local_sgd.warmup_steps=10"], "local_sgd.warmup_steps"),
        (["train.algorithm=local_sgd", "local_sgd.schedule=hourly"], "local_sgd.schedule"),
        (["train.algorithm=local_sgd", "local_sgd.weight_shift=0"], "local_sgd.weight_shift"),
        (["train.algorithm=hierarchical_local_sgd", "hierarchical_local_sgd.node_period=0"],
         "hierarchical_local_sgd.node_period"),
        (["train.algorithm=hierarchical_local_sgd", "hierarchical_local_sgd.node_period=3",
          "hierarchical_local_sgd.global_period=8"], "hierarchical_local_sgd.global_period"),
        (["train.algorithm=async_local_sgd", "async_local_sgd.period=0"], "async_local_sgd.period"),
        (["train.algorithm=async_local_sgd", "async_local_sgd.max_delay=-1"], "async_local_sgd.max_delay"),
    ],
)
def test_bad_options_name_the_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert info.value.field == field, str(info.value)
    assert f"'{field}'" in str(info.value)
