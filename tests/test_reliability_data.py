"""Data the run cannot use, under ``mpiexec``: one clear line from rank 0 and exit 2, never a
traceback, a MemoryError or a silent run on wrong labels. Also the reference optimum f*:
an approximate one is announced once and never cached.

Same style as tests/test_reliability_inputs.py (whose helpers these cases use): real training
runs of 2 ranks on tiny data, with the time a case may take bounded.
"""
import bz2
import gzip
import json

import numpy as np
import pytest

from mpi_run import run_mpi, run_mpi_script
from test_reliability_inputs import TIMEOUT, WITHIN, error_line, libsvm, timed, train_args


def run_train(tmp_path, *overrides, name="out", env=None):
    """A 2-rank training run with the small settings plus ``overrides``; (result, seconds)."""
    return timed(run_mpi, 2, train_args(tmp_path / name, *overrides), env=env, timeout=TIMEOUT)


def dataset(path):
    return f'data.dataset="{path}"'


def lines(labels, rng):
    """LIBSVM lines with the given labels and 1-3 random features each."""
    out = []
    for label in labels:
        columns = np.sort(rng.choice(6, size=rng.integers(1, 4), replace=False)) + 1
        out.append(f"{label:g} " + " ".join(f"{j}:{rng.random():.3f}" for j in columns) + "\n")
    return "".join(out)


# --- item 2: labels the objective cannot take ------------------------------------------------------

def test_multiclass_labels_refused_for_logistic(tmp_path):
    data = libsvm(tmp_path, lines([3, 5, 7, 9] * 10, np.random.default_rng(0)))
    line = error_line(*run_train(tmp_path, dataset(data)))
    assert line == (f"mpitrain: error: {data}: objective 'logistic' cannot take the labels 3, 5, 7, 9: it needs "
                    "two classes coded -1/+1, 0/1 or 1/2; objective 'least_squares' takes any real labels")


def test_multiclass_labels_train_with_least_squares(tmp_path):
    data = libsvm(tmp_path, lines([3, 5, 7, 9] * 10, np.random.default_rng(0)))
    result, _ = run_train(tmp_path, dataset(data), "objective.name=least_squares", "step_size.value=0.05")
    assert result.returncode == 0, result.output
    assert result.stderr == ""


def test_file_without_features_refused(tmp_path):
    data = libsvm(tmp_path, "".join(f"{1 if i % 2 else -1}\n" for i in range(40)))
    line = error_line(*run_train(tmp_path, dataset(data)))
    assert line == (f"mpitrain: error: {data}: no features (no line holds an index:value pair, only labels); "
                    "a model needs at least one feature")


# --- item 3: one label coding for the whole file, also when each rank reads a part ----------------------

def test_partitioned_read_refuses_labels_whose_union_fits_no_coding(tmp_path):
    """Rank 0 reads labels 0/1 and rank 1 labels 1/2: each fits a coding, the file does not."""
    data = libsvm(tmp_path, lines([0] * 20 + [1] * 20 + [2] * 20, np.random.default_rng(1)))
    line = error_line(*run_train(tmp_path, dataset(data), "data.read=partitioned"))
    assert f"{data}: objective 'logistic' cannot take the labels 0, 1, 2: it needs two classes" in line


PARTITIONED_LABELS = '''
import json
import numpy as np
from mpi4py import MPI
from mpitrain.config import DataConfig
from mpitrain.data import read_svmlight
from mpitrain.problem import load_shard

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
path = {path!r}
local = load_shard(DataConfig(dataset=path, read="partitioned"), comm)
written = read_svmlight(path, part=(rank, size)).labels        # this rank's labels as in the file
expected = np.where(written == 2, 1.0, -1.0)                   # coding 1/2 of the whole file
report = comm.gather(dict(rank=rank, classes=sorted(set(written.tolist())), rows=int(local.n_samples),
                          wrong=int(np.sum(local.labels != expected)), positive=int(np.sum(local.labels == 1))),
                     root=0)
if rank == 0:
    print("REPORT", json.dumps(report))
'''


def test_partitioned_read_codes_labels_over_the_whole_file(tmp_path):
    """A label-sorted file coded 1/2 read in 3 parts: the first part holds class 1 only and must
    still map it to -1 (it used to guess the coding -1/+1 and make it +1)."""
    labels = [1] * 357 + [2] * 212
    data = libsvm(tmp_path, lines(labels, np.random.default_rng(2)))
    done = run_mpi_script(3, PARTITIONED_LABELS.format(path=str(data)), tmp_path, timeout=TIMEOUT)
    assert done.returncode == 0, done.output
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("REPORT"))[7:])
    assert [part["classes"] for part in report][0] == [1.0]  # the case that went wrong
    assert sum(part["rows"] for part in report) == len(labels)
    assert [part["wrong"] for part in report] == [0, 0, 0]
    assert sum(part["positive"] for part in report) == 212


# --- item 5: broken compressed files, sizes that cannot be allocated -------------------------------------

GOOD = "".join(f"{1 if i % 2 else -1} 1:{i % 7} 2:1 3:0.{i}\n" for i in range(400))


@pytest.mark.parametrize("opener, suffix, kind", [(gzip.open, ".gz", "gzip"), (bz2.open, ".bz2", "bzip2")])
def test_truncated_compressed_file_refused(tmp_path, opener, suffix, kind):
    whole = tmp_path / f"whole.svm{suffix}"
    with opener(whole, "wb") as out:
        out.write(GOOD.encode())
    data = tmp_path / f"cut.svm{suffix}"
    data.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    line = error_line(*run_train(tmp_path, dataset(data)))
    assert line.startswith(f"mpitrain: error: loading data: all ranks: {data}: the {kind} file is truncated "), line


def test_synthetic_set_too_large_for_memory_refused(tmp_path):
    line = error_line(*run_train(tmp_path, "data.n_samples=1e10", "data.n_features=300"))
    assert line.startswith("mpitrain: error: config field 'data.n_samples': synthetic-classification with "
                           "10000000000 samples x 300 features (density 0.04) needs about "), line
    assert " TB per rank, " in line and " for the 2 ranks on this machine; this machine has " in line


def test_batch_size_too_large_for_memory_refused(tmp_path):
    line = error_line(*run_train(tmp_path, "train.batch_size=1e30"))
    assert line.startswith("mpitrain: error: config field 'train.batch_size': a mini-batch of 1e+30 rows "
                           "(16 bytes each for the drawn row indices) needs about 1.6e+19 TB per rank"), line
    assert "; this machine has " in line


# --- item 1: an approximate f* is announced once and not cached ------------------------------------------

def test_approximate_f_star_warned_once_and_not_cached(tmp_path):
    """Labels of order 1e30 keep |grad F| far above gtol: rank 0 says so in one line (no
    Python or SciPy warning), and the next run solves again instead of reading a cached f*."""
    cache = tmp_path / "cache"
    overrides = ("data.dataset=synthetic-least-squares", "objective.name=least_squares", "data.noise=1e30",
                 "run.reference=true", "train.steps=20", "step_size.value=0.01")
    for name in ("first", "second"):
        result, elapsed = run_train(tmp_path, *overrides, name=name, env={"MPITRAIN_CACHE": str(cache)})
        assert result.returncode == 0, result.output
        assert elapsed < WITHIN
        warned = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(warned) == 1, result.stderr
        assert warned[0].startswith("mpitrain: warning: f* is approximate (L-BFGS stopped at |grad F| = ")
        assert "suboptimality is relative to it" in warned[0]
        assert "Warning" not in result.output
    assert not (cache / "reference").exists() or not any((cache / "reference").iterdir())
