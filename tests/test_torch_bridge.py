"""The PyTorch bridge (mpitrain.torch) in one process: the flat buffer shares memory with the module
both ways, an MLP through the bridge equals the built-in mlp on the same weights (loss, gradients,
accuracy to a relative 1e-10 in float64, dense and CSR rows), models it cannot train are refused
with a message that names the reason, and trained weights go back into a torch module. Skips where
torch is not installed (.venv has none)."""
import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from mpitrain.objectives import make_objective  # noqa: E402
from mpitrain.torch import (FlatParameters, TorchObjective, export_state_dict, head_of, load_into,  # noqa: E402
                            load_model)
from torch_models import HIDDEN, bridge_to_builtin, builtin_weights, set_builtin_weights, torch_mlp  # noqa: E402

TOLERANCE = 1e-10
N, D, C = 60, 12, 4


def data(layout="dense", n=N, d=D, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, d)) * (rng.random((n, d)) < 0.4)
    labels = rng.integers(0, C, n).astype(np.float64)
    return (sp.csr_matrix(dense) if layout == "csr" else dense), labels


def pair(layout="dense", l2=0.03):
    """(built-in mlp, bridge objective) on the same rows, the bridge's module at the built-in's initial x."""
    features, labels = data(layout)
    builtin = make_objective("mlp", features, labels, l2, hidden=(HIDDEN,), activation="relu", head="softmax",
                             n_classes=C)
    model = set_builtin_weights(torch_mlp(D, C), builtin_weights(D, C))
    return builtin, TorchObjective(features, labels, l2, model, torch.nn.CrossEntropyLoss())


def relative(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300)


# --- the flat buffer ---------------------------------------------------------------------------

def test_parameters_and_gradients_are_views_into_the_flat_vectors():
    model = torch_mlp(D, C)
    flat = FlatParameters(model)
    assert flat.n_params == sum(p.numel() for p in model.parameters()) == flat.x.shape[0]
    flat.x[0] = 42.0  # NumPy -> module
    assert model[0].weight[0, 0].item() == 42.0
    with torch.no_grad():
        model[2].bias[1] = -7.0  # module -> NumPy
    assert flat.x[-C + 1] == -7.0
    base = flat.x.__array_interface__["data"][0]
    for p in model.parameters():
        assert base <= p.data_ptr() < base + flat.x.nbytes
    grad_base = flat.grad.__array_interface__["data"][0]
    for p in model.parameters():
        assert grad_base <= p.grad.data_ptr() < grad_base + flat.grad.nbytes


def test_binding_an_algorithms_vector_shares_it_and_autograd_writes_into_out():
    _, objective = pair()
    x = objective.initial_point() + 0.1
    out = np.zeros_like(x)
    objective.batch_gradient(x, np.arange(10, dtype=np.int64), out)
    model = objective.model
    assert model[0].weight.data_ptr() == x.__array_interface__["data"][0]  # no copy: the module computes at x
    x[0] += 1.0  # an algorithm's in-place update is what the module holds
    assert model[0].weight[0, 0].item() == x[0]
    assert model[0].weight.grad.data_ptr() == out.__array_interface__["data"][0]
    assert np.abs(out).max() > 0


def test_a_parameter_the_loss_does_not_use_gets_a_zero_gradient_not_a_stale_one():
    class WithSpare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(D, C).double()
            self.spare = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))  # not in forward

        def forward(self, inputs):
            return self.linear(inputs)

    features, labels = data()
    objective = TorchObjective(features, labels, 0.0, WithSpare(), torch.nn.CrossEntropyLoss())
    x = objective.initial_point()
    out = np.full_like(x, 7.0)  # whatever an earlier step left there
    objective.batch_gradient(x, np.arange(10, dtype=np.int64), out)
    spare = next(slot for slot in objective.flat.slots if slot.name == "spare")
    used = np.ones(x.size, dtype=bool)
    used[spare.offset:spare.offset + 3] = False
    assert np.all(out[~used] == 0.0)
    assert np.all(out[used] != 7.0) and np.isfinite(out).all()
    # the .grad views hold what out holds, the same memory
    weight = next(slot for slot in objective.flat.slots if slot.name == "linear.weight")
    assert objective.model.linear.weight.grad.data_ptr() == out[weight.offset:].__array_interface__["data"][0]


