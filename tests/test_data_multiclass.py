"""Multiclass data: labels coded as class indices over the parts of a set (a part that lacks
a class codes the others alike), the refusals, the multiclass registry entries, the
synthetic teacher-network generator and its memory estimate. One process, no MPI."""
import bz2
import tracemalloc

import numpy as np
import pytest

from mpitrain.data import (DATASETS, GENERATORS, MAX_CLASSES, RemoteDataset, all_distinct_labels,
                           classes_of_union, label_coding, objective_refusal, open_dataset,
                           synthetic_multiclass, to_class_indices)
from mpitrain.data import registry, synthetic
from mpitrain.data.labels import HEAD_CODINGS, HEADED_OBJECTIVES, MULTICLASS_OBJECTIVES, OBJECTIVE_CODINGS
from mpitrain.data.sizes import synthetic_bytes

MULTICLASS = ("mnist", "usps", "covtype", "letter", "pendigits", "satimage", "dna")


def coded_parts(parts, dtype=np.float64):
    """Each part's labels as class indices, the classes decided over all parts (as every rank does)."""
    arrays = [np.asarray(p, dtype=dtype) for p in parts]
    classes = classes_of_union([all_distinct_labels(a) for a in arrays])
    return classes, [to_class_indices(a, classes) for a in arrays]


# --- which coding an objective takes ---------------------------------------------------------

@pytest.mark.parametrize("objective, head, coding", [
    ("logistic", None, "binary"), ("least_squares", None, "values"), ("softmax", None, "classes"),
    ("logistic", "softmax", "binary"),  # a head is the mlp's alone
    ("mlp", "softmax", "classes"), ("mlp", "logistic", "binary"), ("mlp", "squared", "values"),
])
def test_label_coding(objective, head, coding):
    assert label_coding(objective, head) == coding
    assert (coding == "classes") == (objective in MULTICLASS_OBJECTIVES or
                                     (objective in HEADED_OBJECTIVES and head == "softmax"))


def test_label_coding_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown objective 'hinge'"):
        label_coding("hinge")
    with pytest.raises(ValueError, match="objective 'mlp' needs a head.*got 'tanh'"):
        label_coding("mlp", "tanh")


def test_label_coding_agrees_with_the_config():
    """The config's label head (the loss the labels feed) and label_coding name the same coding."""
    from mpitrain.config import ObjectiveConfig

    if not hasattr(ObjectiveConfig, "label_head"):
        pytest.skip("ObjectiveConfig has no label_head")
    for name in (*OBJECTIVE_CODINGS, *HEADED_OBJECTIVES):
        for head in HEAD_CODINGS:
            config = ObjectiveConfig(name=name, head=head)
            assert label_coding(name, head) == HEAD_CODINGS[config.label_head], (name, head)


def test_binary_refusal_of_an_mlp_with_a_logistic_head():
    message = objective_refusal("mlp", np.array([0.0, 1, 2]), head="logistic")
    assert message == ("objective 'mlp' with head 'logistic' cannot take the labels 0, 1, 2: it needs two classes "
                       "coded -1/+1, 0/1 or 1/2; head 'softmax' takes C classes, head 'squared' any real labels")
    assert objective_refusal("mlp", np.array([0.0, 1]), head="logistic") is None
    assert objective_refusal("mlp", np.array([0.0, 1, 2]), head="softmax") is None
    assert objective_refusal("softmax", np.array([0.0, 1, 2])) is None
    assert objective_refusal("logistic", np.array([0.0, 1, 2])).startswith("objective 'logistic' cannot take")


# --- classes over parts ----------------------------------------------------------------------

def test_all_distinct_labels_keeps_every_class():
    values, more = all_distinct_labels(np.arange(26.0)[::-1].repeat(3))
    assert values.tolist() == list(range(26)) and not more
    values, more = all_distinct_labels(np.arange(20.0), limit=5)
    assert values.tolist() == [0, 1, 2, 3, 4] and more


