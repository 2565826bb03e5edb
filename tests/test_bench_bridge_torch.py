"""``bench bridge``: its MLPs have about the asked parameter counts, every contender starts from the
same weights and the bridge's loss and gradient equal plain PyTorch's (a disagreement stops the
bench), the ratios and targets are computed from paired rounds, and a ``--quick`` run on 1 and 2
ranks reports every contender at every size. No timing assertions. Skips without torch."""
import json
import math

import numpy as np
import pytest
from mpi4py import MPI

from mpi_run import run_command
from mpitrain.bench import BENCHMARKS, DESCRIPTIONS, bridge, bridge_worker

torch = pytest.importorskip("torch")


def test_registered():
    assert BENCHMARKS["bridge"] == "mpitrain.bench.bridge:main"
    assert "DDP" in DESCRIPTIONS["bridge"]


@pytest.mark.parametrize("target", [10_000, 100_000, 1_000_000, 10_000_000])
def test_mlp_has_about_the_asked_parameter_count(target):
    hidden = bridge_worker.hidden_width(target)
    d, c = bridge_worker.N_FEATURES, bridge_worker.N_CLASSES
    count = d * hidden + hidden + hidden * hidden + hidden + hidden * c + c
    assert abs(count - target) / target < 0.01
    if target <= 100_000:  # build the small ones: the formula is the module's count
        assert sum(p.numel() for p in bridge_worker.mlp(torch, hidden).parameters()) == count


