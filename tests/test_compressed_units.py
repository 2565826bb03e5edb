"""Compressed SGD pieces in one process: config errors, reductions to plain SGD / Local SGD,
contractive scaling for EF, checkpoints."""
import numpy as np
import pytest

from mpitrain.config import ConfigError, load_config

BASE = ["data.n_samples=600", "data.n_features=20", "train.steps=30", "train.batch_size=4",
        "step_size.value=0.5", "run.reference=false", "run.progress=false"]


@pytest.mark.parametrize("overrides, field, words", [
    (["compressed_sgd.compressor=topk"], "compressed_sgd.compressor", "top_k_natural_dithering"),
    (["compressed_sgd.compressor=top_k", "compressed_sgd.k=0"], "compressed_sgd.k", "must be >= 1"),
    (["compressed_sgd.compressor=top_k", "compressed_sgd.k=3", "compressed_sgd.ratio=0.1"], "compressed_sgd.k",
     "exactly one"),
    (["compressed_sgd.compressor=natural_dithering", "compressed_sgd.levels=0"], "compressed_sgd.levels", ">= 1"),
    (["compressed_sgd.compressor=natural_dithering", "compressed_sgd.levels=200"], "compressed_sgd.levels", "<= 126"),
    (["compressed_sgd.compressor=top_k", "compressed_sgd.k=3", "compressed_sgd.levels=2"], "compressed_sgd.levels",
     "takes no levels"),
    (["compressed_sgd.compressor=rand_k_unscaled", "compressed_sgd.k=3", "compressed_sgd.levels=2"],
     "compressed_sgd.levels", "takes no such parameter"),
    (["compressed_sgd.error_feedback=sometimes"], "compressed_sgd.error_feedback", "'ef21'"),
    (["compressed_sgd.compressor=composition", "compressed_sgd.biased=top_k", "compressed_sgd.unbiased=scaled_sign",
      "compressed_sgd.k=3"], "compressed_sgd.compressor", "U compressor"),
])
def test_bad_options_name_the_field(overrides, field, words):
    with pytest.raises(ConfigError) as info:
        load_config(None, [*BASE, "train.algorithm=compressed_sgd", *overrides])
    assert info.value.field == field, str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("algorithm", ["compressed_sgd", "compressed_local_sgd"])
def test_every_compressor_validates_with_its_defaults(algorithm):
    """k and levels have defaults (5% of d, s = 4): naming a compressor is enough."""
    from mpitrain.compress import COMPRESSORS

    load_config(None, [*BASE, f"train.algorithm={algorithm}"])
    for name in COMPRESSORS:
        load_config(None, [*BASE, f"train.algorithm={algorithm}", f"{algorithm}.compressor={name}"])


def test_ef21_is_refused_for_compressed_local_sgd():
    with pytest.raises(ConfigError, match="compressed_local_sgd.error_feedback"):
        load_config(None, [*BASE, "train.algorithm=compressed_local_sgd", "compressed_local_sgd.compressor=identity",
                           "compressed_local_sgd.error_feedback=ef21"])


@pytest.mark.parametrize("value, name", [(True, "ef"), (False, "none"), ("ef21", "ef21")])
def test_error_feedback_accepts_booleans(value, name):
    config = load_config(None, [*BASE, "compressed_sgd.compressor=identity",
                                f"compressed_sgd.error_feedback={str(value).lower() if isinstance(value, bool) else value}"])
    assert config.section("compressed_sgd").error_feedback == name


def problem(workers=2):
    from mpitrain.data import open_dataset, shard
    from mpitrain.objectives import make_objective
    from mpitrain.problem import _synthetic_options

    config = load_config(None, BASE)
    full = open_dataset(config.data.dataset, synthetic=_synthetic_options(config.data))
    parts = [shard(full, k, workers, scheme="iid", seed=0) for k in range(workers)]
    l2 = config.objective.l2_value(full.n_samples)
    return ([make_objective("logistic", p.features, p.labels, l2) for p in parts],
            [p.n_samples / full.n_samples for p in parts], np.zeros(full.n_features))


def options(section="compressed_sgd", **values):
    from mpitrain.algorithms import option_sections
    from mpitrain.config import build_section

    return build_section(option_sections()[section], values, section)


def run_threads(cls, opts, steps=30):
    """``cls`` on two workers, threads of this process (mpitrain.comm.inprocess): rank 0's
    algorithm after ``steps`` steps of b = 4 at eta = 0.5."""
    from mpitrain.algorithms.base import Worker
    from mpitrain.comm import inprocess
    from mpitrain.comm.accounting import CommStats
    from mpitrain.sampling import BatchSampler
    from mpitrain.schedules import Constant

    objectives, weights, x0 = problem()

    def body(comm):
        rank = comm.Get_rank()
        objective = objectives[rank]
        worker = Worker(comm=comm, objective=objective, n_global=sum(o.n_samples for o in objectives),
                        weight=weights[rank], sampler=BatchSampler(objective.n_samples, 4, 0, rank),
                        step_size=Constant(0.5), stats=CommStats(), x0=x0, steps=steps, seed=0, batch_size=4)
        method = cls(worker, opts)
        for t in range(steps):
            method.step(t)
        return method, method.evaluation_point()

    return inprocess.run(len(objectives), body, timeout=60)[0]