def test_a_part_missing_classes_codes_the_others_alike():
    parts = [[3.0, 7, 7], [9.0, 3], [5.0, 9, 11], [11.0]]
    classes, coded = coded_parts(parts)
    assert classes.tolist() == [3, 5, 7, 9, 11]
    assert [c.tolist() for c in coded] == [[0, 2, 2], [3, 0], [1, 3, 4], [4]]
    whole = to_class_indices(np.concatenate([np.array(p) for p in parts]), classes)
    np.testing.assert_array_equal(whole, np.concatenate(coded))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_indices_keep_the_dtype_and_a_part_may_be_empty(dtype):
    classes, coded = coded_parts([[1.0, 10, 4], [], [-2.0]], dtype)
    assert classes.tolist() == [-2, 1, 4, 10]
    assert all(c.dtype == dtype for c in coded)
    assert coded[0].tolist() == [1, 3, 2] and coded[1].shape == (0,) and coded[2].tolist() == [0]


def test_binary_sets_become_two_classes():
    """A registry binary set arrives as -1/+1; a softmax head sees classes 0 and 1."""
    classes, coded = coded_parts([[-1.0, 1, 1], [-1.0]])
    assert classes.tolist() == [-1, 1] and coded[0].tolist() == [0, 1, 1]


@pytest.mark.parametrize("parts, message", [
    ([[0.0, 1, 2], [2.5]], r"^label 2.5 is not a class: a multiclass model takes integer labels \(regression"),
    ([[0.25, 0.5]], "^label 0.25 is not a class"),
    ([[np.nan, 1.0]], "^label nan is not a class"),
    ([[4.0, 4], [4.0]], r"^one class only \(label 4\): a multiclass model needs at least two classes$"),
    ([[], []], "^no labels: a multiclass model needs at least two classes$"),
])
def test_classes_of_union_refusals(parts, message):
    with pytest.raises(ValueError, match=message) as error:
        classes_of_union([all_distinct_labels(np.array(p)) for p in parts])
    assert "\n" not in str(error.value)


