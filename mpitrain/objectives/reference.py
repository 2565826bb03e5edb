"""The global objective over all ranks and its minimum f*, the reference for suboptimality.

With the rows split over the ranks of ``comm`` (N rows in all),

    F(x) = (1/N) sum over all rows f_i(x) + (l2/2) ||x||^2,   f* = min_x F(x) = F(x*).

Experiments report F(x) - f* (Stich 2019, docs/papers.md s.1: the target
suboptimality eps of the speedup measurement). ``reference_optimum`` solves for x* in
float64 with L-BFGS driven from rank 0 while the other ranks evaluate their rows, then
polishes with Newton steps when L-BFGS stops short of gtol, and caches the result.

A solve that still stops short of gtol (labels of 1e30, a line search that gives up) is
returned with ``converged=False`` and never cached, so a later run solves again instead of
measuring suboptimality against a wrong f* forever. The solver's own warnings (SciPy's,
NumPy's overflow) are caught: the caller gets one line through ``warn`` instead.
"""
import hashlib
import json
import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpitrain.atomic import write_json

ROOT = 0
EVALUATE, HESSIAN, DONE, FAILED = range(4)  # commands rank 0 broadcasts to the serving ranks
CACHE_VERSION = 1


@dataclass(frozen=True)
class ReferenceSolution:
    f_star: float          # F(x_star), the global objective at the solution
    x_star: np.ndarray     # the minimiser, float64, shape (n_features,)
    grad_norm: float       # ||grad F(x_star)||_2 actually achieved
    iterations: int        # L-BFGS iterations plus Newton steps (0 when read from the cache)
    converged: bool = True  # grad_norm <= gtol; False: f* is approximate (and was not cached)
    stop_reason: str = ""  # why L-BFGS stopped, as SciPy says it (empty when read from the cache)


def global_loss(objective, x, comm, n_total=None):
    """F(x) = (1/N) sum over all ranks' rows f_i(x) + (l2/2)||x||^2; collective over comm.

    x must be the same on every rank. N is the total row count: passed as ``n_total``, or
    summed in the same single allreduce as the loss sums.
    """
    local = np.array([objective.loss_sum(x), objective.n_samples], dtype=np.float64)
    total = np.empty_like(local)
    comm.Allreduce(local, total)
    n = total[1] if n_total is None else n_total
    x64 = np.asarray(x, dtype=np.float64)
    return float(total[0] / n + 0.5 * objective.l2 * float(x64 @ x64))


def cache_key(fingerprint, name, l2, n_features, n_total):
    """sha256 (hex) of what fixes f*: the data's fingerprint, the objective, l2, d and N."""
    text = json.dumps([str(fingerprint), name, repr(float(l2)), int(n_features), int(n_total)])
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(key, cache_dir=None):
    """<cache_dir or $MPITRAIN_CACHE or ~/.cache/mpitrain>/reference/<key>.json"""
    root = cache_dir or os.environ.get("MPITRAIN_CACHE") or Path.home() / ".cache" / "mpitrain"
    return Path(root) / "reference" / f"{key}.json"