@pytest.mark.parametrize("feedback", ["none", "ef", "ef21"])
def test_identity_in_float64_is_synchronous_sgd(feedback):
    from mpitrain.algorithms.compressed_sgd import CompressedSGD
    from mpitrain.algorithms.sync_sgd import SyncSGD

    _, x_sync = run_threads(SyncSGD, None)
    compressed, x = run_threads(CompressedSGD, options(compressor="identity", error_feedback=feedback,
                                                       wire_dtype="float64"))
    np.testing.assert_allclose(x, x_sync, rtol=1e-10, atol=1e-12)
    assert compressed.averager.bits_sent == 30 * 20 * 64


def test_identity_compressed_local_sgd_is_local_sgd():
    from mpitrain.algorithms.compressed_local_sgd import CompressedLocalSGD
    from mpitrain.algorithms.local_sgd import LocalSGD, LocalSGDOptions

    local, x_local = run_threads(LocalSGD, LocalSGDOptions(period=5))
    compressed, x = run_threads(CompressedLocalSGD, options("compressed_local_sgd", compressor="identity",
                                                            wire_dtype="float64", period=5))
    assert compressed.syncs == local.syncs == 6
    np.testing.assert_allclose(x, x_local, rtol=1e-10, atol=1e-12)


def test_ef_runs_unbiased_compressors_scaled_to_be_contractive():
    from mpitrain.algorithms.compression_options import build_compressor
    from mpitrain.algorithms.contractive_scaling import ContractiveScaling
    from mpitrain.compress import RandK

    scaled = build_compressor(options(compressor="rand_k", k=5, error_feedback="ef"), 50, "compressed_sgd")
    assert isinstance(scaled, ContractiveScaling) and not scaled.unbiased and scaled.delta == 10.0
    plain = build_compressor(options(compressor="rand_k", k=5, error_feedback="none"), 50, "compressed_sgd")
    assert isinstance(plain, RandK)
    kept = build_compressor(options(compressor="rand_k", k=5, scale_unbiased=False), 50, "compressed_sgd")
    assert isinstance(kept, RandK)
    x = np.random.default_rng(0).standard_normal(50).astype(np.float32)
    unscaled = RandK(50, k=5, scaled=False)
    np.testing.assert_allclose(scaled(x, seed=7), unscaled(x, seed=7), rtol=1e-6)
    for seed in range(20):  # contractive: ||C(x) - x||^2 <= (1 - 1/delta) ||x||^2 on average; here surely <= ||x||^2
        assert np.sum((scaled(x, seed=seed) - x) ** 2) <= np.sum(x * x)


@pytest.mark.parametrize("algorithm, feedback", [("compressed_sgd", "ef"), ("compressed_sgd", "ef21"),
                                                 ("compressed_local_sgd", "ef")])
def test_checkpoint_resumes_the_same_run(algorithm, feedback):
    import copy

    from mpi4py import MPI

    from mpitrain.train import Trainer

    config = load_config(None, [*BASE, f"train.algorithm={algorithm}", f"{algorithm}.compressor=top_k_natural_dithering",
                                f"{algorithm}.k=4", f"{algorithm}.levels=2", f"{algorithm}.error_feedback={feedback}",
                                f"{algorithm}.period=3" if algorithm == "compressed_local_sgd" else "run.log_every=10"])
    first = Trainer(config, MPI.COMM_SELF)
    for t in range(10):
        first.algorithm.step(t)
    state = copy.deepcopy(first.algorithm.state_dict())
    sampler = copy.deepcopy(first.worker.sampler.state())
    for t in range(10, 20):
        first.algorithm.step(t)
    second = Trainer(config, MPI.COMM_SELF)
    second.algorithm.load_state_dict(state)
    second.worker.sampler.load(sampler)
    for t in range(10, 20):
        second.algorithm.step(t)
    np.testing.assert_array_equal(second.algorithm.evaluation_point(), first.algorithm.evaluation_point())
    np.testing.assert_array_equal(second.algorithm.x, first.algorithm.x)
    assert any(np.abs(v).max() > 0 for v in state["feedback"].values())


def test_compression_bits_experiment_writes_table_and_png(tmp_path, monkeypatch):
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (data / "w8a").exists():
        pytest.skip("w8a not available")
    monkeypatch.setenv("MPITRAIN_DATA", str(data))
    from mpitrain.experiments.compression_bits import main

    assert main(["--quick", "--steps", "100", "--check", "50", "--target", "0.3", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "bits.md").read_text()
    assert "| top_k_natural_dithering | biased (B3) | 227 |" in text
    assert "Top-k + natural dithering needs the fewest bits:" in text
    assert (tmp_path / "bits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