def test_too_many_classes_are_refused():
    labels = np.arange(MAX_CLASSES + 1, dtype=np.float64)
    halves = [all_distinct_labels(labels[: MAX_CLASSES // 2]), all_distinct_labels(labels[MAX_CLASSES // 2:])]
    with pytest.raises(ValueError, match=rf"^more than {MAX_CLASSES} distinct labels \(0, 1, 2, 3, 4, 5, \.\.\.\)"):
        classes_of_union(halves)  # each part holds fewer than the limit, the union more
    with pytest.raises(ValueError, match="more than 3 distinct labels"):
        classes_of_union([all_distinct_labels(np.arange(4.0), limit=3)], limit=3)
    assert classes_of_union([all_distinct_labels(labels[:MAX_CLASSES])]).shape == (MAX_CLASSES,)


def test_to_class_indices_refusals():
    with pytest.raises(ValueError, match=r"^label 1.5 is not a class"):
        to_class_indices(np.array([1.0, 1.5]), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"^label 3 is not one of the 2 classes \(1, 2\)$"):
        to_class_indices(np.array([1.0, 3.0]), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"^label 0 is not one of the 2 classes"):
        to_class_indices(np.array([0.0]), [1.0, 2.0])
    with pytest.raises(ValueError, match="sorted distinct"):
        to_class_indices(np.array([1.0]), [2.0, 1.0])


# --- registry --------------------------------------------------------------------------------

def test_multiclass_registry_entries():
    for name in MULTICLASS:
        entry = DATASETS[name]
        assert entry.kind == "multiclass" and entry.sha256 is None
        assert entry.url == registry.MULTICLASS_URL + entry.file
        assert entry.url.startswith("https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/")
        assert entry.n_samples > 0 and entry.n_features > 0
        assert entry.file.endswith(".bz2") == (entry.compression == "bz2")
        classes = np.array(entry.classes)
        assert entry.n_classes == len(classes) >= 3 and np.all(np.diff(classes) == 1)
        np.testing.assert_array_equal(classes_of_union([all_distinct_labels(classes)]), classes)
    shapes = {name: (DATASETS[name].n_samples, DATASETS[name].n_features, DATASETS[name].classes[0],
                     DATASETS[name].n_classes) for name in MULTICLASS}
    assert shapes == {"mnist": (60000, 780, 0, 10), "usps": (7291, 256, 1, 10), "covtype": (581012, 54, 1, 7),
                      "letter": (15000, 16, 1, 26), "pendigits": (7494, 16, 0, 10),
                      "satimage": (4435, 36, 1, 6), "dna": (2000, 180, 1, 3)}
    binary = [entry for entry in DATASETS.values() if entry.name not in MULTICLASS]
    assert len(binary) == 6 and all(e.kind == "binary" and e.url.startswith(registry.BASE_URL) for e in binary)


def test_registry_entry_validation():
    with pytest.raises(ValueError, match="kind"):
        RemoteDataset("x", "x", 1, 1, kind="multilabel")
    with pytest.raises(ValueError, match="pair"):
        RemoteDataset("x", "x", 1, 1, classes=(0.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="sorted"):
        RemoteDataset("x", "x", 1, 1, classes=(2.0, 1.0, 3.0), kind="multiclass")


LINES = ["3 1:0.5 7:1", "1 2:-1", "2 180:0.25", "3 4:1", "1 1:1 2:1"]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("MPITRAIN_DATA", str(data))
    monkeypatch.setenv("MPITRAIN_CACHE", str(tmp_path / "cache"))
    return data


@pytest.mark.parametrize("name, file", [("dna", "dna.scale"), ("usps", "usps.bz2")])
def test_a_local_multiclass_file_reads_with_its_classes(data_dir, name, file):
    text = "\n".join(LINES) + "\n"
    if file.endswith(".bz2"):
        (data_dir / file).write_bytes(bz2.compress(text.encode()))
    else:
        (data_dir / file).write_text(text)
    data = open_dataset(name, dtype=np.float32)
    assert data.labels.tolist() == [3, 1, 2, 3, 1] and data.labels.dtype == np.float32  # as written
    assert data.n_features == DATASETS[name].n_features and data.name == name
    parts = [open_dataset(name, part=(index, 3)) for index in range(3)]
    classes, coded = coded_parts([p.labels for p in parts])
    assert classes.tolist() == [1, 2, 3]
    assert np.concatenate(coded).tolist() == [2, 0, 1, 2, 0]


def test_a_binary_registry_set_is_still_coded(data_dir):
    (data_dir / "a9a").write_text("+1 1:1\n-1 2:1\n")
    assert open_dataset("a9a").labels.tolist() == [1, -1]


def test_a_multiclass_file_path_keeps_its_labels(tmp_path):
    path = tmp_path / "three.svm"
    path.write_text("\n".join(LINES) + "\n")
    assert open_dataset(str(path)).labels.tolist() == [3, 1, 2, 3, 1]


# --- generator -------------------------------------------------------------------------------

def test_generator_is_registered_deterministic_and_shaped():
    assert GENERATORS["synthetic-multiclass"] is synthetic_multiclass
    first = synthetic_multiclass(3000, 12, 5, seed=3)
    again = synthetic_multiclass(3000, 12, 5, seed=3)
    other = synthetic_multiclass(3000, 12, 5, seed=4)
    np.testing.assert_array_equal(first.features, again.features)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert not np.array_equal(first.labels, other.labels)
    assert first.fingerprint == again.fingerprint != other.fingerprint
    assert (first.n_samples, first.n_features) == (3000, 12) and not first.is_sparse
    assert first.features.flags.c_contiguous and first.x_star is None
    assert set(np.unique(first.labels).tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}
    assert first.name == "synthetic-multiclass"


def test_generator_float32_is_the_float64_set_rounded():
    wide = synthetic_multiclass(2000, 8, 4, seed=1)
    narrow = synthetic_multiclass(2000, 8, 4, seed=1, dtype=np.float32)
    assert narrow.dtype == np.float32 and narrow.labels.dtype == np.float32
    np.testing.assert_array_equal(narrow.features, wide.features.astype(np.float32))
    np.testing.assert_array_equal(narrow.labels, wide.labels)
    assert narrow.fingerprint == wide.fingerprint


def test_generator_does_not_depend_on_its_block_size(monkeypatch):
    whole = synthetic_multiclass(1000, 6, 3, seed=2)
    monkeypatch.setattr(synthetic, "BLOCK_ROWS", 7)
    blocked = synthetic_multiclass(1000, 6, 3, seed=2)
    np.testing.assert_array_equal(whole.features, blocked.features)
    np.testing.assert_array_equal(whole.labels, blocked.labels)


@pytest.mark.parametrize("seed", range(5))
def test_every_class_holds_a_fair_share(seed):
    n_classes = 10
    data = synthetic_multiclass(20000, 50, n_classes, seed=seed)
    share = np.bincount(data.labels.astype(np.int64), minlength=n_classes) / data.n_samples
    assert share.min() >= 1 / (4 * n_classes), share


def test_labels_are_a_function_of_the_features():
    """The labels are a function of the features: nearest neighbours mostly agree."""
    data = synthetic_multiclass(4000, 5, 3, seed=0)
    x = data.features
    distances = (x * x).sum(1)[:, None] - 2 * x @ x.T + (x * x).sum(1)[None, :]
    np.fill_diagonal(distances, np.inf)
    agree = (data.labels[np.argmin(distances, axis=1)] == data.labels).mean()
    assert agree > 0.8


def test_generator_part_reads_and_options():
    options = {"n_samples": 1001, "n_features": 7, "n_classes": 4, "seed": 5}
    whole = open_dataset("synthetic-multiclass", synthetic=options)
    parts = [open_dataset("synthetic-multiclass", synthetic=options, part=(index, 3)) for index in range(3)]
    np.testing.assert_array_equal(np.concatenate([p.features for p in parts]), whole.features)
    np.testing.assert_array_equal(np.concatenate([p.labels for p in parts]), whole.labels)
    assert [p.fingerprint.endswith(f":part={i}/3") for i, p in enumerate(parts)] == [True] * 3
    classes, coded = coded_parts([p.labels for p in parts])
    assert classes.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(np.concatenate(coded), whole.labels)  # already indices


@pytest.mark.parametrize("kwargs, message", [
    ({"n_classes": 1}, "n_classes"), ({"n_classes": MAX_CLASSES + 1}, "n_classes"),
    ({"n_samples": 0}, "n_samples"), ({"hidden": 0}, "hidden"), ({"dtype": np.int32}, "dtype"),
])
def test_generator_refusals(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic_multiclass(**{"n_samples": 10, "n_features": 3, **kwargs})


# --- memory estimate -------------------------------------------------------------------------

@pytest.mark.parametrize("n_samples, n_features, n_classes", [(20000, 50, 10), (5000, 20, 100), (30000, 100, 3)])
def test_memory_estimate_bounds_the_generator(n_samples, n_features, n_classes):
    options = {"n_samples": n_samples, "n_features": n_features, "n_classes": n_classes, "seed": 0}
    tracemalloc.start()
    try:
        synthetic_multiclass(**options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = synthetic_bytes("synthetic-multiclass", options)
    assert estimate / 3 < peak <= estimate


def test_memory_estimate_grows_with_the_set():
    small = synthetic_bytes("synthetic-multiclass", {"n_samples": 10**6, "n_features": 100, "n_classes": 10})
    assert 1e9 < small < 2e9
    huge = synthetic_bytes("synthetic-multiclass", {"n_samples": 10**10, "n_features": 100, "n_classes": 10})
    assert huge > 10**13
    more_classes = synthetic_bytes("synthetic-multiclass", {"n_samples": 10**6, "n_features": 100, "n_classes": 1000})
    assert more_classes > small + 10**10