def read_cached(path, key, n_features, gtol):
    """The cached ReferenceSolution at path, or None if missing, unreadable, corrupt or looser than gtol.

    Only a record whose grad_norm is at most gtol counts: older versions also cached solves
    that stopped short of their gtol, and those must be solved again.
    """
    try:
        record = json.loads(Path(path).read_text())
        if record["version"] != CACHE_VERSION or record["key"] != key:
            return None
        x_star = np.array(record["x_star"], dtype=np.float64)
        f_star, grad_norm = float(record["f_star"]), float(record["grad_norm"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if x_star.shape != (n_features,) or not (math.isfinite(f_star) and np.all(np.isfinite(x_star))):
        return None
    if not grad_norm <= gtol:
        return None
    return ReferenceSolution(f_star, x_star, grad_norm, 0)


def write_cached(path, key, solution, gtol, meta):
    """Write the solution as JSON atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    record = dict(version=CACHE_VERSION, key=key, f_star=solution.f_star, grad_norm=solution.grad_norm,
                  iterations=solution.iterations, gtol=gtol, x_star=solution.x_star.tolist(), **meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record, indent=None)


class GlobalEvaluator:
    """F and its derivatives over all ranks: rank 0 calls, the other ranks ``serve``.

    Each call on rank 0 broadcasts a command and x; every rank computes its sums on its
    rows in float64 and they are reduced to rank 0.
    """

    def __init__(self, objective, comm, n_total):
        self.objective = objective.astype(np.float64)
        self.comm = comm
        self.n_total = n_total
        self.d = objective.n_features
        self.evaluations = 0
        self._x = np.empty(self.d, dtype=np.float64)
        self._gradient = np.empty(self.d, dtype=np.float64)
        self._local = np.empty(self.d + 1, dtype=np.float64)
        self._total = np.empty(self.d + 1, dtype=np.float64)

    def _sums(self):
        """Local [loss sum, gradient sum] at self._x, reduced to rank 0."""
        self._local[0] = self.objective.loss_sum(self._x)
        self.objective.gradient_sum(self._x, self._gradient)
        self._local[1:] = self._gradient
        self.comm.Reduce(self._local, self._total, root=ROOT)

    def _hessian_sum(self):
        local = self.objective.hessian_sum(self._x)
        total = np.empty_like(local) if self.comm.Get_rank() == ROOT else None
        self.comm.Reduce(local, total, root=ROOT)
        return total

    def _command(self, command, x=None):
        self.comm.bcast(command, root=ROOT)
        if x is not None:
            self._x[:] = x
            self.comm.Bcast(self._x, root=ROOT)

    def value_and_gradient(self, x):
        """(F(x), grad F(x)) on rank 0."""
        self._command(EVALUATE, x)
        self._sums()
        self.evaluations += 1
        l2, n = self.objective.l2, self.n_total
        value = self._total[0] / n + 0.5 * l2 * float(self._x @ self._x)
        return value, self._total[1:] / n + l2 * self._x

    def hessian(self, x):
        """The Hessian of F at x, dense (d, d), on rank 0."""
        self._command(HESSIAN, x)
        return self._hessian_sum() / self.n_total + self.objective.l2 * np.eye(self.d)

    def stop(self, failed=False):
        self._command(FAILED if failed else DONE)

    def serve(self):
        """On ranks other than 0: answer rank 0's commands until it says DONE."""
        while True:
            command = self.comm.bcast(None, root=ROOT)
            if command in (DONE, FAILED):
                if command == FAILED:
                    raise RuntimeError("the reference solve failed on rank 0")
                return
            self.comm.Bcast(self._x, root=ROOT)
            if command == EVALUATE:
                self._sums()
            else:
                self._hessian_sum()


def newton_polish(evaluator, x, value, gradient, gtol, max_steps=20, max_features=4000):
    """Newton steps with backtracking until ||grad F|| <= gtol; returns (x, value, gradient, steps).

    Used after L-BFGS, which stalls near the optimum once F's decrease is below double
    precision. Skipped when d > max_features (a dense Hessian would not fit).
    """
    steps = 0
    if x.shape[0] > max_features:
        return x, value, gradient, steps
    while steps < max_steps and np.linalg.norm(gradient) > gtol:
        hessian = evaluator.hessian(x)
        try:
            direction = np.linalg.solve(hessian, -gradient)
        except np.linalg.LinAlgError:
            direction = np.linalg.lstsq(hessian, -gradient, rcond=None)[0]
        steps += 1
        for halvings in range(30):
            candidate = x + 0.5 ** halvings * direction
            new_value, new_gradient = evaluator.value_and_gradient(candidate)
            if new_value < value or np.linalg.norm(new_gradient) < np.linalg.norm(gradient):
                break
        else:
            break  # no step improves F or its gradient: rounding has the last word
        x, value, gradient = candidate, new_value, new_gradient
    return x, value, gradient, steps


@contextmanager
def quiet():
    """No Python warnings and no NumPy floating-point warnings inside (see solve_on_root)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def solve_on_root(evaluator, gtol, max_iterations, progress=None):
    """L-BFGS-B from x = 0, then Newton polish; the ReferenceSolution, converged or not.

    Warnings raised on the way (SciPy's line search, NumPy overflow on huge labels) are
    swallowed: whether the solve worked is judged by the gradient norm it reached, and
    the caller reports that in one line.
    """
    from scipy.optimize import minimize  # here: about 0.1 s of import, for the processes that solve

    x0 = np.zeros(evaluator.d, dtype=np.float64)
    iterations = 0

    def report(intermediate_result):  # ``progress.note`` is what a long solve shows on rank 0
        nonlocal iterations
        iterations += 1
        if progress is not None:
            progress.note = f"L-BFGS iteration {iterations}, F = {intermediate_result.fun:.10g}"

    with quiet():
        result = minimize(
            evaluator.value_and_gradient, x0, jac=True, method="L-BFGS-B", callback=report,
            options=dict(gtol=gtol, ftol=0.0, maxiter=max_iterations, maxfun=2 * max_iterations, maxcor=20),
        )
        x = np.asarray(result.x, dtype=np.float64)
        value, gradient = evaluator.value_and_gradient(x)
        x, value, gradient, steps = newton_polish(evaluator, x, value, gradient, gtol)
        grad_norm = float(np.linalg.norm(gradient))
    converged = bool(grad_norm <= gtol and math.isfinite(value))
    return ReferenceSolution(float(value), x, grad_norm, int(result.nit) + steps, converged,
                             str(getattr(result, "message", "")))


def approximate_note(solution, gtol):
    """The one line telling the user that f* missed gtol and what suboptimality then means."""
    if not math.isfinite(solution.f_star):
        return (f"f* could not be computed (the reference solve reached F = {solution.f_star}, "
                f"|grad F| = {solution.grad_norm:.3g}); suboptimality is not reported")
    reason = solution.stop_reason.strip().rstrip(":").strip()
    reason = f", L-BFGS-B said {reason!r}" if reason else ""
    return (f"f* is approximate (L-BFGS stopped at |grad F| = {solution.grad_norm:.3g} > gtol = {gtol:g} "
            f"after {solution.iterations} iterations{reason}); suboptimality is relative to it "
            "(not cached, the next run solves again)")


def reference_optimum(objective, comm, *, fingerprint, cache_dir=None, gtol=1e-10, max_iterations=10000,
                      warn=None, progress=None):
    """f* = min_x F(x) over all ranks' rows, solved in float64 and cached; collective over comm.

    L-BFGS-B (scipy, ftol=0, gtol on the largest gradient entry) runs on rank 0 while the
    other ranks serve evaluations; Newton steps on the dense d x d Hessian follow if
    ||grad F||_2 > gtol. ``grad_norm`` reports the Euclidean norm actually reached and
    ``converged`` whether it is at most gtol. The result does not depend on how the rows
    are split, up to rounding in the sums.

    The cache file is ``cache_path(cache_key(fingerprint, name, l2, d, N), cache_dir)``;
    rank 0 reads and writes it, everyone gets the same ReferenceSolution. A missing,
    corrupt or looser (grad_norm > gtol) file is ignored and rewritten. An unconverged
    solve is never written, so the next call solves again.

    ``warn``, when given, is called on rank 0 with one line (no traceback, no Python
    warning) when f* is approximate or the cache cannot be written; without it those
    cases are silent apart from ``converged``.
    """
    if not gtol > 0:
        raise ValueError(f"gtol must be > 0, got {gtol!r}")
    n_total = comm.allreduce(objective.n_samples)
    if n_total == 0:
        raise ValueError("the objective has no rows on any rank")
    rank = comm.Get_rank()
    key = cache_key(fingerprint, objective.name, objective.l2, objective.n_features, n_total)
    path = cache_path(key, cache_dir)
    cached = read_cached(path, key, objective.n_features, gtol) if rank == ROOT else None
    cached = comm.bcast(cached, root=ROOT)
    if cached is not None:
        return cached
    evaluator = GlobalEvaluator(objective, comm, n_total)
    if rank != ROOT:
        with quiet():  # huge labels overflow here too; rank 0 reports the outcome
            evaluator.serve()
        return comm.bcast(None, root=ROOT)
    started = time.perf_counter()
    try:
        solution = solve_on_root(evaluator, gtol, max_iterations, progress)
    except KeyboardInterrupt:  # Ctrl-C: rank 0 prints one line and its exit ends the job; the
        raise                  # servers must not raise "failed" tracebacks of their own first
    except BaseException:
        evaluator.stop(failed=True)
        raise
    evaluator.stop()
    warn = warn or (lambda text: None)
    if solution.converged:
        meta = dict(fingerprint=str(fingerprint), objective=objective.name, l2=objective.l2,
                    n_features=objective.n_features, n_total=n_total, ranks=comm.Get_size(),
                    seconds=time.perf_counter() - started)
        try:
            write_cached(path, key, solution, gtol, meta)
        except OSError as error:
            warn(f"could not write the reference cache {path}: {error}")
    else:
        warn(approximate_note(solution, gtol))
    return comm.bcast(solution, root=ROOT)
