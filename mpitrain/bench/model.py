"""Gradient steps per second of mpitrain's MLP kernels beside the same model in PyTorch.

    python -m mpitrain bench model [--quick] [--hidden 64,256,1024] [--batch-size 32]
                                   [--dtype float32,float64] [--input dense,sparse] [--repeats 5] [--json]

The model: one hidden layer of relu and a softmax head over C = 10 classes
(``make_objective("mlp", ..., hidden=(h,), activation="relu", head="softmax", n_classes=10)``), the loss
(1/b) sum_i CE(o_i, y_i) + (l2/2)||x||^2 on a mini-batch of b rows, l2 = 1e-4, and plain SGD
x <- x - eta g, eta = 0.05. A row of the table is one dtype x hidden width h x input:

- ``dense``: n = 4096 rows, d = 128, standard normal entries;
- ``sparse``: n = 4096 CSR rows, d = 300, density 0.04, entries 1 (shaped like LIBSVM w8a);

labels uniform over the classes. One step of ours is what a training step runs (``SyncSGD.step``
without the average): ``objective.batch_gradient(x, rows, grad)``, which gathers the batch's rows
inside, then ``scaled_update(x, grad, -eta)``. One step of PyTorch's: ``zero_grad``, two
``torch.nn.Linear`` with relu between, ``F.cross_entropy`` (mean), ``backward`` and the step of
``torch.optim.SGD(lr=eta, weight_decay=l2, fused=True)``: the weight decay adds l2 p to each
gradient, the gradient of the same (l2/2)||x||^2 that ours adds inside ``batch_gradient``.
PyTorch's batch inputs and labels are tensors built before the timed loop (favouring it); on
sparse rows the first layer takes the fastest of three forms, chosen per row by a short
interleaved trial: the dense rows, a sparse CSR or a sparse COO tensor (``torch.sparse.addmm``).

The same work on both sides: one thread each (OMP_NUM_THREADS = OPENBLAS_NUM_THREADS =
MKL_NUM_THREADS = 1, ``torch.set_num_threads(1)``; the BLAS libraries read these once, when they
load, so the bench runs itself again in a child process with them set unless they already are);
the same starting point (``initial_point(0)``, copied as ``Linear.weight = W.T``); the same
pre-drawn sequence of row batches; the same steps in the same order, so both follow one trajectory
up to rounding (``final_difference``: max |x_ours - x_torch| / max |x_torch| after the last step).
Before timing, each row checks that both give the same loss and gradient at the start on the
first batch (relative difference, the gradient's in the max norm, below 1e-4 for float32 and 1e-10
for float64; for this check PyTorch adds (l2/2)||p||^2 to its loss) and stops with an error
otherwise (exit status 1).

Timing: a warm-up, a block size N fitted so that the slower of the two takes about 0.4 s a block
(0.02 s with ``--quick``), then ``--repeats`` rounds of N steps of ours and N steps of PyTorch's
in turn (which goes first alternates), so that machine noise hits both alike; the median steps/s
of each, ratio = ours / PyTorch. Target: ratio >= 1.0 on every row. The bench measures and asserts
nothing. Without PyTorch only ours is timed and its columns read n/a. ``--json`` prints one JSON
object; a line per row goes to stderr as the rows finish.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy
import scipy.sparse

from .._native.vector import scaled_update
from ..argparsing import ArgumentParser, size_list
from ..objectives import make_objective
from .machine import provenance

N_ROWS = 4096  # rows of each synthetic matrix
FEATURES = {"dense": 128, "sparse": 300}  # d per input kind
DENSITY = 0.04  # of the sparse rows (w8a: 0.039)
N_CLASSES = 10
L2 = 1e-4
STEP_SIZE = 0.05
N_BATCHES = 256  # pre-drawn batches, used in turn
TARGET = 1.0  # ours / torch steps/s on every row
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}  # of the pre-timing loss and gradient check
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
TORCH_FORMS = ("dense rows", "sparse CSR", "sparse COO")  # torch's first-layer input on sparse rows
NO_TORCH = ("PyTorch is not installed: only mpitrain's steps were timed. To compare, `pip install torch`, "
            "or `make .venv-torch/.deps` and run `PYTHONPATH=$PWD .venv-torch/bin/python -m mpitrain bench model`")


class Timing(NamedTuple):
    repeats: int  # interleaved rounds; the median is kept
    block_seconds: float  # the slower implementation's time for one block of N steps
    warmup_steps: int  # untimed steps of each before fitting N (and as many timed to fit it)
    trial_rounds: int  # rounds of the torch input-form trial on sparse rows


FULL = Timing(repeats=5, block_seconds=0.4, warmup_steps=20, trial_rounds=2)
QUICK = Timing(repeats=2, block_seconds=0.02, warmup_steps=2, trial_rounds=1)


def _choices(allowed):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items or any(item not in allowed for item in items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}")
        return list(dict.fromkeys(items))
    parse.__name__ = "list of " + "/".join(allowed)
    return parse


def parse_args(argv):
    p = ArgumentParser(prog="python -m mpitrain bench model", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=size_list, default=[64, 256, 1024], help="hidden widths (default 64,256,1024)")
    p.add_argument("--batch-size", type=int, default=32, help="rows per step (default 32)")
    p.add_argument("--dtype", type=_choices(("float32", "float64")), default=["float32", "float64"],
                   help="default float32,float64")
    p.add_argument("--input", type=_choices(("dense", "sparse")), default=["dense", "sparse"],
                   help="default dense,sparse")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 5; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="short blocks and few rounds (a smoke test)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    if not 1 <= args.batch_size <= N_ROWS:
        p.error(f"--batch-size must be in [1, {N_ROWS}], got {args.batch_size}")
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    return args


class Problem(NamedTuple):
    objective: object  # mpitrain.objectives.MLP
    batches: np.ndarray  # (N_BATCHES, b) int64 row indices, used in turn by both
    x0: np.ndarray  # the starting point


def make_problem(dtype, hidden, kind, batch_size, seed=0):
    """The row's data, objective, batch sequence and starting point (the same for every dtype)."""
    rng = np.random.default_rng(seed)
    if kind == "dense":
        features = rng.standard_normal((N_ROWS, FEATURES[kind]))
    else:
        features = scipy.sparse.random(N_ROWS, FEATURES[kind], density=DENSITY, format="csr", random_state=rng,
                                       data_rvs=np.ones)
    labels = rng.integers(0, N_CLASSES, N_ROWS).astype(np.float64)
    objective = make_objective("mlp", features.astype(dtype), labels.astype(dtype), L2, hidden=(hidden,),
                               activation="relu", head="softmax", n_classes=N_CLASSES)
    batches = rng.integers(0, N_ROWS, size=(N_BATCHES, batch_size), dtype=np.int64)
    return Problem(objective, batches, objective.initial_point(0))