def test_mlp_weights_are_the_same_every_time_and_leave_the_generator_alone():
    state = torch.random.get_rng_state()
    first, second = (bridge_worker.mlp(torch, 8) for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(first.parameters(), second.parameters()):
        assert torch.equal(p, q)


@pytest.fixture
def contenders(tmp_path):
    """The bridge's sync_sgd and plain PyTorch on one rank, as the worker builds them."""
    hidden = 8
    sync = bridge_worker.Bridge(bridge_worker.bridge_trainer(torch, MPI.COMM_SELF, hidden, "sync_sgd", {},
                                                             str(tmp_path)))
    objective = sync.objective
    batches = np.random.default_rng(0).integers(0, objective.n_samples, size=(bridge_worker.N_BATCHES, 4))
    plain = bridge_worker.Torch(torch, hidden, objective.features, objective.labels.astype(np.int64), batches)
    return {"sync_sgd": sync, "plain": plain}, batches


def test_bridge_agrees_with_plain_torch_and_both_step(contenders):
    found, batches = contenders
    agreement = bridge_worker.check_agreement(MPI.COMM_SELF, found, "plain", batches[0])
    assert agreement["weights"] == 0.0
    assert agreement["loss"] < agreement["tolerance"] and agreement["gradient"] < agreement["tolerance"]
    start = found["plain"].weights().copy()
    for contender in found.values():
        contender.run(0, 3)
        assert np.isfinite(contender.weights()).all()
        assert bridge_worker.relative_difference(contender.weights(), start) > 1e-6  # the steps moved x


def test_a_disagreement_stops_the_bench(contenders):
    found, batches = contenders
    with torch.no_grad():
        found["plain"].model[-1].bias.add_(0.01)
    with pytest.raises(bridge_worker.AgreementError, match="disagree"):
        bridge_worker.check_agreement(MPI.COMM_SELF, found, "plain", batches[0])


def test_ratios_are_paired_by_round_and_targets_follow():
    one = {"target": bridge.OVERHEAD_SIZE, "rounds_ms": {"plain": [1.0, 2.0, 4.0], "sync_sgd": [1.05, 2.1, 4.2]},
           "cpu_rounds_ms_rank0": {"plain": [1.0, 1.0, 1.0], "sync_sgd": [1.2, 1.2, 1.2]}}
    bridge.add_ratios(one, 1)
    assert one["overhead"] == pytest.approx(0.05) and one["cpu_overhead"] == pytest.approx(0.2)
    assert one["met"] is True and one["sync_over_ddp"] is None
    other = {"target": 10_000, "rounds_ms": {"plain": [1.0], "sync_sgd": [2.0]},
             "cpu_rounds_ms_rank0": {"plain": [1.0], "sync_sgd": [2.0]}}
    bridge.add_ratios(other, 1)
    assert other["met"] is None  # the overhead target is judged at 1e6 parameters only
    two = {"target": 10_000, "rounds_ms": {"plain": [1.0, 1.0], "ddp": [2.0, 4.0], "sync_sgd": [2.2, 4.4],
                                           "local_sgd": [1.0, 2.0]},
           "cpu_rounds_ms_rank0": {"plain": [1.0, 1.0], "sync_sgd": [1.0, 1.0]}}
    bridge.add_ratios(two, 2)
    assert two["sync_over_ddp"] == pytest.approx(1.1) and two["local_over_ddp"] == pytest.approx(0.5)
    assert two["met"] is False
    runs = [{"ranks": 1, "completed": True, "sizes": [one, other]}, {"ranks": 2, "completed": True, "sizes": [two]}]
    assert bridge.targets(runs) == {"overhead_1e6_one_rank": True, "sync_sgd_vs_ddp_two_ranks": False}
    assert bridge.targets([]) == {"overhead_1e6_one_rank": None, "sync_sgd_vs_ddp_two_ranks": None}


def run_bench(args, timeout=300):
    """``python -m mpitrain bench bridge ARGS`` (it launches mpiexec); (returncode, stdout, stderr)."""
    return run_command(["bench", "bridge", *args], timeout)


def test_quick_run_reports_every_contender_at_one_and_two_ranks():
    code, out, err = run_bench(["--quick", "--json", "--sizes", "1e4", "--ranks", "1,2", "--rounds", "1"])
    assert code == 0, out + err
    report = json.loads(out)
    assert set(report["targets"]) == {"overhead_1e6_one_rank", "sync_sgd_vs_ddp_two_ranks"}
    assert report["targets"]["overhead_1e6_one_rank"] is None  # no 1e6 row in this run
    assert isinstance(report["targets"]["sync_sgd_vs_ddp_two_ranks"], bool)
    assert [run["ranks"] for run in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert run["completed"] and run["torch"] == torch.__version__ and run["torch_threads"] == 1
        names = {"plain", "sync_sgd"} | ({"ddp", "local_sgd"} if run["ranks"] > 1 else set())
        (size,) = run["sizes"]
        assert size["target"] == 10_000 and abs(size["n_params"] - 10_000) < 100
        assert size["agreement"]["reference"] == ("ddp" if run["ranks"] > 1 else "plain")
        assert size["agreement"]["weights"] == 0.0
        assert size["agreement"]["loss"] < size["agreement"]["tolerance"]
        assert size["agreement"]["gradient"] < size["agreement"]["tolerance"]
        assert size["steps_per_block"] % bridge_worker.PERIOD == 0
        assert set(size["ms_per_step"]) == names == set(size["rounds_ms"]) == set(size["cpu_ms_per_step_rank0"])
        for name in names:
            assert math.isfinite(size["ms_per_step"][name]) and size["ms_per_step"][name] > 0
        assert math.isfinite(size["overhead"]) and size["overhead"] > -1
        if run["ranks"] > 1:
            assert size["sync_over_ddp"] > 0 and size["local_over_ddp"] > 0
            assert size["met"] == (size["sync_over_ddp"] <= bridge.DDP_TARGET)
        else:
            assert size["met"] is None and size["sync_over_ddp"] is None


def test_table_names_both_targets():
    code, out, err = run_bench(["--quick", "--sizes", "1e4", "--ranks", "1", "--rounds", "1"])
    assert code == 0, out + err
    assert "bridge sync_sgd" in out and "overhead" in out
    assert "at 1,000,000 parameters, one rank: not measured" in out
    assert "2 ranks: not measured" in out
