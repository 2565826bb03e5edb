"""TorchObjective: any PyTorch model and loss as an mpitrain objective over this rank's rows.

With rows a_i (CSR or dense, float32 or float64; row i is sample i's input, flattened), labels
y_i, n local rows, x the module's trainable parameters flattened (mpitrain.torch.flat) and
o_i(x) the module's output for row i,

    loss(x)     = (1/n) sum_i loss_fn(o_i(x), t_i) + (l2/2) ||x||^2
    gradient(x) = its gradient, by autograd

the objective of the built-in models (mpitrain.objectives.base.Objective: the same methods, the
same arguments, the regulariser over the whole of x added by mpitrain, not by the model). The
module is converted once to the data's dtype (``model.to(dtype)``) and its parameters are views
into the x each call is given: nothing is copied, and after a call the module holds that x.

The head says how the labels feed ``loss_fn`` (t_i) and what a correct prediction is:

    softmax   labels are class indices 0..C-1; t_i an int64 index (CrossEntropyLoss, NLLLoss);
              correct when argmax_c o_ic = y_i (the first largest on ties)
    logistic  labels are -1/+1 (or 0/1); t_i = (y_i + 1) / 2 in {0, 1} (BCEWithLogitsLoss);
              correct when y_i o_i > 0
    squared   labels are real values; t_i = y_i (MSELoss, L1Loss, HuberLoss, SmoothL1Loss);
              not a classifier

``head_of`` (mpitrain.torch.heads) reads it off the loss's type; any other loss needs it given.
A logistic or squared target has the output's shape, (b,) or (b, 1).

``loss_fn`` must return the mean over the rows it is given (torch's default ``reduction="mean"``):
a mini-batch's loss is that mean, and a pass over all rows goes chunk by chunk (``chunk_rows``
rows at a time, CSR rows made dense per chunk), weighting each chunk's mean by its row count.
Models with floating-point buffers (BatchNorm's running statistics) are refused: mpitrain averages
x only, so such statistics would drift apart over the ranks (see docs/torch.md). Mini-batch passes
(batch_gradient, batch_loss) run the module in train mode, full-data passes (the evaluation's
loss_sum, correct_sum, gradient_sum; loss, gradient) in eval mode: dropout is on only in training.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import scipy.sparse
import torch

from mpitrain._native.objectives import squared_norm
from mpitrain._native.vector import scaled_update
from mpitrain.objectives.base import ArgumentChecks, csr_features, dense_features
from mpitrain.torch.flat import TORCH_DTYPES, FlatParameters, export_state_dict, floating_buffers
from mpitrain.torch.heads import check_loss, describe, head_of
from mpitrain.torch.model_spec import load_model

CHUNK_BYTES = 32 * 2 ** 20  # input bytes a full-data pass hands the model at once
MAX_CHUNK_ROWS = 1024  # and at most this many rows (the activations grow with them too)


def check_buffers(model) -> None:
    """ValueError naming the model's floating-point buffers, if it has any."""
    names = floating_buffers(model)
    if names:
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise ValueError(f"the model has buffers {shown}; mpitrain averages parameters only, so they would "
                         "differ over the ranks: use a model without batch-norm statistics (GroupNorm, "
                         "LayerNorm) or BatchNorm with track_running_stats=False")