class Ours:
    """mpitrain's step: batch_gradient (rows gathered inside) then scaled_update, as SyncSGD runs it."""

    def __init__(self, problem):
        self.objective, self.batches = problem.objective, problem.batches
        self.x = problem.x0.copy()
        self.grad = np.empty_like(self.x)

    def step(self, t):
        self.objective.batch_gradient(self.x, self.batches[t % N_BATCHES], self.grad)
        scaled_update(self.x, self.grad, -STEP_SIZE)

    def loss_and_gradient(self, i):
        rows = self.batches[i]
        return (self.objective.batch_loss(self.x, rows),
                self.objective.batch_gradient(self.x, rows, np.empty_like(self.x)))

    def flat(self):
        return self.x


class Torch:
    """The same model in PyTorch: Linear, relu, Linear, mean cross-entropy, SGD with weight decay."""

    def __init__(self, torch, problem, form):
        self.torch, self.form = torch, form
        objective, batches = problem.objective, problem.batches
        dtype = getattr(torch, objective.dtype.name)
        weights = objective.parameters(problem.x0)
        self.first = torch.nn.Linear(objective.n_features, objective.hidden[0], dtype=dtype)
        self.second = torch.nn.Linear(objective.hidden[0], N_CLASSES, dtype=dtype)
        with torch.no_grad():
            for layer, l in ((self.first, 1), (self.second, 2)):
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[f"W{l}"].T)))
                layer.bias.copy_(torch.from_numpy(weights[f"b{l}"]))
        self.shapes, self.n_params, self.dtype = objective.parameter_shapes(), objective.n_params, objective.dtype
        self.parameters = [self.first.weight, self.first.bias, self.second.weight, self.second.bias]
        self.inputs = [self._input(objective.features[rows]) for rows in batches]
        self.labels = [torch.from_numpy(objective.classes[rows].astype(np.int64)) for rows in batches]
        self.optimizer = torch.optim.SGD(self.parameters, lr=STEP_SIZE, weight_decay=L2, fused=True)
        self.cross_entropy = torch.nn.functional.cross_entropy

    def _input(self, rows):
        dense = self.torch.from_numpy(np.ascontiguousarray(rows.toarray() if scipy.sparse.issparse(rows) else rows))
        if self.form == "dense rows":
            return dense
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            return dense.to_sparse_csr() if self.form == "sparse CSR" else dense.to_sparse()

    def forward(self, inputs):
        if self.form == "dense rows":
            z = self.first(inputs)
        else:
            z = self.torch.sparse.addmm(self.first.bias, inputs, self.first.weight.t())
        return self.second(self.torch.relu(z))

    def step(self, t):
        i = t % N_BATCHES
        self.optimizer.zero_grad()
        self.cross_entropy(self.forward(self.inputs[i]), self.labels[i]).backward()
        self.optimizer.step()

    def loss_and_gradient(self, i):
        """Loss and gradient on batch i with (l2/2)||p||^2 in the loss, as ours (for the check)."""
        self.optimizer.zero_grad()
        loss = self.cross_entropy(self.forward(self.inputs[i]), self.labels[i])
        loss = loss + 0.5 * L2 * sum((p * p).sum() for p in self.parameters)
        loss.backward()
        gradient = self._flatten([p.grad for p in self.parameters])
        self.optimizer.zero_grad()
        return loss.item(), gradient

    def _flatten(self, tensors):
        """Weights (out, in) and biases in mpitrain's flat layout (W (in, out) row-major, then b)."""
        out = np.empty(self.n_params, dtype=self.dtype)
        for shape, tensor in zip(self.shapes, tensors):
            value = tensor.detach().numpy()
            out[shape.offset:shape.offset + value.size] = (value.T if value.ndim == 2 else value).ravel()
        return out

    def flat(self):
        return self._flatten(self.parameters)


