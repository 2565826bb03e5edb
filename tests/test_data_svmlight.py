"""The LIBSVM reader equals a plain Python parser, reports broken lines exactly, and
reads files in line-aligned parts that concatenate to the whole."""
import bz2
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain.data import DataError, read_svmlight


def reference_parse(text, dtype=np.float64):
    """Straightforward LIBSVM parser: (labels, indptr, indices, values)."""
    labels, indptr, indices, values = [], [0], [], []
    for line in text.splitlines():
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        labels.append(float(tokens[0]))
        for token in tokens[1:]:
            if token.startswith("qid:"):
                continue
            index, value = token.split(":")
            indices.append(int(index) - 1)
            values.append(float(value))
        indptr.append(len(indices))
    return (np.array(labels, dtype=dtype), np.array(indptr),
            np.array(indices, dtype=np.int64), np.array(values, dtype=np.float64).astype(dtype))


def assert_matches_reference(data, text, dtype):
    labels, indptr, indices, values = reference_parse(text, dtype)
    assert data.dtype == dtype and data.labels.dtype == dtype
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.features.indptr, indptr)
    np.testing.assert_array_equal(data.features.indices, indices)
    assert data.features.data.dtype == dtype
    # exact equality, bit for bit (including the sign of zero)
    assert data.features.data.tobytes() == values.tobytes()
    assert data.features.has_sorted_indices