def test_float32_data_gives_a_float32_module():
    features, labels = data()
    objective = TorchObjective(features.astype(np.float32), labels, 0.0, torch_mlp(D, C), torch.nn.CrossEntropyLoss())
    assert objective.dtype == np.float32 and objective.flat.x.dtype == np.float32
    assert all(p.dtype == torch.float32 for p in objective.model.parameters())
    x = objective.initial_point()
    g = objective.batch_gradient(x, np.arange(5, dtype=np.int64), np.empty_like(x))
    assert g.dtype == np.float32 and np.isfinite(g).all()


# --- the same MLP as the built-in ---------------------------------------------------------------

@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_bridge_mlp_equals_the_builtin_mlp(layout):
    builtin, bridge = pair(layout)
    rng = np.random.default_rng(1)
    x_builtin = builtin.initial_point(0) + 0.2 * rng.standard_normal(builtin.n_params)
    # the bridge's x for the same weights: its module loaded from the built-in's layout
    model = set_builtin_weights(torch_mlp(D, C), builtin.parameters(x_builtin))
    x_bridge = FlatParameters(model).x
    np.testing.assert_allclose(bridge_to_builtin(x_bridge, D, C), x_builtin, rtol=0, atol=0)
    to_builtin = lambda v: bridge_to_builtin(v, D, C)  # noqa: E731

    assert relative(bridge.loss(x_bridge), builtin.loss(x_builtin)) < TOLERANCE
    assert relative(bridge.loss_sum(x_bridge), builtin.loss_sum(x_builtin)) < TOLERANCE
    assert relative(to_builtin(bridge.gradient(x_bridge)), builtin.gradient(x_builtin)) < TOLERANCE
    assert relative(to_builtin(bridge.gradient_sum(x_bridge, np.empty_like(x_bridge))),
                    builtin.gradient_sum(x_builtin, np.empty_like(x_builtin))) < TOLERANCE
    assert bridge.correct_sum(x_bridge) == builtin.correct_sum(x_builtin)
    rows = rng.integers(0, N, 16).astype(np.int64)  # with repeats
    for weight in (1.0, 0.37):
        got = bridge.batch_gradient(x_bridge, rows, np.empty_like(x_bridge), weight=weight)
        want = builtin.batch_gradient(x_builtin, rows, np.empty_like(x_builtin), weight=weight)
        assert relative(to_builtin(got), want) < TOLERANCE
    assert relative(bridge.batch_loss(x_bridge, rows), builtin.batch_loss(x_builtin, rows)) < TOLERANCE


def test_full_data_passes_go_in_chunks_and_add_up():
    features, labels = data()
    whole = TorchObjective(features, labels, 0.01, torch_mlp(D, C), torch.nn.CrossEntropyLoss())
    model = torch_mlp(D, C)
    load_into(model, whole.flat.x)
    chunked = TorchObjective(features, labels, 0.01, model, torch.nn.CrossEntropyLoss(), chunk_rows=7)
    x = whole.initial_point()
    assert relative(chunked.loss(x), whole.loss(x)) < TOLERANCE
    assert relative(chunked.gradient(x), whole.gradient(x)) < TOLERANCE
    assert chunked.correct_sum(x) == whole.correct_sum(x)


def test_logistic_and_squared_heads():
    features, _ = data()
    rng = np.random.default_rng(3)
    signs = np.where(rng.random(N) < 0.5, -1.0, 1.0)
    net = lambda: torch.nn.Sequential(torch.nn.Linear(D, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))  # noqa: E731
    builtin = make_objective("mlp", features, signs, 0.0, hidden=(5,), activation="tanh", head="logistic")
    logistic = TorchObjective(features, (signs + 1) / 2, 0.0, net(), torch.nn.BCEWithLogitsLoss())  # 0/1 labels
    assert logistic.head == "logistic" and logistic.is_classifier
    np.testing.assert_array_equal(logistic.labels, signs)
    x = logistic.initial_point()
    sizes_x = bridge_to_builtin_1(x, 5)
    assert relative(logistic.loss(x), builtin.loss(sizes_x)) < TOLERANCE  # softplus(-y o) == BCE with (y+1)/2
    assert logistic.correct_sum(x) == builtin.correct_sum(sizes_x)
    squared = TorchObjective(features, rng.standard_normal(N), 0.0, net(), torch.nn.MSELoss())
    assert squared.head == "squared" and not squared.is_classifier
    with pytest.raises(ValueError, match="needs a classifier"):
        squared.correct_sum(squared.initial_point())


