"""Network objectives: softmax regression and a multilayer perceptron on this rank's rows.

With rows a_i (CSR or dense), labels y_i, n local rows and the network's output o_i(x) (forward
pass, backward pass and the heads' losses f: the docstring of ``pyx/network.pyx``),

    loss(x)     = (1/n) sum_i f(o_i(x); y_i) + (l2/2) ||x||^2
    gradient(x) = (1/n) sum_i grad_x f(o_i(x); y_i) + l2 x

the same objective and the same methods as ``mpitrain.objectives.base.Objective``, with x the flat
vector of every layer's W_l and b_l (``mpitrain.objectives.layout``). The regulariser covers the
whole of x, biases included (plain weight decay, so every algorithm treats x as one vector).

``Softmax``: no hidden layer and the softmax head, multinomial logistic regression (convex).
``MLP``: one or more hidden layers of relu or tanh and any head (softmax, logistic, squared).
The loops run in ``mpitrain._native.network`` on the CPU, through work buffers of CHUNK_ROWS rows
allocated here once: a call allocates nothing. Features on a GPU (``to_device``) run the passes of
its twin ``mpitrain.gpu.network`` (CuPy: cuBLAS, cuSPARSE) instead.
"""
import numpy as np
import scipy.sparse

from mpitrain import backend
from mpitrain._native.objectives import squared_norm
from mpitrain.gpu import network as device_kernels
from mpitrain.objectives import layout
from mpitrain.objectives.base import INT32_MAX, ArgumentChecks, csr_features, dense_features

CHUNK_ROWS = 256  # rows one kernel pass holds in the work buffers (full-data passes go chunk by chunk)
# The names both kernels take (mpitrain.gpu.network's tuples; the CPU kernels' tables have the same
# keys, tests/test_network_objective.py). The CPU kernels' module is imported when a model first builds one:
# it loads scipy.linalg for BLAS (about 0.1 s), which a process training a linear model never needs.
ACTIVATIONS = device_kernels.ACTIVATIONS  # "relu", "tanh"
HEADS = device_kernels.HEADS  # "softmax", "logistic", "squared"


def _first_bad(values, good):
    """The first entry of values where good is False, as a Python float."""
    return float(values[np.flatnonzero(~good)[0]])


