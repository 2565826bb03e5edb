"""Blocks of SGD steps through the PyTorch bridge (mpitrain.torch.steps.TorchSGDSteps): synchronous
SGD and Local SGD stepping a torch model in blocks (``run_steps``) reach the iterates of their
one-step code (``step``), bit for bit, in float32 and float64, with and without the regulariser,
with Stich's weighted output and a rank weight on the last step; the fused copy-and-update of a
strided gradient (torch copies it) equals copying it and then updating. Skips without torch."""
import numpy as np
import pytest
from mpi4py import MPI

torch = pytest.importorskip("torch")

from mpitrain._native.vector import scaled_update  # noqa: E402
from mpitrain.algorithms.base import Worker  # noqa: E402
from mpitrain.algorithms.local_sgd import LocalSGD, LocalSGDOptions  # noqa: E402
from mpitrain.algorithms.sync_sgd import SyncSGD  # noqa: E402
from mpitrain.comm.accounting import CommStats  # noqa: E402
from mpitrain.sampling import BatchSampler  # noqa: E402
from mpitrain.schedules import InverseTime  # noqa: E402
from mpitrain.torch import FlatParameters, TorchObjective  # noqa: E402
from mpitrain.torch.steps import TorchSGDSteps  # noqa: E402

N, D, C, B = 80, 9, 3, 6


def objective(dtype, l2):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((N, D)).astype(dtype)
    labels = rng.integers(0, C, N).astype(dtype)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(D, 7), torch.nn.Tanh(), torch.nn.Linear(7, C))
    return TorchObjective(features, labels, l2, model, torch.nn.CrossEntropyLoss())


def worker(dtype, l2, steps=40):
    obj = objective(dtype, l2)
    return Worker(comm=MPI.COMM_SELF, objective=obj, n_global=N, weight=1.0, sampler=BatchSampler(N, B, 3, 0),
                  step_size=InverseTime(4.0, 8.0), stats=CommStats(), x0=obj.initial_point(0), steps=steps,
                  seed=3, batch_size=B)


def one_step_at_a_time(algorithm):
    algorithm.sgd_steps = None  # the algorithms' own per-step code
    return algorithm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l2", [0.0, 0.01], ids=["no-l2", "l2"])
@pytest.mark.parametrize("method", ["sync_sgd", "local_sgd", "local_sgd-weighted"])
def test_blocks_reach_the_iterates_of_single_steps_bit_for_bit(dtype, l2, method):
    def build():
        if method == "sync_sgd":
            return SyncSGD(worker(dtype, l2))
        output = "weighted" if method.endswith("weighted") else "average"
        return LocalSGD(worker(dtype, l2), LocalSGDOptions(period=3, output=output))

    blocks, steps = build(), one_step_at_a_time(build())
    assert isinstance(blocks.sgd_steps, TorchSGDSteps)
    for algorithm in (blocks, steps):
        t = 0
        for count in (1, 7, 13, 19):  # blocks that end on and between averages
            t += algorithm.run_steps(t, count)
        assert t == 40
    assert blocks.x.tobytes() == steps.x.tobytes()
    assert blocks.grad.tobytes() == steps.grad.tobytes()  # the last gradient is in the flat buffer
    assert blocks.evaluation_point().tobytes() == steps.evaluation_point().tobytes()
    assert not np.array_equal(blocks.x, blocks.worker.objective.initial_point(0))


def test_a_sum_over_the_ranks_comes_between_the_gradient_and_the_update():
    obj = objective(np.float64, 0.01)
    sampler, twin = BatchSampler(N, B, 5, 0), BatchSampler(N, B, 5, 0)
    x, grad = obj.initial_point(0), np.zeros(obj.n_params)
    kernel = TorchSGDSteps(obj, x, grad, sampler, capacity=4)
    kernel.average_gradients(0.25, allreduce=lambda g: np.multiply(g, 3.0, out=g))  # a stand-in sum over 3 ranks
    kernel.step_sizes[:4] = [0.5, 0.4, 0.3, 0.2]
    kernel.run(4, beta=0.5)
    y, h = obj.initial_point(0), np.zeros(obj.n_params)
    for i, eta in enumerate([0.5, 0.4, 0.3, 0.2]):
        obj.batch_gradient(y, twin.draw(), h, weight=0.25)
        h *= 3.0
        scaled_update(y, h, -eta, 0.5 if i == 3 else 1.0)
    assert x.tobytes() == y.tobytes() and grad.tobytes() == h.tobytes()
    assert kernel.sum_seconds > 0.0
    with pytest.raises(ValueError, match="count must be in"):
        kernel.run(5)
    with pytest.raises(ValueError, match="weight must be in"):
        kernel.average_gradients(0.0)


def test_a_strided_gradient_is_copied_by_torch_then_updated_the_same_way():
    model = torch.nn.Sequential(torch.nn.Linear(5, 4, dtype=torch.float64), torch.nn.Linear(4, 2, dtype=torch.float64))
    flat = FlatParameters(model)
    x0 = flat.x.copy()
    rng = np.random.default_rng(2)
    gradients = [torch.from_numpy(rng.standard_normal(tuple(reversed(p.shape)))).T if p.ndim == 2
                 else torch.from_numpy(rng.standard_normal(p.shape)) for p in flat.parameters]
    assert not gradients[0].is_contiguous()
    flat.fill_grad_and_update(gradients, -0.1, 0.9)
    x, g = flat.x.copy(), flat.grad.copy()
    flat.load(x0)
    flat.fill_grad(gradients)
    scaled_update(flat.x, flat.grad, -0.1, 0.9)
    assert x.tobytes() == flat.x.tobytes() and g.tobytes() == flat.grad.tobytes()