def bridge_to_builtin_1(x, hidden):
    """Layout change for a one-output Linear-act-Linear (see torch_models.bridge_to_builtin)."""
    w1 = x[:hidden * D].reshape(hidden, D)
    b1 = x[hidden * D:hidden * D + hidden]
    w2 = x[hidden * D + hidden:hidden * D + 2 * hidden].reshape(1, hidden)
    return np.concatenate([w1.T.ravel(), b1, w2.T.ravel(), x[-1:]])


# --- refusals -------------------------------------------------------------------------------------

def test_a_model_with_batch_norm_statistics_is_refused_by_name():
    features, labels = data()
    model = torch.nn.Sequential(torch.nn.Linear(D, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, C))
    with pytest.raises(ValueError, match=r"the model has buffers 1\.running_mean, 1\.running_var; mpitrain averages "
                                         r"parameters only.*GroupNorm.*track_running_stats=False"):
        TorchObjective(features, labels, 0.0, model, torch.nn.CrossEntropyLoss())
    plain = torch.nn.Sequential(torch.nn.Linear(D, 6), torch.nn.BatchNorm1d(6, track_running_stats=False),
                                torch.nn.ReLU(), torch.nn.Linear(6, C))
    TorchObjective(features, labels, 0.0, plain, torch.nn.CrossEntropyLoss())


@pytest.mark.parametrize("loss, head, message", [
    (torch.nn.CrossEntropyLoss(reduction="sum"), None, "reduction='sum'.*mean over the rows"),
    (torch.nn.CrossEntropyLoss(weight=torch.ones(C, dtype=torch.float64)), None, "class weights"),
    (lambda o, t: (o - t).pow(2).mean(), None, "cannot tell how <lambda> takes its targets: pass head="),
    (torch.nn.MSELoss(), "softmax", "head 'softmax' does not fit MSELoss.*use head 'squared'"),
])
def test_losses_it_cannot_sum_or_read_are_refused(loss, head, message):
    features, labels = data()
    with pytest.raises(ValueError, match=message):
        TorchObjective(features, labels, 0.0, torch_mlp(D, C), loss, head=head)


def test_outputs_and_labels_that_do_not_fit_the_head_are_refused():
    features, labels = data()
    with pytest.raises(ValueError, match=r"output for 2 rows has shape \(2, 4\): the squared head needs one output"):
        TorchObjective(features, labels, 0.0, torch_mlp(D, C), torch.nn.MSELoss())
    with pytest.raises(ValueError, match="label 3 is not a class index of the model's 3 outputs"):
        TorchObjective(features, labels, 0.0, torch_mlp(D, 3), torch.nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="labels must be -1/\\+1 \\(or 0/1\\) for the logistic head, got 2.0"):
        TorchObjective(features, labels, 0.0, torch_mlp(D, 1), torch.nn.BCEWithLogitsLoss())


def test_head_of_reads_the_loss_type_and_a_given_head():
    assert head_of(torch.nn.CrossEntropyLoss()) == "softmax"
    assert head_of(torch.nn.functional.binary_cross_entropy_with_logits) == "logistic"
    assert head_of(torch.nn.HuberLoss()) == "squared"
    assert head_of(lambda o, t: o.sum(), head="squared") == "squared"
    with pytest.raises(ValueError, match="head must be one of"):
        head_of(lambda o, t: o.sum(), head="hinge")


# --- initial point, model functions, weights back into torch -------------------------------------