class Network(ArgumentChecks):
    """Loss and gradient of (1/n) sum_i f(o_i(x); y_i) + (l2/2)||x||^2 for a feed-forward network.

    features: scipy.sparse (CSR, converted once, int32 indices) or a 2-D ndarray, shape
    (n_samples, n_features), float32 or float64. labels: shape (n_samples,): class indices
    0 .. C-1 stored as floats (softmax head; ``n_classes`` = C, default max label + 1: pass it
    where a rank's rows may miss a class), -1/+1 (logistic) or reals (squared). hidden: widths of
    the hidden layers; activation: "relu" or "tanh". Every x and out is a C-contiguous 1-D array of
    length n_params and of the objective's dtype.
    """

    name = "network"  # Softmax and MLP are the registered names
    OPTIONS = ("hidden", "activation", "head", "n_classes")  # keywords astype passes on

    def __init__(self, features, labels, l2, *, hidden=(), activation="relu", head="softmax", n_classes=None):
        l2 = float(l2)
        if not np.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
        self.l2 = l2
        self.xp = backend.array_module(features)  # numpy, or cupy for features on a GPU
        if self.xp is not np:
            self.is_sparse, self.features = device_kernels.device_features(features)
        else:
            self.is_sparse = scipy.sparse.issparse(features)
            self.features = csr_features(features) if self.is_sparse else dense_features(features)
        self.n_samples, self.n_features = self.features.shape
        self.dtype = np.dtype(self.features.dtype)
        if self.n_features < 1:
            raise ValueError("features must have at least one column")
        self._set_model(hidden, activation, head)
        labels = np.asarray(backend.to_host(labels))  # checked on the host
        if labels.ndim != 1 or labels.shape[0] != self.n_samples:
            raise ValueError(f"labels must have shape ({self.n_samples},), got {labels.shape}")
        self.classes = self._set_labels(labels, n_classes)
        self.labels = self.xp.asarray(np.ascontiguousarray(labels, dtype=self.dtype))
        self.n_outputs = self.n_classes if head == "softmax" else 1
        self.sizes = layout.layer_sizes(self.n_features, self.hidden, self.n_outputs)
        self.n_params = layout.n_params(self.sizes)
        if self.n_params > INT32_MAX or CHUNK_ROWS * max(self.sizes) > INT32_MAX:
            raise ValueError(f"the network has {self.n_params} parameters: at most 2**31 - 1 fit BLAS's int")
        self._build_kernel()

    def _set_model(self, hidden, activation, head):
        try:
            given = tuple(hidden)
            self.hidden = tuple(int(h) for h in given)
        except (TypeError, ValueError):
            raise ValueError(f"hidden must be a sequence of layer widths, got {hidden!r}") from None
        if any(h < 1 for h in self.hidden) or any(h != w for h, w in zip(self.hidden, given)):
            raise ValueError(f"hidden layer widths must be integers >= 1, got {hidden!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {list(HEADS)}, got {head!r}")
        self.activation, self.head = activation, head
        self.is_convex = not self.hidden
        self.is_classifier = head != "squared"

    def _set_labels(self, labels, n_classes):
        """Check labels for the head; for softmax set n_classes and return the int32 classes."""
        values = labels.astype(np.float64)
        if self.head != "softmax":
            if n_classes is not None:
                raise ValueError(f"n_classes is for the softmax head only, got n_classes={n_classes!r} "
                                 f"with head {self.head!r}")
            self.n_classes = None
            if self.head == "logistic" and not np.all((values == 1.0) | (values == -1.0)):
                bad = _first_bad(values, (values == 1.0) | (values == -1.0))
                raise ValueError(f"labels must be -1 or +1 for the logistic head, got {bad!r}")
            return None
        whole = np.isfinite(values) & (values >= 0) & (values == np.floor(values))
        if not whole.all():
            raise ValueError(f"labels must be class indices (integers >= 0), got {_first_bad(values, whole)!r}")
        if n_classes is None:
            if self.n_samples == 0:
                raise ValueError("n_classes is required when there are no labels to count classes from")
            n_classes = int(values.max()) + 1
            if n_classes < 2:
                raise ValueError("the labels show a single class: pass n_classes (>= 2)")
        if isinstance(n_classes, bool) or not float(n_classes).is_integer() or int(n_classes) < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        self.n_classes = int(n_classes)
        inside = values < self.n_classes
        if not inside.all():
            raise ValueError(f"labels must be class indices in [0, {self.n_classes}), got {_first_bad(values, inside)!r}")
        return np.ascontiguousarray(values, dtype=np.int32)

    def _build_kernel(self):
        """Work buffers for CHUNK_ROWS rows, allocated once, and the kernel that uses them."""
        if self.xp is not np:  # features on a GPU: the CuPy twin, same methods
            self._kernel = device_kernels.for_network(self)
            self._squared_norm = self._kernel.squared_norm
            return
        from mpitrain._native import network as kernels

        chunk, sizes, dtype = CHUNK_ROWS, self.sizes, self.dtype
        width = max(sizes[1:])
        self._table = layout.kernel_layout(sizes, chunk)
        act = np.zeros(chunk * sum(sizes[1:]), dtype=dtype)
        delta = np.zeros(2 * chunk * width, dtype=dtype)
        gathered = None if self.is_sparse else np.zeros(chunk * self.n_features, dtype=dtype)
        colsum = np.zeros(width, dtype=np.float64)
        if self.is_sparse:
            matrix = (self.features.data, self.features.indices, self.features.indptr)
        else:
            matrix = (self.features,)
        self._kernel = kernels.NetworkKernel(kernels.ACTIVATIONS[self.activation], kernels.HEADS[self.head],
                                             self._table, matrix, self.labels, self.classes, chunk, act,
                                             delta, gathered, colsum)
        self._squared_norm = squared_norm["float" if dtype == np.float32 else "double"]

    @property
    def options(self):
        """The constructor's keywords that rebuild this model (astype)."""
        return {key: getattr(self, key) for key in self.OPTIONS}

    def __repr__(self):
        layer = "csr" if self.is_sparse else "dense"
        model = f"hidden={self.hidden}, activation={self.activation!r}, " if self.hidden else ""
        classes = f", n_classes={self.n_classes}" if self.head == "softmax" else ""
        return (f"{type(self).__name__}(n_samples={self.n_samples}, n_features={self.n_features}, {model}"
                f"head={self.head!r}{classes}, n_params={self.n_params}, dtype={self.dtype.name}, {layer}, "
                f"l2={self.l2!r})")

    def astype(self, dtype):
        """The same objective with features and labels in ``dtype`` (self if it already is)."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        return type(self)(self.features.astype(dtype), self.labels.astype(dtype), self.l2, **self.options)

    def to_device(self):
        """The same objective with features and labels on the current GPU (CuPy / cupyx CSR), its
        passes run by ``mpitrain.gpu.network``; self when already there. RuntimeError saying why
        when CuPy or a GPU is missing."""
        if self.xp is not np:
            return self
        reason = backend.gpu_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"{type(self).__name__}.to_device needs a GPU: {reason}")
        return type(self)(backend.to_device(self.features), backend.to_device(self.labels), self.l2,
                          **self.options)

    def parameter_shapes(self):
        """[Parameter(name, offset, shape)] of W_1, b_1, W_2, ... in x (mpitrain.objectives.layout)."""
        return layout.parameter_shapes(self.sizes)

    def parameters(self, x):
        """{name: view of x} of W_1 (n_features, s_1), b_1 (s_1,), ... (views: writing them writes x)."""
        self._check(x, "x")
        return layout.unflatten(x, self.sizes)

    def initial_point(self, seed=0):
        """The seeded starting x (Glorot uniform for tanh, He normal for relu, biases 0; zeros without
        a hidden layer): the same x for the same seed on every rank."""
        return self.xp.asarray(layout.initial_point(self.sizes, self.activation, seed, self.dtype))

    def loss_sum(self, x):
        """sum_i f_i(x) over local rows (no regulariser), accumulated in double; a float."""
        self._check(x, "x")
        return self._kernel.loss_sum(x)[0]

    def correct_sum(self, x):
        """Number of local rows predicted correctly: argmax_c o_c == y (softmax, the first largest
        output on ties) or y o > 0 (logistic: an output of exactly 0 counts as wrong)."""
        if not self.is_classifier:
            raise ValueError("correct_sum needs a classifier: the squared head predicts real values")
        self._check(x, "x")
        return self._kernel.loss_sum(x)[1]

    def gradient_sum(self, x, out):
        """out = sum_i grad f_i(x) over local rows (no regulariser); returns out."""
        self._check(x, "x")
        self._check(out, "out")
        self._kernel.gradient(x, None, 1.0, 0.0, out)
        return out

    def batch_gradient(self, x, rows, out, weight=1.0):
        """out = weight ((1/b) sum_{i in rows} grad f_i(x) + l2 x), b = len(rows); returns out.

        rows: 1-D int64 array of local row indices, repeats allowed. Allocates nothing.
        """
        self._check(x, "x")
        self._check(out, "out")
        self._check_rows(rows)
        self._kernel.gradient(x, rows, weight / rows.shape[0], weight * self.l2, out)
        return out

    def batch_loss(self, x, rows):
        """(1/b) sum_{i in rows} f_i(x) + (l2/2)||x||^2 over a mini-batch; a float."""
        self._check(x, "x")
        self._check_rows(rows)
        return self._kernel.loss_sum(x, rows)[0] / rows.shape[0] + 0.5 * self.l2 * self._squared_norm(x)

    def loss(self, x):
        """(1/n) sum_i f_i(x) + (l2/2)||x||^2 over local rows; a float."""
        self._check_not_empty()
        return self.loss_sum(x) / self.n_samples + 0.5 * self.l2 * self._squared_norm(x)

    def gradient(self, x, out=None):
        """(1/n) sum_i grad f_i(x) + l2 x over local rows, into out (allocated if None)."""
        self._check(x, "x")
        self._check_not_empty()
        if out is None:
            out = self.xp.empty(self.n_params, dtype=self.dtype)
        else:
            self._check(out, "out")
        self._kernel.gradient(x, None, 1.0 / self.n_samples, self.l2, out)
        return out

    def sgd_steps(self, x, grad, sampler, capacity=None, output_total=None):
        """None: no many-steps kernel for networks yet, so the algorithms take one Python step at a
        time (``batch_gradient``)."""
        return None


class Softmax(Network):
    """Multinomial logistic regression: no hidden layer, o = a W + b (W (d, C), b (C,)), cross-entropy.

    Convex; starts at x = 0. n_classes: C (default max label + 1).
    """

    name = "softmax"
    OPTIONS = ("n_classes",)

    def __init__(self, features, labels, l2, *, n_classes=None):
        super().__init__(features, labels, l2, hidden=(), head="softmax", n_classes=n_classes)


class MLP(Network):
    """A multilayer perceptron: one or more hidden layers (``hidden`` widths, relu or tanh) and a
    softmax, logistic or squared head."""

    name = "mlp"

    def __init__(self, features, labels, l2, *, hidden=(64,), activation="relu", head="softmax",
                 n_classes=None):
        super().__init__(features, labels, l2, hidden=hidden, activation=activation, head=head,
                         n_classes=n_classes)
        if not self.hidden:
            raise ValueError("hidden must list at least one layer width for mlp, got () "
                             "(no hidden layer: use softmax)")
