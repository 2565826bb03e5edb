"""The global objective F and its minimum f*: accuracy, cache, and independence from the row split.

The MPI tests run ``mpiexec -n 1, 2, 4`` on the same synthetic rows split three ways
(all on one rank, uneven contiguous blocks, round robin) and check that f* agrees with
the in-process COMM_SELF solve to 1e-12 relative.
"""
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from mpi4py import MPI

from mpi_run import run_mpi_script
from mpitrain.objectives import make_objective
from mpitrain.objectives.reference import cache_key, cache_path, global_loss, reference_optimum

W8A = Path(os.environ.get("MPITRAIN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "w8a"

PROBLEM = '''
import numpy as np, scipy.sparse as sp

def synthetic(name, n=400, d=12, seed=7):
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, d)) * (rng.random((n, d)) < 0.4)
    w = rng.standard_normal(d)
    z = dense @ w + 0.5 * rng.standard_normal(n)
    labels = np.where(z > 0, 1.0, -1.0) if name == "logistic" else z
    return sp.csr_matrix(dense), labels
'''
namespace = {}
exec(PROBLEM, namespace)
synthetic = namespace["synthetic"]


def read_libsvm(path, n_features=300):
    """A minimal LIBSVM reader for the tests (mpitrain.data is the real one)."""
    labels, indptr, indices, data = [], [0], [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        labels.append(float(parts[0]))
        for item in parts[1:]:
            j, v = item.split(":")
            indices.append(int(j) - 1)
            data.append(float(v))
        indptr.append(len(indices))
    shape = (len(labels), n_features)
    matrix = sp.csr_matrix((np.array(data), np.array(indices, np.int32), np.array(indptr, np.int32)), shape=shape)
    return matrix, np.array(labels)


@pytest.mark.parametrize("name", ["logistic", "least_squares"])
def test_small_problem_reaches_tiny_gradient_and_hits_the_cache(name, tmp_path):
    features, labels = synthetic(name)
    objective = make_objective(name, features, labels, l2=1.0 / 400)
    solution = reference_optimum(objective, MPI.COMM_SELF, fingerprint="synthetic", cache_dir=tmp_path)
    gradient = objective.gradient(solution.x_star)
    assert np.linalg.norm(gradient) <= 1e-8
    assert solution.grad_norm <= 1e-10 and solution.iterations > 0
    assert solution.f_star == pytest.approx(objective.loss(solution.x_star), rel=1e-14)
    assert solution.f_star == pytest.approx(global_loss(objective, solution.x_star, MPI.COMM_SELF), rel=1e-14)
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert objective.loss(solution.x_star + 1e-3 * rng.standard_normal(12)) > solution.f_star
    start = time.perf_counter()
    again = reference_optimum(objective, MPI.COMM_SELF, fingerprint="synthetic", cache_dir=tmp_path)
    assert time.perf_counter() - start < 0.5
    assert again.iterations == 0 and again.f_star == solution.f_star
    np.testing.assert_array_equal(again.x_star, solution.x_star)
    other = reference_optimum(objective, MPI.COMM_SELF, fingerprint="other data", cache_dir=tmp_path)
    assert other.iterations > 0


def test_float32_objective_is_solved_in_float64(tmp_path):
    features, labels = synthetic("logistic")
    single = make_objective("logistic", features.astype(np.float32), labels.astype(np.float32), 1.0 / 400)
    solution = reference_optimum(single, MPI.COMM_SELF, fingerprint="synthetic", cache_dir=tmp_path)
    assert solution.x_star.dtype == np.float64 and solution.grad_norm <= 1e-10


def test_corrupt_or_mismatched_cache_is_ignored_and_rewritten(tmp_path):
    features, labels = synthetic("logistic")
    objective = make_objective("logistic", features, labels, l2=1.0 / 400)
    first = reference_optimum(objective, MPI.COMM_SELF, fingerprint="fp", cache_dir=tmp_path)
    path = cache_path(cache_key("fp", "logistic", 1.0 / 400, 12, 400), tmp_path)
    assert path.exists() and [p.name for p in path.parent.iterdir()] == [path.name]
    good = json.loads(path.read_text())
    for corrupt in ("{not json", json.dumps({**good, "x_star": [1.0, 2.0]}), json.dumps({**good, "f_star": None}),
                    json.dumps({**good, "grad_norm": 1.0, "gtol": 1.0})):
        path.write_text(corrupt)
        again = reference_optimum(objective, MPI.COMM_SELF, fingerprint="fp", cache_dir=tmp_path)
        assert again.iterations > 0
        assert again.f_star == pytest.approx(first.f_star, rel=1e-13)
        assert json.loads(path.read_text())["f_star"] == again.f_star
    assert reference_optimum(objective, MPI.COMM_SELF, fingerprint="fp", cache_dir=tmp_path).iterations == 0


def huge_label_objective():
    """Least squares on labels of order 1e30: |grad F| cannot come near gtol = 1e-10 in float64."""
    features, labels = synthetic("least_squares")
    return make_objective("least_squares", features, labels * 1e30, l2=1.0 / 400)


def test_unconverged_solve_is_not_cached_and_is_solved_again(tmp_path):
    objective = huge_label_objective()
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(all="warn"):
            first = reference_optimum(objective, MPI.COMM_SELF, fingerprint="huge", cache_dir=tmp_path,
                                      warn=notes.append)
            second = reference_optimum(objective, MPI.COMM_SELF, fingerprint="huge", cache_dir=tmp_path,
                                       warn=notes.append)
    assert [str(w.message) for w in caught] == []  # no Python or NumPy warning escapes
    assert not first.converged and first.grad_norm > 1e-10 and np.isfinite(first.f_star)
    assert not (tmp_path / "reference").exists() or not any((tmp_path / "reference").iterdir())
    assert second.iterations > 0 and not second.converged  # solved again, not read back
    assert len(notes) == 2
    assert notes[0].startswith(f"f* is approximate (L-BFGS stopped at |grad F| = {first.grad_norm:.3g} > gtol = 1e-10 ")
    assert notes[0].endswith("suboptimality is relative to it (not cached, the next run solves again)")


def test_converged_solve_says_so_and_reports_nothing(tmp_path):
    features, labels = synthetic("logistic")
    objective = make_objective("logistic", features, labels, l2=1.0 / 400)
    notes = []
    solved = reference_optimum(objective, MPI.COMM_SELF, fingerprint="fp", cache_dir=tmp_path, warn=notes.append)
    cached = reference_optimum(objective, MPI.COMM_SELF, fingerprint="fp", cache_dir=tmp_path, warn=notes.append)
    assert solved.converged and cached.converged and cached.iterations == 0 and notes == []


def test_cached_record_short_of_its_gtol_is_solved_again(tmp_path):
    """Older versions wrote unconverged solves with the gtol they missed; such a record is ignored."""
    features, labels = synthetic("logistic")
    objective = make_objective("logistic", features, labels, l2=1.0 / 400)
    first = reference_optimum(objective, MPI.COMM_SELF, fingerprint="fp", cache_dir=tmp_path)
    path = cache_path(cache_key("fp", "logistic", 1.0 / 400, 12, 400), tmp_path)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "f_star": first.f_star + 1.0, "grad_norm": 1e-3}))
    assert record["gtol"] == 1e-10
    again = reference_optimum(objective, MPI.COMM_SELF, fingerprint="fp", cache_dir=tmp_path)
    assert again.iterations > 0 and again.f_star == pytest.approx(first.f_star, rel=1e-13)