def relative_difference(ours, theirs):
    """max |ours - theirs| / max |theirs| (numbers or arrays), in float64."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), np.finfo(np.float64).tiny))


class AgreementError(RuntimeError):
    pass


def check_agreement(ours, theirs, dtype):
    """Both implementations' loss and gradient on the first batch at the start, or AgreementError."""
    loss, gradient = ours.loss_and_gradient(0)
    expected_loss, expected = theirs.loss_and_gradient(0)
    found = {"loss": relative_difference(loss, expected_loss), "gradient": relative_difference(gradient, expected),
             "tolerance": TOLERANCE[dtype]}
    if not (found["loss"] < found["tolerance"] and found["gradient"] < found["tolerance"]):
        raise AgreementError(f"mpitrain and PyTorch ({theirs.form}) disagree at the start: loss {loss!r} against "
                             f"{expected_loss!r} (relative difference {found['loss']:.3g}), gradient relative "
                             f"difference {found['gradient']:.3g}; tolerance {found['tolerance']:g}")
    return found


def block(step, start, count):
    """Seconds for steps start .. start + count - 1."""
    began = time.perf_counter()
    for t in range(start, start + count):
        step(t)
    return time.perf_counter() - began


def interleave(steps, count, repeats, start):
    """repeats rounds of ``count`` steps of each function in turn (the order reversed every other
    round), over the same step numbers; ([steps/s of each round] per function, the next step number)."""
    rates = [[] for _ in steps]
    for r in range(repeats):
        order = list(zip(rates, steps))
        for rate, step in order if r % 2 == 0 else order[::-1]:
            rate.append(count / block(step, start, count))
        start += count
    return rates, start


def fit_block(steps, timing, start, seconds):
    """Warm each function up, time as many steps again; (N so that the slowest takes ``seconds``, next step)."""
    w = timing.warmup_steps
    for step in steps:
        block(step, start, w)
    slowest = max(block(step, start + w, w) for step in steps) / w
    return max(1, round(seconds / slowest)), start + 2 * w


def fastest_form(torch, problem, timing):
    """The torch input form with the most steps/s on this row's sparse rows (fresh models, interleaved)."""
    models = [Torch(torch, problem, form) for form in TORCH_FORMS]
    steps = [model.step for model in models]
    count, start = fit_block(steps, timing, 0, timing.block_seconds / 4)
    rates, _ = interleave(steps, count, timing.trial_rounds, start)
    trial = {form: statistics.median(rate) for form, rate in zip(TORCH_FORMS, rates)}
    return max(trial, key=trial.get), trial


def measure(torch, dtype, hidden, kind, args, timing):
    """One row of the table (a dict; the torch entries None without torch)."""
    problem = make_problem(dtype, hidden, kind, args.batch_size)
    row = {"dtype": dtype, "hidden": hidden, "input": kind, "n_features": problem.objective.n_features,
           "n_params": problem.objective.n_params, "torch_input": None, "torch_input_trial": None,
           "agreement": None}
    ours = Ours(problem)
    steps = [ours.step]
    if torch is not None:
        form = "dense rows"
        if kind == "sparse":
            form, row["torch_input_trial"] = fastest_form(torch, problem, timing)
        theirs = Torch(torch, problem, form)
        row["torch_input"] = form
        row["agreement"] = check_agreement(ours, theirs, dtype)
        steps.append(theirs.step)
    count, start = fit_block(steps, timing, 0, timing.block_seconds)
    rates, _ = interleave(steps, count, timing.repeats, start)
    row["steps_per_block"] = count
    row["ours_rounds"] = rates[0]
    row["ours_steps_per_second"] = statistics.median(rates[0])
    row["torch_rounds"] = rates[1] if torch is not None else None
    row["torch_steps_per_second"] = statistics.median(rates[1]) if torch is not None else None
    row["ratio"] = row["met"] = row["final_difference"] = None
    if torch is not None:
        row["ratio"] = row["ours_steps_per_second"] / row["torch_steps_per_second"]
        row["met"] = row["ratio"] >= TARGET
        row["final_difference"] = relative_difference(ours.flat(), theirs.flat())
    return row