def set_threads(threads) -> None:
    """torch.set_num_threads(threads); None: 1, unless OMP_NUM_THREADS is set (torch follows it)."""
    if threads is None:
        if "OMP_NUM_THREADS" in os.environ:
            return
        threads = 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class TorchObjective(ArgumentChecks):
    """Loss and gradient of (1/n) sum_i loss_fn(model(a_i), t_i) + (l2/2)||x||^2 for a torch module.

    features: scipy.sparse (CSR, converted once) or a 2-D ndarray, shape (n_samples, n_features),
    float32 or float64: the rows the model takes as input (flattened; the model reshapes them).
    labels: shape (n_samples,), coded for the head (module doc). model: a torch.nn.Module on the
    CPU, converted in place to the features' dtype; its trainable parameters are x. loss_fn:
    ``loss_fn(output, target)``, the mean over rows. head: see the module doc (default: from
    the loss's type). n_classes: C for the softmax head (default: the model's output width); the
    model must give at least C outputs. threads: ``torch.set_num_threads`` (default 1, or what
    OMP_NUM_THREADS says). chunk_rows: rows per chunk of a full-data pass (default: 32 MiB of
    input, at most 1024). Every x and out is a C-contiguous 1-D array of length n_params and of
    the objective's dtype.
    """

    name = "torch"
    is_convex = False  # for all mpitrain knows: no reference optimum f*
    xp = np  # the bridge runs on the CPU
    is_sparse = False

    def __init__(self, features, labels, l2, model, loss_fn, *, head=None, n_classes=None, threads=None,
                 chunk_rows=None):
        l2 = float(l2)
        if not np.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
        self.l2 = l2
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self.head = head_of(loss_fn, head)
        check_loss(loss_fn)
        check_buffers(model)
        set_threads(threads)
        self.threads = threads
        self.is_sparse = scipy.sparse.issparse(features)
        self.features = csr_features(features) if self.is_sparse else dense_features(features)
        self.n_samples, self.n_features = self.features.shape
        self.dtype = np.dtype(self.features.dtype)
        self.model = model.to(TORCH_DTYPES[self.dtype])
        self.loss_fn = loss_fn
        self.flat = FlatParameters(self.model)
        self.n_params = self.flat.n_params
        self.is_classifier = self.head != "squared"
        self._inputs_all = None if self.is_sparse else torch.from_numpy(self.features)
        self.chunk_rows = self._chunk_rows(chunk_rows)
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != self.n_samples:
            raise ValueError(f"labels must have shape ({self.n_samples},), got {labels.shape}")
        self.n_classes = self._set_labels(labels, n_classes)
        self._initial = self.flat.x.copy()
        self._spec = None  # (spec, seed, keywords) when built from objective.model (from_spec)
        self._norm = squared_norm["float" if self.dtype == np.float32 else "double"]

    # --- set-up -----------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, features, labels, l2, model, *, head=None, n_classes=None, init_seed=0, threads=None):
        """The objective of the config: ``model`` is objective.model ("package.module:function",
        mpitrain.torch.model_spec), built under ``init_seed``; ``initial_point(seed)`` builds it
        again under another seed. head: objective.head (checked against the loss)."""
        set_threads(threads)
        keywords = {"n_features": int(features.shape[1]), "n_classes": n_classes if head in (None, "softmax") else None}
        module, loss_fn = load_model(model, seed=init_seed, **keywords)
        objective = cls(features, labels, l2, module, loss_fn, head=head, n_classes=n_classes, threads=threads)
        objective._spec = (model, init_seed, keywords)
        return objective

    def _chunk_rows(self, chunk_rows):
        if chunk_rows is None:
            itemsize = self.dtype.itemsize
            return int(max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // max(1, self.n_features * itemsize))))
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
        return chunk_rows

    def _set_labels(self, labels, n_classes):
        """Check the labels for the head, keep them (float, the data's dtype) and the loss's targets
        (torch tensors, shaped like the output); returns C for softmax, else None."""
        values = labels.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("labels must be finite")
        probe = self._probe()
        if self.head == "softmax":
            whole = (values >= 0) & (values == np.floor(values))
            if not whole.all():
                raise ValueError(f"labels must be class indices (integers >= 0) for the softmax head, got "
                                 f"{float(values[~whole][0])!r}")
            if probe is not None and (probe.ndim != 2 or probe.shape[1] < 2):
                raise ValueError(f"the model's output for {probe.shape[0]} rows has shape {tuple(probe.shape)}: "
                                 "the softmax head needs (rows, C) with C >= 2")
            width = None if probe is None else int(probe.shape[1])
            if n_classes is not None and (isinstance(n_classes, bool) or int(n_classes) != n_classes
                                          or n_classes < 2):
                raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
            if n_classes is not None and width is not None and n_classes > width:
                raise ValueError(f"the labels have {n_classes} classes (n_classes) but the model gives {width} "
                                 "outputs per row")
            count = int(n_classes) if n_classes is not None else width
            if count is not None and values.size and values.max() >= count:
                raise ValueError(f"label {values.max():g} is not a class index of the model's {count} outputs")
            self.labels = np.ascontiguousarray(values, dtype=self.dtype)
            self._targets = torch.from_numpy(values.astype(np.int64))
            return count
        if probe is not None and not (probe.ndim == 1 or (probe.ndim == 2 and probe.shape[1] == 1)):
            raise ValueError(f"the model's output for {probe.shape[0]} rows has shape {tuple(probe.shape)}: the "
                             f"{self.head} head needs one output per row, (rows,) or (rows, 1)")
        tail = tuple(probe.shape[1:]) if probe is not None else ()
        if self.head == "logistic":
            binary = (values == -1.0) | (values == 0.0) | (values == 1.0)
            if not binary.all():
                raise ValueError(f"labels must be -1/+1 (or 0/1) for the logistic head, got {float(values[~binary][0])!r}")
            values = np.where(values == 1.0, 1.0, -1.0)
            targets = (values + 1.0) / 2.0
        else:
            targets = values
        if n_classes is not None:
            raise ValueError(f"n_classes is for the softmax head only, got n_classes={n_classes!r} with head "
                             f"{self.head!r}")
        self.labels = np.ascontiguousarray(values, dtype=self.dtype)
        self._signs = torch.from_numpy(self.labels).view(-1, *tail)
        self._targets = torch.from_numpy(np.ascontiguousarray(targets, dtype=self.dtype)).view(-1, *tail)
        return None

    def _probe(self):
        """The model's output on the first rows (at most two), or None without rows."""
        if self.n_samples == 0:
            return None
        with torch.no_grad():
            return self.model(self._inputs(slice(0, min(2, self.n_samples))))

    # --- the interface of mpitrain.objectives.base.Objective -------------------------------

    def initial_point(self, seed=0):
        """The module's initial weights, flattened: the ones it had when this objective was built
        (the same on every rank when every rank built it the same way), or, for an objective built
        from objective.model, the ones its function gives under ``seed``."""
        if self._spec is None or seed == self._spec[1]:
            return self._initial.copy()
        spec, _, keywords = self._spec
        module, _ = load_model(spec, seed=seed, **keywords)
        return FlatParameters(module.to(TORCH_DTYPES[self.dtype])).x

    def loss_sum(self, x):
        """sum_i loss_fn(o_i(x), t_i) over local rows (no regulariser), accumulated in double; a float."""
        self.flat.bind(x)
        self._mode(training=False)
        total = 0.0
        with torch.no_grad():
            for rows, count in self._chunks():
                total += float(self._loss(rows)) * count
        return total

    def correct_sum(self, x):
        """Number of local rows predicted correctly (module doc); classifiers only."""
        if not self.is_classifier:
            raise ValueError("correct_sum needs a classifier: the squared head predicts real values")
        self.flat.bind(x)
        self._mode(training=False)
        correct = 0
        with torch.no_grad():
            for rows, _ in self._chunks():
                output = self.model(self._inputs(rows))
                if self.head == "softmax":
                    correct += int((output.argmax(dim=1) == self._targets[rows]).sum())
                else:
                    correct += int((output * self._signs[rows] > 0).sum())
        return correct

    def gradient_sum(self, x, out):
        """out = sum_i grad loss_fn(o_i(x), t_i) over local rows (no regulariser); returns out."""
        self._gradient_pass(x, out, lambda count: float(count))
        return out

    def gradient(self, x, out=None):
        """(1/n) sum_i grad loss_fn(o_i(x), t_i) + l2 x over local rows, into out (allocated if None)."""
        self._check_not_empty()
        if out is None:
            out = np.empty(self.n_params, dtype=self.dtype)
        grad = self._gradient_pass(x, out, lambda count: count / self.n_samples)
        if self.l2:
            grad.add_(self.flat.x_tensor, alpha=self.l2)
        return out

    def batch_gradient(self, x, rows, out, weight=1.0):
        """out = weight ((1/b) sum_{i in rows} grad loss_fn(o_i(x), t_i) + l2 x), b = len(rows); returns out.

        rows: 1-D int64 array of local row indices, repeats allowed. ``weight`` folds a rank's
        averaging weight in (mpitrain.comm.averaging).
        """
        gradients = self._batch_gradients(x, rows, weight)
        grad = self.flat.bind_grad(out)
        self.flat.fill_grad(gradients)  # one copy into the .grad views, not a zeroing and a += (flat.py)
        if self.l2:
            grad.add_(self.flat.x_tensor, alpha=weight * self.l2)
        return out

    def batch_step(self, x, rows, grad, eta, beta=1.0):
        """``batch_gradient(x, rows, grad)``, then x <- beta (x - eta grad): every bit of the two
        (mpitrain.algorithms.base.update), with l2 = 0 in one pass per parameter that reads each
        new gradient once (FlatParameters.fill_grad_and_update); returns grad."""
        if self.l2:
            self.batch_gradient(x, rows, grad)
            scaled_update(x, grad, -eta, beta)
            return grad
        gradients = self._batch_gradients(x, rows, 1.0)
        self.flat.bind_grad(grad)
        self.flat.fill_grad_and_update(gradients, -eta, beta)
        return grad

    def _batch_gradients(self, x, rows, weight):
        """The gradients of ``weight`` times the mini-batch loss at x (no regulariser), one new
        tensor per trainable parameter (autograd's own; zeros for a parameter the loss does not use)."""
        self._check_rows(rows)
        self.flat.bind(x)
        self._mode(training=True)
        index = torch.from_numpy(rows)
        with torch.enable_grad():
            loss = self._loss(index)
            return torch.autograd.grad(loss * weight if weight != 1.0 else loss, self.flat.parameters,
                                       allow_unused=True, materialize_grads=True)

    def batch_loss(self, x, rows):
        """(1/b) sum_{i in rows} loss_fn(o_i(x), t_i) + (l2/2)||x||^2 over a mini-batch; a float."""
        self._check_rows(rows)
        self.flat.bind(x)
        self._mode(training=True)
        with torch.no_grad():
            data = float(self._loss(torch.from_numpy(rows)))
        return data + 0.5 * self.l2 * self._norm(x)

    def loss(self, x):
        """(1/n) sum_i loss_fn(o_i(x), t_i) + (l2/2)||x||^2 over local rows; a float."""
        self._check_not_empty()
        return self.loss_sum(x) / self.n_samples + 0.5 * self.l2 * self._norm(x)

    def sgd_steps(self, x, grad, sampler, capacity=None, output_total=None):
        """The object that takes many SGD steps ``x <- x - eta_t batch_gradient(x, sampler.draw())``
        in one call (mpitrain.torch.steps.TorchSGDSteps, the interface of the linear models'
        ``mpitrain._native.sgd_steps.SGDSteps``): the same iterates, bit for bit, with each step's
        gradient copied into ``grad`` and x stepped in one pass where no sum over the ranks
        comes between them."""
        from mpitrain.torch.steps import TorchSGDSteps

        return TorchSGDSteps(self, x, grad, sampler, capacity=capacity, output_total=output_total)

    def astype(self, dtype):
        """The same objective with features, labels and a copy of the model in ``dtype`` (self if it
        already is)."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        other = TorchObjective(self.features.astype(dtype), self.labels.astype(dtype), self.l2,
                               copy.deepcopy(self.model), self.loss_fn, head=self.head, n_classes=self.n_classes,
                               threads=self.threads, chunk_rows=self.chunk_rows)
        other._initial = self._initial.astype(dtype)
        other._spec = self._spec
        return other

    def to_device(self):
        raise NotImplementedError("the PyTorch bridge runs on the CPU: pass NumPy or SciPy features")

    # --- weights back into torch ------------------------------------------------------------

    def export_state_dict(self, x):
        """``model.state_dict()`` with the parameters of ``x`` (copies): for ``torch.save`` or
        ``load_state_dict`` into a module of the same architecture."""
        return export_state_dict(self.model, x)

    def load(self, x):
        """The module's parameters := ``x``, copied into this objective's own vector (``flat.x``),
        which the module then points at; its ``.grad`` are dropped. Returns the module."""
        self.flat.load(x)
        self.flat.release_grad()
        return self.model

    def __repr__(self):
        layout = "csr" if self.is_sparse else "dense"
        classes = f", n_classes={self.n_classes}" if self.head == "softmax" else ""
        return (f"TorchObjective({type(self.model).__name__}, {describe(self.loss_fn)}, head={self.head!r}{classes}, "
                f"n_samples={self.n_samples}, n_features={self.n_features}, n_params={self.n_params}, "
                f"dtype={self.dtype.name}, {layout}, l2={self.l2!r})")

    # --- rows -------------------------------------------------------------------------------

    def _inputs(self, rows):
        """The model's input for ``rows`` (a slice or an int64 tensor of indices): (b, n_features)."""
        if self.is_sparse:
            picked = self.features[rows] if isinstance(rows, slice) else self.features[rows.numpy()]
            return torch.from_numpy(picked.toarray())
        if isinstance(rows, slice):
            return self._inputs_all[rows]
        return self._inputs_all.index_select(0, rows)

    def _loss(self, rows):
        """loss_fn over ``rows``: a 0-d tensor."""
        return self.loss_fn(self.model(self._inputs(rows)), self._targets[rows])

    def _chunks(self):
        """(slice, row count) of consecutive chunks of at most chunk_rows rows."""
        for start in range(0, self.n_samples, self.chunk_rows):
            stop = min(start + self.chunk_rows, self.n_samples)
            yield slice(start, stop), stop - start

    def _gradient_pass(self, x, out, scale):
        """out = sum over chunks of scale(rows) * grad (chunk mean); returns out as a tensor."""
        self.flat.bind(x)
        grad = self.flat.bind_grad(out)
        self._mode(training=False)
        grad.zero_()
        with torch.enable_grad():
            for rows, count in self._chunks():
                (self._loss(rows) * scale(count)).backward()
        return grad

    def _mode(self, training: bool) -> None:
        """Train mode for mini-batch passes, eval mode for full-data passes (dropout off: the loss
        and gradient the metrics report are the deterministic model's)."""
        if self.model.training != training:
            self.model.train(training)

