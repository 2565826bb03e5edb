"""open_dataset over files, registry names and generators; label normalisation; the
parse benchmark runs."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from mpitrain.bench import parse as parse_bench
from mpitrain.data import DataError, Dataset, normalize_labels, open_dataset


def write(tmp_path, text, name="data.svm"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("coding", [(-1, 1), (0, 1), (1, 2)])
def test_file_labels_normalised(tmp_path, coding):
    negative, positive = coding
    path = write(tmp_path, f"{positive} 1:1\n{negative} 2:1\n{negative} 1:1\n")
    data = open_dataset(str(path), dtype=np.float32)
    np.testing.assert_array_equal(data.labels, np.array([1, -1, -1], dtype=np.float32))
    assert data.labels.dtype == np.float32
    assert data.fingerprint.startswith(f"file:{path.resolve()}:size=")


def test_non_binary_labels_unchanged_and_classes_option(tmp_path):
    path = write(tmp_path, "3.5 1:1\n-2 2:1\n0.25 1:1\n")
    np.testing.assert_array_equal(open_dataset(str(path)).labels, [3.5, -2, 0.25])
    ones = write(tmp_path, "1 1:1\n1 2:1\n", "ones.svm")
    np.testing.assert_array_equal(open_dataset(str(ones), classes=(1, 2)).labels, [-1, -1])
    with pytest.raises(DataError, match="neither of classes"):
        open_dataset(str(path), classes=(0, 1))


def test_normalize_labels_codings():
    np.testing.assert_array_equal(normalize_labels(np.array([2.0, 1.0])), [1.0, -1.0])
    np.testing.assert_array_equal(normalize_labels(np.array([0.0, 1.0])), [-1.0, 1.0])
    np.testing.assert_array_equal(normalize_labels(np.array([1.0, 1.0])), [1.0, 1.0])


def test_file_parts_with_n_features(tmp_path):
    path = write(tmp_path, "".join(f"{i % 2} {i % 7 + 1}:{i}\n" for i in range(50)))
    parts = [open_dataset(str(path), part=(i, 3), n_features=9, classes=(0, 1)) for i in range(3)]
    assert all(p.n_features == 9 for p in parts)
    assert sum(p.n_samples for p in parts) == 50


def test_w8a_by_name():
    directory = os.environ.get("MPITRAIN_DATA")
    if not directory or not (Path(directory) / "w8a").is_file():
        pytest.skip("w8a not found: set MPITRAIN_DATA to the directory holding it")
    data = open_dataset("w8a", dtype=np.float32)
    assert (data.n_samples, data.n_features, data.dtype) == (49749, 300, np.float32)
    assert set(np.unique(data.labels)) == {-1.0, 1.0}
    part = open_dataset("w8a", part=(1, 4))
    assert part.n_features == 300 and part.fingerprint.endswith(":part=1/4")


def test_generators_by_name():
    data = open_dataset("synthetic-least-squares", dtype=np.float32,
                        synthetic={"n_samples": 103, "n_features": 5, "condition_number": 10.0})
    assert isinstance(data, Dataset) and data.features.shape == (103, 5)
    parts = [open_dataset("synthetic-least-squares", part=(i, 4),
                          synthetic={"n_samples": 103, "n_features": 5}) for i in range(4)]
    assert [p.n_samples for p in parts] == [26, 26, 26, 25]
    np.testing.assert_array_equal(np.vstack([p.features for p in parts]),
                                  open_dataset("synthetic-least-squares",
                                               synthetic={"n_samples": 103, "n_features": 5}).features)
    small = open_dataset("synthetic-classification", synthetic={"n_samples": 50, "n_features": 8})
    assert small.is_sparse and small.n_features == 8
    with pytest.raises(ValueError, match="synthetic options"):
        open_dataset("w8a", synthetic={"seed": 1})


def test_dataset_validation():
    with pytest.raises(ValueError, match="labels has 2 entries for 3 samples"):
        Dataset(np.zeros((3, 2)), np.zeros(2), "x", "x")
    with pytest.raises(ValueError, match="dtype"):
        Dataset(np.zeros((3, 2)), np.zeros(3, dtype=np.float32), "x", "x")
    with pytest.raises(ValueError, match="C-contiguous"):
        Dataset(np.zeros((3, 2)).T, np.zeros(2), "x", "x")
    with pytest.raises(ValueError, match="x_star"):
        Dataset(np.zeros((3, 2)), np.zeros(3), "x", "x", x_star=np.zeros(3))


def test_parse_benchmark_runs(tmp_path, capsys):
    path = write(tmp_path, "1 1:1 3:2\n-1 2:0.5\n" * 50)
    assert parse_bench.main(["--path", str(path), "--repeat", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["shape"] == [100, 3] and result["mpitrain_s"] > 0
    assert parse_bench.main(["--path", str(path), "--repeat", "1"]) == 0
    assert "mpitrain" in capsys.readouterr().out