def test_cache_dir_defaults_to_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MPITRAIN_CACHE", str(tmp_path))
    assert cache_path("abc") == tmp_path / "reference" / "abc.json"
    assert cache_key("fp", "logistic", 0.1, 3, 10) != cache_key("fp", "logistic", 0.1, 3, 11)


def test_bad_gtol():
    features, labels = synthetic("logistic")
    objective = make_objective("logistic", features, labels, l2=0.1)
    with pytest.raises(ValueError, match="gtol"):
        reference_optimum(objective, MPI.COMM_SELF, fingerprint="fp", gtol=0.0)


@pytest.mark.skipif(not W8A.exists(), reason="w8a not found under $MPITRAIN_DATA")
def test_w8a_logistic_reference(tmp_path):
    features, labels = read_libsvm(W8A)
    assert features.shape == (49749, 300)
    objective = make_objective("logistic", features, labels, l2=1.0 / features.shape[0])
    solution = reference_optimum(objective, MPI.COMM_SELF, fingerprint="w8a", cache_dir=tmp_path)
    assert np.linalg.norm(objective.gradient(solution.x_star)) <= 1e-8
    assert solution.f_star == pytest.approx(objective.loss(solution.x_star), rel=1e-14)
    assert 0.1 < solution.f_star < np.log(2.0)


MPI_SCRIPT = PROBLEM + '''
from mpi4py import MPI
from mpitrain.objectives import make_objective
from mpitrain.objectives.reference import global_loss, reference_optimum

name, split, cache_dir = {name!r}, {split!r}, {cache_dir!r}
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
features, labels = synthetic(name)
n = features.shape[0]
if split == "round_robin":
    rows = np.arange(rank, n, size)
else:  # uneven contiguous blocks, the last rank gets the most
    bounds = np.r_[0, np.cumsum(np.arange(1, size + 1))] * n // (size * (size + 1) // 2)
    rows = np.arange(bounds[rank], bounds[rank + 1])
objective = make_objective(name, features[rows], labels[rows], l2=1.0 / n)
solution = reference_optimum(objective, comm, fingerprint="synthetic", cache_dir=cache_dir)
value = global_loss(objective, solution.x_star, comm)
again = reference_optimum(objective, comm, fingerprint="synthetic", cache_dir=cache_dir)
assert again.iterations == 0 and again.f_star == solution.f_star, (rank, again)
assert np.array_equal(again.x_star, solution.x_star)
report = comm.gather(f"RANK {{rank}} ROWS {{len(rows)}} FSTAR {{solution.f_star!r}} GLOBAL {{value!r}} "
                     f"GRAD {{solution.grad_norm!r}}", root=0)
if rank == 0:
    print("\\n".join(report))
'''


@pytest.mark.parametrize("name", ["logistic", "least_squares"])
@pytest.mark.parametrize("nprocs,split", [(1, "blocks"), (2, "blocks"), (4, "round_robin")])
def test_f_star_does_not_depend_on_the_split(name, nprocs, split, tmp_path):
    features, labels = synthetic(name)
    expected = reference_optimum(make_objective(name, features, labels, 1.0 / 400), MPI.COMM_SELF,
                                 fingerprint="synthetic", cache_dir=tmp_path / "self").f_star
    source = MPI_SCRIPT.format(name=name, split=split, cache_dir=str(tmp_path / "cache"))
    done = run_mpi_script(nprocs, source, tmp_path, timeout=90)
    assert done.returncode == 0, done.output
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("RANK")]
    assert len(lines) == nprocs
    assert sum(int(line[3]) for line in lines) == 400
    for line in lines:
        assert float(line[5]) == pytest.approx(expected, rel=1e-12)
        assert float(line[7]) == pytest.approx(expected, rel=1e-12)
        assert float(line[9]) <= 1e-10