def test_a_model_function_is_built_under_the_seed_without_touching_torchs_generator():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    model, loss = load_model("torch_models:torch_mlp_default", seed=5, n_features=D, n_classes=C)
    assert torch.equal(torch.get_rng_state(), before)
    again, _ = load_model("torch_models:torch_mlp_default", seed=5, n_features=D, n_classes=C)
    other, _ = load_model("torch_models:torch_mlp_default", seed=6, n_features=D, n_classes=C)
    assert torch.equal(model[0].weight, again[0].weight) and not torch.equal(model[0].weight, other[0].weight)
    with pytest.raises(ValueError, match="objective.model = 'torch_models:nothing': 'torch_models' has no 'nothing'"):
        load_model("torch_models:nothing")
    with pytest.raises(ValueError, match="objective.model must be \"package.module:function\""):
        load_model("torch_models.mlp")
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        load_model("no_such_module:f")


def test_make_objective_torch_builds_from_a_spec_and_initial_point_follows_the_seed():
    features, labels = data()
    objective = make_objective("torch", features, labels, 0.01, model="torch_models:torch_mlp_default",
                               head="softmax", n_classes=C, init_seed=5)
    assert isinstance(objective, TorchObjective) and objective.n_classes == C
    model, _ = load_model("torch_models:torch_mlp_default", seed=5, n_features=D, n_classes=C)
    np.testing.assert_array_equal(objective.initial_point(5), FlatParameters(model).x)
    assert not np.array_equal(objective.initial_point(6), objective.initial_point(5))
    np.testing.assert_array_equal(objective.initial_point(5), objective.initial_point(5))
    with pytest.raises(ValueError, match="does not take the option.*hidden"):
        make_objective("torch", features, labels, 0.01, model="torch_models:mlp", hidden=(3,))


def test_trained_weights_go_back_into_a_module_and_a_state_dict():
    _, objective = pair()
    x = objective.initial_point() + 0.5
    fresh = torch_mlp(D, C)
    load_into(fresh, x)
    np.testing.assert_array_equal(fresh[0].weight.detach().numpy().ravel(), x[:HIDDEN * D])
    state = objective.export_state_dict(x)
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    other = torch_mlp(D, C)
    other.load_state_dict(state)
    assert torch.equal(other[2].bias, fresh[2].bias)
    x[0] = 99.0  # copies, not views
    assert state["0.weight"][0, 0].item() != 99.0
    np.testing.assert_array_equal(export_state_dict(fresh, FlatParameters(fresh).x)["2.bias"].numpy(), x[-C:])
    model = objective.load(x)
    assert model is objective.model and model[0].weight[0, 0].item() == 99.0
    assert model[0].weight.grad is None
    with pytest.raises(ValueError, match=r"x must have shape \(\d+,\)"):
        load_into(fresh, x[:-1])


def test_frozen_parameters_are_not_in_x():
    model = torch_mlp(D, C)
    model[0].weight.requires_grad_(False)
    features, labels = data()
    objective = TorchObjective(features, labels, 0.0, model, torch.nn.CrossEntropyLoss())
    assert objective.n_params == HIDDEN + C * HIDDEN + C
    x = objective.initial_point()
    g = objective.gradient(x)
    assert np.isfinite(g).all() and model[0].weight.grad is None


def test_astype_gives_a_float32_copy_with_the_same_start():
    _, objective = pair()
    single = objective.astype(np.float32)
    assert single.dtype == np.float32 and single.model is not objective.model
    np.testing.assert_allclose(single.initial_point(), objective.initial_point(), rtol=1e-6)
    assert abs(single.loss(single.initial_point()) - objective.loss(objective.initial_point())) < 1e-5


def test_dropout_is_on_in_mini_batches_and_off_in_full_passes():
    features, labels = data()
    model = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(16, C))
    objective = TorchObjective(features, labels, 0.0, model, torch.nn.CrossEntropyLoss())
    x = objective.initial_point()
    rows = np.arange(N, dtype=np.int64)
    first = objective.batch_gradient(x, rows, np.empty_like(x)).copy()
    assert model.training and not np.array_equal(first, objective.batch_gradient(x, rows, np.empty_like(x)))
    assert objective.loss(x) == objective.loss(x) and not model.training
    assert relative(objective.gradient(x), objective.gradient(x)) == 0