def write(tmp_path, text, name="data.svm"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


HAND_WRITTEN = [
    "-1 41:1 54:1 117:1 \n-1 \n+1 3:0.5 7:-2.25\n",
    "1 1:1\r\n0 2:3.5\r\n\r\n",                          # CRLF
    "# header comment\n\n2 qid:7 1:1e3 4:-1.5E-2 # tail\n   \n1\t2:.5\t3:5.\n",
    "1 1:0.1 2:0.30000000000000004 3:123456789012345678901234567890 4:1e-320\n",
    "-0 5:-0 6:+0.0 7:1e22 8:1e23 9:9007199254740993 10:0.000001234567890123456789\n",
    "3 1:2",                                              # no final newline
    "",
    "\n\n# only comments\n",
    "1 2147483647:1\n",
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("text", HAND_WRITTEN)
def test_hand_written_files_equal_reference(tmp_path, text, dtype):
    path = write(tmp_path, text)
    data = read_svmlight(path, dtype=dtype)
    assert_matches_reference(data, text, dtype)
    widest = max([i + 1 for i in reference_parse(text)[2]], default=0)
    assert data.n_features == widest


def random_file(rng, n_lines=300, n_features=50):
    """Valid LIBSVM text with numbers in many spellings."""
    spellings = [lambda v: repr(float(v)), lambda v: f"{v:.3e}", lambda v: f"{v:g}", lambda v: str(int(v * 100)),
                 lambda v: f"{v:.17f}", lambda v: f"{v:+.2E}"]
    lines = []
    for _ in range(n_lines):
        kind = rng.integers(10)
        if kind == 0:
            lines.append("# comment 1:2" if rng.random() < 0.5 else "  ")
            continue
        columns = np.sort(rng.choice(n_features, size=rng.integers(0, 12), replace=False)) + 1
        scale = 10.0 ** rng.integers(-30, 30)
        parts = [spellings[rng.integers(len(spellings))](rng.standard_normal() * scale)
                 for _ in columns]
        label = str(rng.choice([-1, 1, 0, 2]))
        tokens = [label] + [f"{c}:{v}" for c, v in zip(columns, parts)]
        ending = rng.choice(["\n", "\r\n", " \n", "\t# c\n"])
        lines.append(" ".join(tokens) + ending)
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_random_files_equal_reference(tmp_path, seed, dtype):
    text = random_file(np.random.default_rng(seed))
    data = read_svmlight(write(tmp_path, text), dtype=dtype)
    assert_matches_reference(data, text, dtype)


def w8a_path():
    directory = os.environ.get("MPITRAIN_DATA")
    path = Path(directory) / "w8a" if directory else None
    if path is None or not path.is_file():
        pytest.skip("w8a not found: set MPITRAIN_DATA to the directory holding it")
    return path


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_w8a_equals_reference(dtype):
    path = w8a_path()
    data = read_svmlight(path, dtype=dtype)
    assert (data.n_samples, data.n_features) == (49749, 300)
    assert_matches_reference(data, path.read_text(), dtype)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_w8a_parts_concatenate_to_whole(count):
    path = w8a_path()
    whole = read_svmlight(path, n_features=300)
    parts = [read_svmlight(path, n_features=300, part=(i, count)) for i in range(count)]
    assert_same_rows(parts, whole)


def assert_same_rows(parts, whole):
    stacked = sp.vstack([p.features for p in parts], format="csr")
    assert stacked.shape == whole.features.shape
    np.testing.assert_array_equal(stacked.indptr, whole.features.indptr)
    np.testing.assert_array_equal(stacked.indices, whole.features.indices)
    np.testing.assert_array_equal(stacked.data, whole.features.data)
    np.testing.assert_array_equal(np.concatenate([p.labels for p in parts]), whole.labels)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
@pytest.mark.parametrize("text", HAND_WRITTEN + [random_file(np.random.default_rng(9), 40)])
def test_small_parts_concatenate_to_whole(tmp_path, text, count):
    path = write(tmp_path, text)
    whole = read_svmlight(path, n_features=2147483647)
    parts = [read_svmlight(path, n_features=2147483647, part=(i, count)) for i in range(count)]
    assert_same_rows(parts, whole)
    assert len({p.fingerprint for p in parts}) == count


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_part_reports_true_line_number(tmp_path, count):
    lines = [f"{(-1) ** i} {i % 9 + 1}:{i}" for i in range(100)]
    lines[76] = "1 3:1 2:1"                      # line 77 is broken
    path = write(tmp_path, "\n".join(lines) + "\n")
    failures = []
    for index in range(count):
        try:
            read_svmlight(path, part=(index, count))
        except DataError as error:
            failures.append(str(error))
    assert failures == [f"{path}:77: feature index 2 does not increase (previous index 3)"]


BROKEN = [
    ("x 1:2", "bad label 'x' (expected a number)"),
    ("1,2 1:2", "bad label '1,2' (expected a number)"),
    ("1:2 3:4", "bad label '1:2' (expected a number)"),
    ("nan 1:2", "label 'nan' is not finite"),
    ("-inf", "label '-inf' is not finite"),
    ("1 3", "expected 'index:value', got '3' (missing ':')"),
    ("1 a:2", "bad feature index 'a' (expected an integer from 1 to 2147483647)"),
    ("1 0:2", "bad feature index '0' (expected an integer from 1 to 2147483647)"),
    ("1 -3:2", "bad feature index '-3' (expected an integer from 1 to 2147483647)"),
    ("1 :2", "bad feature index '' (expected an integer from 1 to 2147483647)"),
    ("1 2147483648:1", "bad feature index '2147483648' (expected an integer from 1 to 2147483647)"),
    ("1 3:1 2:1", "feature index 2 does not increase (previous index 3)"),
    ("1 2:1 2:1", "feature index 2 does not increase (previous index 2)"),
    ("1 2:x", "bad value 'x' for feature index 2 (expected a number)"),
    ("1 2:", "bad value '' for feature index 2 (expected a number)"),
    ("1 2:1:3", "bad value '1:3' for feature index 2 (expected a number)"),
    ("1 2:0x10", "bad value '0x10' for feature index 2 (expected a number)"),
    ("1 2:1e", "bad value '1e' for feature index 2 (expected a number)"),
    ("1 2:inf", "value 'inf' for feature index 2 is not finite"),
    ("1 2:NaN", "value 'NaN' for feature index 2 is not finite"),
    ("1 2:1e999", "value '1e999' for feature index 2 is not finite"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("line, message", BROKEN)
def test_broken_line_message(tmp_path, line, message, dtype):
    text = "1 1:1\n# comment\n\n-1 2:3\r\n" + line + "\n1 1:1\n"
    path = write(tmp_path, text)
    with pytest.raises(DataError) as caught:
        read_svmlight(path, dtype=dtype)
    assert str(caught.value) == f"{path}:5: {message}"


def test_index_above_n_features(tmp_path):
    path = write(tmp_path, "1 1:1\n1 2:1 4:1\n")
    with pytest.raises(DataError) as caught:
        read_svmlight(path, n_features=3)
    assert str(caught.value) == f"{path}:2: feature index 4 exceeds n_features=3"
    assert read_svmlight(path, n_features=10).n_features == 10


def test_long_token_is_shortened_in_message(tmp_path):
    path = write(tmp_path, "1 2:" + "x" * 500 + "\n")
    with pytest.raises(DataError, match=r":1: bad value 'x{40}\.\.\.' for feature index 2"):
        read_svmlight(path)


@pytest.mark.parametrize("opener, suffix", [(bz2.open, ".bz2"), (gzip.open, ".gz")])
def test_compressed_file_equals_plain(tmp_path, opener, suffix):
    text = random_file(np.random.default_rng(3), 80)
    plain = read_svmlight(write(tmp_path, text))
    packed = tmp_path / f"data.svm{suffix}"
    with opener(packed, "wb") as out:
        out.write(text.encode())
    assert_same_rows([read_svmlight(packed)], plain)
    parts = [read_svmlight(packed, n_features=plain.n_features, part=(i, 3)) for i in range(3)]
    assert_same_rows(parts, plain)


def test_compressed_file_error_has_line(tmp_path):
    packed = tmp_path / "bad.svm.bz2"
    with bz2.open(packed, "wb") as out:
        out.write(b"1 1:1\n1 1:q\n")
    with pytest.raises(DataError, match=r"bad\.svm\.bz2:2: bad value 'q'"):
        read_svmlight(packed)


def test_bad_arguments(tmp_path):
    path = write(tmp_path, "1 1:1\n")
    with pytest.raises(ValueError, match="dtype"):
        read_svmlight(path, dtype=np.int32)
    with pytest.raises(ValueError, match="part"):
        read_svmlight(path, part=(3, 3))
    with pytest.raises(ValueError, match="n_features"):
        read_svmlight(path, n_features=0)


LONG_VALUE = "0." + "0" * 300 + "1"      # 303 characters: 1e-301, too long for the old 256-byte copy
LONG_LABEL = "1." + "0" * 400            # a label of 402 characters: exactly 1
LONG_ROUNDING = "1." + "0" * 300 + "1"   # rounds to 1.0 only when every digit is read, as strtod does


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_number_tokens_of_any_length_parse_like_strtod(tmp_path, dtype):
    """Tokens of 256 characters and more are valid numbers, parsed exactly like float()."""
    text = (f"{LONG_LABEL} 1:{LONG_VALUE} 2:{LONG_ROUNDING}\n"
            f"-{LONG_LABEL} 3:-{LONG_VALUE}e300 4:{'9' * 30}.{'9' * 300}\n")
    data = read_svmlight(write(tmp_path, text), dtype=dtype)
    assert_matches_reference(data, text, dtype)
    assert data.labels.tolist() == [1.0, -1.0]


def test_long_invalid_token_still_refused(tmp_path):
    path = write(tmp_path, "1 2:" + "1" * 300 + "x\n")
    with pytest.raises(DataError, match=r":1: bad value '1{40}\.\.\.' for feature index 2 \(expected a number\)"):
        read_svmlight(path)
    path = write(tmp_path, "0x" + "1" * 300 + " 1:1\n")
    with pytest.raises(DataError, match=r":1: bad label '0x1{38}\.\.\.' \(expected a number\)"):
        read_svmlight(path)


def truncated_or_corrupt(tmp_path, opener, suffix):
    """Compressed copies of a valid file: cut in half, and with bytes overwritten inside."""
    text = random_file(np.random.default_rng(4), 400).encode()
    whole = tmp_path / f"whole.svm{suffix}"
    with opener(whole, "wb") as out:
        out.write(text)
    packed = whole.read_bytes()
    truncated = write(tmp_path, packed[: len(packed) // 2], f"truncated.svm{suffix}")
    middle = len(packed) // 2
    corrupt = write(tmp_path, packed[:middle] + bytes(64) + packed[middle + 64:], f"corrupt.svm{suffix}")
    return truncated, corrupt


@pytest.mark.parametrize("opener, suffix, kind", [(bz2.open, ".bz2", "bzip2"), (gzip.open, ".gz", "gzip")])
def test_truncated_or_corrupt_compressed_file_names_the_file(tmp_path, opener, suffix, kind):
    truncated, corrupt = truncated_or_corrupt(tmp_path, opener, suffix)
    with pytest.raises(DataError) as caught:
        read_svmlight(truncated)
    assert str(caught.value).startswith(f"{truncated}: the {kind} file is truncated")
    with pytest.raises(DataError) as caught:
        read_svmlight(corrupt, part=(1, 2))
    assert str(caught.value).startswith(f"{corrupt}: the {kind} file is ")
    not_compressed = write(tmp_path, "1 1:1\n", f"plain.svm{suffix}")
    with pytest.raises(DataError, match=f"plain.svm{suffix}: the {kind} file is corrupt"):
        read_svmlight(not_compressed)
