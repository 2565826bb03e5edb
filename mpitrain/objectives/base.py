"""The Objective: an L2-regularised linear model's loss and gradient on this rank's rows.

With rows a_i (CSR or dense), labels y_i and n local rows,

    loss(x)     = (1/n) sum_i f_i(x) + (l2/2) ||x||^2
    gradient(x) = (1/n) sum_i grad f_i(x) + l2 x

where f_i depends on x only through the margin z_i = a_i . x (subclasses name f_i).
The regulariser is added once, to the mean. This is the objective of the Local SGD
experiment (Stich 2019, docs/papers.md s.1: logistic regression, l2 = 1/n, on w8a).
The loops run in the Cython kernels of ``mpitrain._native.objectives``, or in their CuPy
twins (``mpitrain.gpu.objectives``) when the features are on a GPU (see ``to_device``).
"""
import numpy as np
import scipy.sparse

from mpitrain import backend
from mpitrain._native import objectives as kernels
from mpitrain._native.sgd_steps import SGDSteps

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT32_MAX = np.iinfo(np.int32).max
STEP_BLOCK = 1024  # the most steps one call of an sgd_steps kernel takes (its buffers' length)


def csr_features(features):
    """Any scipy sparse matrix as CSR with int32 indices and indptr and contiguous float32 or float64
    data (converted once; the same object when it already is one); ValueError otherwise."""
    features = scipy.sparse.csr_matrix(features)
    dtype = np.dtype(features.dtype)
    if dtype not in DTYPES:
        raise ValueError(f"features must be float32 or float64, got {dtype}")
    if features.nnz > INT32_MAX:
        raise ValueError("features has more than 2**31 - 1 nonzeros: split it over more ranks")
    if features.indices.dtype != np.int32 or features.indptr.dtype != np.int32:
        features = scipy.sparse.csr_matrix(
            (features.data, features.indices.astype(np.int32), features.indptr.astype(np.int32)),
            shape=features.shape,
        )
    features.data = np.ascontiguousarray(features.data)
    return features


def dense_features(features):
    """A 2-D float32 or float64 array, C-contiguous; ValueError otherwise."""
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {features.shape}")
    if features.dtype not in DTYPES:
        raise ValueError(f"features must be float32 or float64, got {features.dtype}")
    return np.ascontiguousarray(features)


class ArgumentChecks:
    """The argument checks every objective makes (linear, network, the PyTorch bridge): x and out
    of the objective's dtype and length n_params, rows a non-empty 1-D int64 array, rows to sum."""

    def check_point(self, x, what: str = "x") -> None:
        """ValueError unless ``x`` is a C-contiguous array of this objective's dtype and length
        n_params (where it lives: NumPy or CuPy), the check each of its own calls makes; for
        code that hands x to this objective's arrays by other kernels (distinct_rows)."""
        self._check(x, what)

    def _check(self, v, what):
        if not isinstance(v, self.xp.ndarray) or v.dtype != self.dtype or v.shape != (self.n_params,):
            got = f"{v.dtype} array of shape {v.shape}" if hasattr(v, "dtype") else type(v).__name__
            raise ValueError(f"{what} must be a {self.dtype.name} array of shape ({self.n_params},), got {got}")
        if not v.flags.c_contiguous:
            raise ValueError(f"{what} must be C-contiguous")

    def _check_rows(self, rows):
        if not hasattr(rows, "ndim") or rows.dtype != np.int64 or rows.ndim != 1:
            raise ValueError("rows must be a 1-D int64 array of row indices")
        if rows.shape[0] == 0:
            raise ValueError("rows must not be empty")

    def _check_not_empty(self):
        if self.n_samples == 0:
            raise ValueError("this objective has no rows: use loss_sum / gradient_sum")