def header(argv, args, timing, torch) -> dict:
    return {**provenance("model", argv), "numpy": np.__version__, "scipy": scipy.__version__,
            "torch": None if torch is None else torch.__version__,
            "threads": {**{name: os.environ.get(name) for name in THREAD_VARIABLES},
                        "torch": None if torch is None else torch.get_num_threads()},
            "model": f"one hidden layer (relu), softmax head, C = {N_CLASSES}", "n_rows": N_ROWS,
            "batch_size": args.batch_size, "l2": L2, "step_size": STEP_SIZE, "target_ratio": TARGET,
            "torch_l2": "weight_decay=l2 in torch.optim.SGD (fused=True)", "timing": timing._asdict(),
            "note": None if torch is not None else NO_TORCH}


def _rate(value) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def row_name(row) -> str:
    return f"{row['dtype']} h={row['hidden']} {row['input']}"


def print_table(head, rows) -> None:
    print(f"bench model: MLP, {head['model']}, b = {head['batch_size']}, l2 = {head['l2']:g}, "
          f"eta = {head['step_size']:g}, plain SGD; gradient steps per second")
    print("both single-threaded: " + ", ".join(f"{k}={v}" for k, v in head["threads"].items() if k != "torch")
          + (f", torch.set_num_threads(1) (torch {head['torch']})" if head["torch"] else ""))
    print(f"command: {head['command']}")
    print(f"cpu: {head['cpu']} ({head['logical_cpus']} logical CPUs, avx2 {head['avx2']}, avx512f "
          f"{head['avx512f']}); Python {head['python']}, NumPy {head['numpy']}, SciPy {head['scipy']}; {head['date']}")
    print(f"ours: batch_gradient (l2 x inside) + scaled_update, rows gathered in the step; torch: "
          f"{head['torch_l2']}, batches pre-built; sparse rows: torch's fastest input form in a trial")
    print(f"median of {head['timing']['repeats']} interleaved blocks each; target: ours / torch >= "
          f"{head['target_ratio']:g} on every row")
    print()
    width = max(len(row_name(row)) for row in rows)
    print(f"{'row':<{width}} {'params':>9} {'ours steps/s':>13} {'torch steps/s':>14} {'ratio':>6} {'met':>4}  "
          "torch input")
    for row in rows:
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        met = "n/a" if row["met"] is None else ("yes" if row["met"] else "no")
        print(f"{row_name(row):<{width}} {row['n_params']:>9,} {_rate(row['ours_steps_per_second']):>13} "
              f"{_rate(row['torch_steps_per_second']):>14} {ratio:>6} {met:>4}  {row['torch_input'] or 'n/a'}")
    if head["torch"] is None:
        print(head["note"])
    else:
        met = sum(bool(row["met"]) for row in rows)
        print(f"target met on {met} of {len(rows)} rows" + ("" if met == len(rows) else ": not met on "
              + "; ".join(row_name(row) for row in rows if not row["met"])))


def rerun_single_threaded(argv) -> int:
    """Run this bench again in a child process with every BLAS thread variable at 1."""
    env = {**os.environ, **{name: "1" for name in THREAD_VARIABLES}}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    return subprocess.run([sys.executable, "-m", "mpitrain.bench.model", *argv], env=env).returncode


def main(argv) -> int:
    args = parse_args(argv)
    if any(os.environ.get(name) != "1" for name in THREAD_VARIABLES):
        return rerun_single_threaded(argv)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
    timing = QUICK if args.quick else FULL
    if args.repeats is not None:
        timing = timing._replace(repeats=args.repeats)
    head = header(argv, args, timing, torch)
    rows = []
    for dtype in args.dtype:
        for hidden in args.hidden:
            for kind in args.input:
                try:
                    row = measure(torch, dtype, hidden, kind, args, timing)
                except AgreementError as error:
                    print(f"bench model: error: {dtype} h={hidden} {kind}: {error}", file=sys.stderr, flush=True)
                    return 1
                rows.append(row)
                print(f"bench model: {row_name(row)}: ours {_rate(row['ours_steps_per_second'])} steps/s, torch "
                      f"{_rate(row['torch_steps_per_second'])}" + ("" if row["ratio"] is None else
                      f" ({row['torch_input']}), ratio {row['ratio']:.2f}"), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({**head, "rows": rows, "all_met": None if torch is None else all(r["met"] for r in rows)}))
    else:
        print_table(head, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
