"""Label coding decided over the parts of a data set, refusals of labels an objective cannot
take, and the memory estimates that refuse impossible sizes (all in one process; the MPI
runs are in tests/test_reliability_data.py)."""
import numpy as np
import pytest

from mpitrain.data import coding_of_union, distinct_labels, objective_refusal, open_dataset
from mpitrain.data.labels import describe_values
from mpitrain.data.sizes import beyond_memory, format_bytes, machine_memory, sampler_bytes, synthetic_bytes


def write(tmp_path, text, name="data.svm"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_distinct_labels_keeps_the_smallest_few():
    values, more = distinct_labels(np.array([9.0, 3, 3, 7, 5, 9]))
    assert values.tolist() == [3, 5, 7, 9] and not more
    values, more = distinct_labels(np.arange(20.0)[::-1], keep=4)
    assert values.tolist() == [0, 1, 2, 3] and more


@pytest.mark.parametrize("parts, classes", [
    ([[1.0], [1.0, 2.0], [2.0]], (1.0, 2.0)),   # one class per part: the union is 1/2
    ([[1.0], [1.0], [2.0]], (1.0, 2.0)),
    ([[0.0], [1.0]], (0.0, 1.0)),
    ([[-1.0, 1.0], []], (-1.0, 1.0)),            # a part with no rows
    ([[0.0, 1.0], [1.0, 2.0]], None),            # each part fits a coding, the union does not
])
def test_coding_is_chosen_from_the_union(parts, classes):
    found, values, more = coding_of_union([distinct_labels(np.array(p)) for p in parts])
    assert found == classes and not more
    assert values.tolist() == sorted(set().union(*parts))


def test_union_with_many_values_has_no_coding_and_shows_the_smallest():
    parts = [distinct_labels(np.arange(10.0) + offset) for offset in (0.5, 0.0)]
    classes, values, more = coding_of_union(parts)
    assert classes is None and more
    assert values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert describe_values(values, more) == "0, 0.5, 1, 1.5, 2, 2.5, ..."


def test_objective_refusal_names_labels_and_objectives():
    message = objective_refusal("logistic", np.array([3.0, 5, 7, 9]))
    assert message == ("objective 'logistic' cannot take the labels 3, 5, 7, 9: it needs two classes coded "
                       "-1/+1, 0/1 or 1/2; objective 'least_squares' takes any real labels")
    assert objective_refusal("least_squares", np.array([3.0, 5, 7, 9])) is None
    assert objective_refusal("logistic", np.array([1.0, 2.0])) is None
    assert objective_refusal("logistic", np.array([1.0])) is None
    assert "1, 2, 3, ..." in objective_refusal("logistic", np.array([1.0, 2.0, 3.0]), more=True)


def test_raw_labels_of_a_file_are_as_written(tmp_path):
    path = write(tmp_path, "2 1:1\n1 2:1\n2 1:1\n")
    assert open_dataset(str(path), raw_labels=True).labels.tolist() == [2, 1, 2]
    assert open_dataset(str(path)).labels.tolist() == [1, -1, 1]
    generated = open_dataset("synthetic-classification", raw_labels=True, synthetic={"n_samples": 30, "n_features": 4})
    assert set(generated.labels.tolist()) == {-1.0, 1.0}


def test_memory_estimates_and_refusal():
    assert machine_memory() > 2**26
    assert format_bytes(512) == "512 B" and format_bytes(23.4e9) == "23.4 GB" and format_bytes(1.6e25) == "1.6e+13 TB"
    assert sampler_bytes(10**30) == 16 * 10**30
    options = dict(n_samples=20000, n_features=300, density=0.04)
    assert 10e6 < synthetic_bytes("synthetic-classification", options) < 30e6
    assert synthetic_bytes("synthetic-least-squares", options) == 40 * 20000 * 300
    assert beyond_memory(10**9, 2, available=4 * 10**9) is None
    assert beyond_memory(3 * 10**9, 2, available=4 * 10**9) == (
        "needs about 3 GB per rank, 6 GB for the 2 ranks on this machine; this machine has 4 GB")
    assert beyond_memory(5 * 10**9, 1, available=4 * 10**9) == "needs about 5 GB per rank; this machine has 4 GB"