class Objective(ArgumentChecks):
    """Loss and gradient of (1/n) sum_i f_i(x) + (l2/2)||x||^2 over local rows.

    features: scipy.sparse CSR (or any sparse matrix, converted once) or a 2-D ndarray,
    shape (n_samples, n_features), float32 or float64. labels: shape (n_samples,),
    converted to the features' dtype. Every x and out is a C-contiguous 1-D array of
    length n_features and of the objective's dtype.
    """

    name = None  # key in mpitrain.objectives.OBJECTIVES
    kind = None  # loss code of the kernels (kernels.LOSS_KINDS[name])
    is_convex = True  # a linear model with a convex loss: one minimum, f* is well defined
    is_classifier = False  # True where correct_sum counts correct predictions (logistic)

    def __init__(self, features, labels, l2):
        l2 = float(l2)
        if not np.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
        self.l2 = l2
        self.xp = backend.array_module(features)  # numpy, or cupy for features on a GPU
        if backend.is_device_array(features):
            self._set_device(features)
        elif scipy.sparse.issparse(features):
            self._set_sparse(features)
        else:
            self._set_dense(features)
        labels = self.xp.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != self.n_samples:
            raise ValueError(f"labels must have shape ({self.n_samples},), got {labels.shape}")
        self.labels = self.xp.ascontiguousarray(labels, dtype=self.dtype)
        if self.xp is not np:  # the CuPy kernels: one matrix object, no double work buffer
            gpu = backend.kernels_for(features, "objectives")
            self._work, self._matrix = None, (self.features,)
            self._loss_kernel = gpu.csr_loss_sum if self.is_sparse else gpu.dense_loss_sum
            self._gradient_kernel = gpu.csr_gradient if self.is_sparse else gpu.dense_gradient
            self._squared_norm = gpu.squared_norm
            return
        self._work = np.zeros(self.n_features, dtype=np.float64)
        name = "float" if self.dtype == np.float32 else "double"
        if self.is_sparse:
            self._matrix = (self.features.data, self.features.indices, self.features.indptr)
            self._loss_kernel = kernels.csr_loss_sum[name]
            self._gradient_kernel = kernels.csr_gradient[name]
        else:
            self._matrix = (self.features,)
            self._loss_kernel = kernels.dense_loss_sum[name]
            self._gradient_kernel = kernels.dense_gradient[name]
        self._squared_norm = kernels.squared_norm[name]

    def _set_sparse(self, features):
        self.features = csr_features(features)
        self.is_sparse = True
        self.n_samples, self.n_features = self.features.shape
        self.dtype = np.dtype(self.features.dtype)

    def _set_device(self, features):
        dtype = np.dtype(features.dtype)
        if dtype not in DTYPES:
            raise ValueError(f"features must be float32 or float64, got {dtype}")
        self.is_sparse = features.ndim == 2 and not isinstance(features, self.xp.ndarray)
        if not self.is_sparse and features.ndim != 2:
            raise ValueError(f"features must be 2-D, got shape {features.shape}")
        self.features = features.tocsr() if self.is_sparse else self.xp.ascontiguousarray(features)
        self.n_samples, self.n_features = features.shape
        self.dtype = dtype

    def to_device(self):
        """The same objective with features and labels on the current GPU (CuPy / cupyx CSR)."""
        if self.xp is not np:
            return self
        return type(self)(backend.to_device(self.features), backend.to_device(self.labels), self.l2)

    def _set_dense(self, features):
        self.features = dense_features(features)
        self.is_sparse = False
        self.n_samples, self.n_features = self.features.shape
        self.dtype = self.features.dtype

    @property
    def n_params(self):
        """Length of x: n_features (one weight per feature; a network's x is longer)."""
        return self.n_features

    def initial_point(self, seed=0):
        """x = 0, the linear models' starting point (``seed`` is accepted for the network's
        interface and not used)."""
        return self.xp.zeros(self.n_features, dtype=self.dtype)

    def correct_sum(self, x):
        """Number of local rows classified correctly; only classifiers (is_classifier) define it."""
        raise ValueError(f"{self.name} is not a classifier: correct_sum is defined for logistic only")

    def __repr__(self):
        layout = "csr" if self.is_sparse else "dense"
        return (f"{type(self).__name__}(n_samples={self.n_samples}, n_features={self.n_features}, "
                f"dtype={self.dtype.name}, {layout}, l2={self.l2!r})")

    def astype(self, dtype):
        """The same objective with features and labels in ``dtype`` (self if it already is)."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        return type(self)(self.features.astype(dtype), self.labels.astype(dtype), self.l2)

    def loss_sum(self, x):
        """sum_i f_i(x) over local rows (no regulariser), accumulated in double; a float."""
        self._check(x, "x")
        return self._loss_kernel(self.kind, *self._matrix, self.labels, x, None)

    def gradient_sum(self, x, out):
        """out = sum_i grad f_i(x) over local rows (no regulariser); returns out."""
        self._check(x, "x")
        self._check(out, "out")
        self._gradient_kernel(self.kind, *self._matrix, self.labels, x, None, 1.0, 0.0,
                              self._work, out)
        return out

    def batch_gradient(self, x, rows, out, weight=1.0):
        """out = weight ((1/b) sum_{i in rows} grad f_i(x) + l2 x), b = len(rows); returns out.

        rows: 1-D int64 array of local row indices, repeats allowed (sampling with
        replacement). The mini-batch gradient of SGD; allocates nothing. ``weight`` folds a
        rank's averaging weight n_k / N into the same pass (see mpitrain.comm.averaging).
        """
        self._check(x, "x")
        self._check(out, "out")
        self._check_rows(rows)
        self._gradient_kernel(self.kind, *self._matrix, self.labels, x, rows,
                              weight / rows.shape[0], weight * self.l2, self._work, out)
        return out

    def sgd_steps(self, x, grad, sampler, capacity=STEP_BLOCK, output_total=None):
        """The kernel that takes many SGD steps ``x <- x - eta_t batch_gradient(x, sampler.draw())``
        in one call (``mpitrain._native.sgd_steps.SGDSteps``), or None when the features are on a
        GPU (no such kernel there).

        x, grad: the parameters and the gradient buffer it updates (this objective's dtype and
        shape); sampler: a ``mpitrain.sampling.BatchSampler`` over these rows, whose stream the
        kernel draws from (the same rows as ``sampler.draw()``); capacity: the most steps of one
        call. ``output_total`` (float64, shape (d,)): also add w_t x_t before each step, with w_t
        from the kernel's ``output_weights`` (Stich's weighted iterate sum). Every array is checked
        here, once; a call checks nothing but its step count.
        """
        if self.xp is not np:
            return None
        self._check(x, "x")
        self._check(grad, "grad")
        if not 1 <= sampler.n_rows <= self.n_samples:
            raise ValueError(f"sampler draws from {sampler.n_rows} rows; this objective has {self.n_samples}")
        step_sizes = np.zeros(capacity, dtype=np.float64)
        output_weights = None if output_total is None else np.zeros(capacity, dtype=np.float64)
        rows = np.zeros(sampler.batch_size, dtype=np.int64)
        work = np.zeros(self.n_features, dtype=np.float64)
        return SGDSteps(self.kind, self._matrix, self.labels, self.l2, x, grad, work, rows,
                                sampler.bit_generator, sampler.n_rows, step_sizes, output_weights, output_total)

    def gradient_kernel(self, x, grad, sampler):
        """A prepared ``batch_gradient(x, sampler.draw(), grad)``: an ``SGDSteps`` over x and grad
        whose ``gradient()`` draws the mini-batch from the sampler's stream and writes the same
        bits into grad in one call, with every array checked here, once; None when the features
        are on a GPU. It keeps x and grad: a caller that rebinds either needs a new one."""
        return self.sgd_steps(x, grad, sampler, capacity=1)

    def batch_loss(self, x, rows):
        """(1/b) sum_{i in rows} f_i(x) + (l2/2)||x||^2 over a mini-batch; a float."""
        self._check(x, "x")
        self._check_rows(rows)
        data = self._loss_kernel(self.kind, *self._matrix, self.labels, x, rows)
        return data / rows.shape[0] + 0.5 * self.l2 * self._squared_norm(x)

    def loss(self, x):
        """(1/n) sum_i f_i(x) + (l2/2)||x||^2 over local rows; a float."""
        self._check_not_empty()
        return self.loss_sum(x) / self.n_samples + 0.5 * self.l2 * self._squared_norm(x)

    def gradient(self, x, out=None):
        """(1/n) sum_i grad f_i(x) + l2 x over local rows, into out (allocated if None)."""
        self._check(x, "x")
        self._check_not_empty()
        if out is None:
            out = self.xp.empty(self.n_features, dtype=self.dtype)
        else:
            self._check(out, "out")
        self._gradient_kernel(self.kind, *self._matrix, self.labels, x, None,
                              1.0 / self.n_samples, self.l2, self._work, out)
        return out

    def margins(self, x):
        """z = A x, shape (n_samples,), float64 (NumPy/SciPy; for diagnostics and the reference solve)."""
        return np.asarray(self.features @ np.asarray(x, dtype=self.dtype), dtype=np.float64)

    def curvature(self, z):
        """f_i''(z_i) for margins z (float64); defined by subclasses."""
        raise NotImplementedError

    def hessian_sum(self, x):
        """sum_i f_i''(z_i) a_i a_i^T over local rows, a dense (d, d) float64 array (no regulariser).

        Used only by the reference solve's Newton polish; costs O(nnz d) and d^2 memory.
        """
        weights = self.curvature(self.margins(x))
        if self.is_sparse:
            a = self.features.astype(np.float64)
            weighted = scipy.sparse.diags(weights) @ a
            return np.asarray((a.T @ weighted).toarray())
        a = self.features.astype(np.float64, copy=False)
        return (a * weights[:, None]).T @ a
