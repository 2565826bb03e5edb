"""GPU twin of ``mpitrain._native.network``: a network's loss, gradient and correct-count passes
written once against an array module ``xp`` and its sparse module, so that the same code runs on
the GPU (cupy, cupyx.scipy.sparse: cuBLAS and cuSPARSE) and on the CPU (numpy, scipy.sparse:
the CI tests stand NumPy in for CuPy and compare with the Cython kernels).

The math is the Cython kernels' (the docstring of ``pyx/network.pyx``), on whole chunks of rows:

    forward   z_l = h_{l-1} W_l + b_l (xp.matmul; the CSR first layer is A[rows] @ W_1), h_l = sigma(z_l)
    heads     in double, with the kernels' stable formulas: softmax by the largest logit m,
              log(1 + exp(-t)) = max(-t, 0) + log1p(exp(-|t|)), sigmoid from exp(-|s|)
    backward  dW_l += h_{l-1}^T delta_l (A[rows]^T delta_1 on CSR), db_l += sum_rows delta_l (in
              double), delta_{l-1} = (delta_l W_l^T) * sigma'(z_{l-1})

Matrices, activations and gradients are in the objective's dtype, the head and the loss and bias
sums in double, as on the CPU; the sums run in another order (cuBLAS, pairwise reductions), so
results agree within the dtype's rounding (float64 ~1e-12 relative, float32 ~1e-5), not bit for
bit. Unlike the other ``mpitrain.gpu`` modules this one imports no CuPy: the caller passes the
modules (``array_modules``).

Allocation: the layer and delta buffers (rows, s_l) and the dense gather buffer (rows, d) are kept
and grown to the largest chunk seen; the matmul temporaries of the backward pass, the head's double
copy and a CSR gather are allocated per call. On a GPU a loss pass waits for the device at its end
(it returns host numbers), a gradient pass does not, except that ``A[rows]`` on CSR (cupyx reads
the selection's nonzero count) and the range check of rows given on the device each wait once.
"""
import importlib

import numpy as np
import scipy.sparse

from mpitrain import backend

CHUNK_ROWS = 16384  # rows one pass holds in the buffers (full-data passes go chunk by chunk)
ACTIVATIONS = ("relu", "tanh")
HEADS = ("softmax", "logistic", "squared")


def array_modules(features):
    """(xp, sparse): (numpy, scipy.sparse) for host features, (cupy, cupyx.scipy.sparse) for
    features on a GPU."""
    xp = backend.array_module(features)
    if xp is np:
        return np, scipy.sparse
    return xp, importlib.import_module("cupyx.scipy.sparse")


def device_features(features):
    """(is_sparse, features) for features on a GPU: a cupyx CSR matrix or a C-contiguous 2-D CuPy
    array, float32 or float64; ValueError otherwise."""
    xp, sparse = array_modules(features)
    dtype = np.dtype(features.dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"features must be float32 or float64, got {dtype}")
    if sparse.issparse(features):
        return True, features.tocsr()
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {features.shape}")
    return False, xp.ascontiguousarray(features)


def for_network(network, chunk=CHUNK_ROWS):
    """The twin of ``network``'s Cython kernel, on the network's features, labels and classes
    (wherever they live: the array modules follow the features)."""
    xp, sparse = array_modules(network.features)
    return NetworkKernel(xp, sparse, network.activation, network.head, network.parameter_shapes(),
                         network.features, network.labels, network.classes, chunk)


class NetworkKernel:
    """Loss and gradient passes of one network on one matrix, the methods of the Cython
    ``NetworkKernel`` on arrays of ``xp``.

    xp, sparse: numpy and scipy.sparse, or cupy and cupyx.scipy.sparse. activation, head: names
    (ACTIVATIONS, HEADS). parameters: ``mpitrain.objectives.layout.parameter_shapes(sizes)`` (W_1,
    b_1, W_2, ... with their offsets in x). features: a CSR matrix of ``sparse`` or a C-contiguous
    (n, d) array of ``xp``, float32 or float64; labels (n,) (copied to xp in the features' dtype);
    classes (n,) class indices (softmax; None for the other heads). chunk: the most rows one pass
    holds. x and out of a call are 1-D arrays of xp in the features' dtype with n_params entries.
    Not thread-safe: the passes share the buffers.
    """

    def __init__(self, xp, sparse, activation, head, parameters, features, labels, classes, chunk=CHUNK_ROWS):
        if activation not in ACTIVATIONS or head not in HEADS:
            raise ValueError(f"activation must be one of {ACTIVATIONS} and head one of {HEADS}, "
                             f"got {activation!r}, {head!r}")
        if int(chunk) < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk!r}")
        self.xp, self.activation, self.head, self.chunk = xp, activation, head, int(chunk)
        self.is_sparse = bool(sparse.issparse(features))
        self.features = features
        self.dtype = np.dtype(features.dtype)
        self.n_rows = int(features.shape[0])
        self.labels = xp.asarray(labels, dtype=self.dtype)
        self.classes = xp.asarray(classes, dtype=np.int32) if head == "softmax" else None
        # (weight offset, bias offset, n_in, n_out) of layers 1 .. K
        self.layers = [(w.offset, b.offset, *w.shape) for w, b in zip(parameters[0::2], parameters[1::2])]
        last = parameters[-1]
        self.n_params = last.offset + last.shape[0]
        if self.layers[0][2] != features.shape[1]:
            raise ValueError(f"W_1 has {self.layers[0][2]} rows; features have {features.shape[1]} columns")
        self._capacity = 0  # rows the buffers hold
        self._act = self._delta = self._gathered = None

    # -- views and buffers ------------------------------------------------------------------------

    def _weight(self, v, l):
        """W_l (n_in, n_out) of the flat vector v, a view."""
        at, _, n_in, n_out = self.layers[l - 1]
        return v[at:at + n_in * n_out].reshape(n_in, n_out)

    def _bias(self, v, l):
        """b_l (n_out,) of the flat vector v, a view."""
        _, at, _, n_out = self.layers[l - 1]
        return v[at:at + n_out]

    def _buffers(self, count):
        """(z/h of each layer, delta of each layer), views (count, s_l); grown to ``count`` rows."""
        if count > self._capacity:
            xp, dtype = self.xp, self.dtype
            self._act = [xp.empty((count, n_out), dtype=dtype) for *_, n_out in self.layers]
            self._delta = [xp.empty((count, n_out), dtype=dtype) for *_, n_out in self.layers]
            self._gathered = None if self.is_sparse else xp.empty((count, self.layers[0][2]), dtype=dtype)
            self._capacity = count
        return [a[:count] for a in self._act], [d[:count] for d in self._delta]

    def _rows(self, rows):
        """rows as a 1-D int64 array of xp (None stays None); IndexError for a row outside [0, n),
        checked where the rows are (host rows before they travel)."""
        if rows is None:
            return None
        if rows.ndim != 1:
            raise ValueError("rows must be a 1-D array of row indices")
        if rows.shape[0] and bool(((rows < 0) | (rows >= self.n_rows)).any()):
            raise IndexError(f"a row index is outside [0, {self.n_rows})")
        return self.xp.asarray(rows, dtype=np.int64)

    def _check(self, v, what):
        if getattr(v, "dtype", None) != self.dtype or v.ndim != 1 or v.shape[0] != self.n_params:
            raise ValueError(f"{what} must be a 1-D {self.dtype.name} array with {self.n_params} entries")

    # -- the passes -------------------------------------------------------------------------------

    def _inputs(self, rows, first, count):
        """The chunk's first-layer input: a CSR matrix or a dense (count, d) array of its rows."""
        if rows is None:
            if first == 0 and count == self.n_rows:
                return self.features
            return self.features[first:first + count]  # dense: a view; CSR: a row slice
        index = rows[first:first + count]
        if self.is_sparse:
            return self.features[index]
        return self.xp.take(self.features, index, axis=0, out=self._gathered[:count])

    def _forward(self, x, inputs, act):
        """h_1 .. h_{K-1} and o = z_K of the chunk into act (one (count, s_l) view per layer)."""
        xp = self.xp
        h = inputs
        for l, z in enumerate(act, start=1):
            if l == 1 and self.is_sparse:
                z[...] = h @ self._weight(x, 1)  # cuSPARSE spmm on a GPU
            else:
                xp.matmul(h, self._weight(x, l), out=z)
            z += self._bias(x, l)
            if l < len(act):
                if self.activation == "relu":
                    xp.maximum(z, 0, out=z)
                else:
                    xp.tanh(z, out=z)
            h = z

    def _labels(self, rows, first, count):
        """The chunk's labels: class indices (softmax) or labels in double."""
        index = slice(first, first + count) if rows is None else rows[first:first + count]
        if self.head == "softmax":
            return self.classes[index]
        return self.labels[index].astype(np.float64)

    def _head_loss(self, outputs, y):
        """(sum of the head's loss over the chunk, rows predicted correctly), device scalars
        (correct: None for the squared head)."""
        xp = self.xp
        o = outputs.astype(np.float64)
        if self.head == "softmax":
            m = o.max(axis=1)
            total = xp.exp(o - m[:, None]).sum(axis=1)
            picked = xp.take_along_axis(o, y[:, None].astype(np.int64), axis=1)[:, 0]
            loss = xp.log(total) + m - picked
            return loss.sum(), (o.argmax(axis=1) == y).sum()  # argmax: the first largest logit
        o = o[:, 0]
        if self.head == "logistic":
            t = y * o
            loss = xp.maximum(-t, 0.0) + xp.log1p(xp.exp(-xp.abs(t)))
            return loss.sum(), (t > 0).sum()
        r = o - y
        return (0.5 * r * r).sum(), None

    def _head_delta(self, outputs, y, scale, delta):
        """delta (count, n_out) = scale * dloss/doutputs, formed in double and rounded once."""
        xp = self.xp
        o = outputs.astype(np.float64)
        if self.head == "softmax":
            e = xp.exp(o - o.max(axis=1)[:, None])
            e /= e.sum(axis=1)[:, None]
            e -= xp.arange(o.shape[1])[None, :] == y[:, None]  # softmax(o) - e_y
            xp.multiply(e, scale, out=e)
            delta[...] = e
        elif self.head == "logistic":
            s = -y * o[:, 0]
            u = xp.exp(-xp.abs(s))
            sigmoid = xp.where(s >= 0, 1.0 / (1.0 + u), u / (1.0 + u))  # sigmoid(-y o)
            delta[:, 0] = (scale * -y) * sigmoid
        else:
            delta[:, 0] = scale * (o[:, 0] - y)

    def _backward(self, x, inputs, act, deltas, out):
        """out += the chunk's gradient, from delta_K in deltas[-1] (deltas[l - 1] is delta_l)."""
        xp = self.xp
        delta = deltas[-1]
        for l in range(len(act), 0, -1):
            h = inputs if l == 1 else act[l - 2]
            gradient = self._weight(out, l)
            if l == 1 and self.is_sparse:
                gradient += h.T @ delta  # cuSPARSE spmm with the CSR matrix transposed
            else:
                gradient += xp.matmul(h.T, delta)
            bias = self._bias(out, l)
            bias[...] = bias.astype(np.float64) + delta.sum(axis=0, dtype=np.float64)
            if l > 1:
                previous = deltas[l - 2]
                xp.matmul(delta, self._weight(x, l).T, out=previous)
                if self.activation == "relu":
                    previous *= act[l - 2] > 0  # relu' = [h > 0]
                else:
                    previous *= 1 - act[l - 2] * act[l - 2]  # tanh' = 1 - h^2
                delta = previous

    def _chunks(self, rows):
        count = self.n_rows if rows is None else int(rows.shape[0])
        for first in range(0, count, self.chunk):
            yield first, min(self.chunk, count - first)

    def loss_sum(self, x, rows=None):
        """(sum of the head's loss over rows (all rows if None; int64, repeats allowed) in double, a
        float; the number of those rows predicted correctly, an int (0 for the squared head))."""
        self._check(x, "x")
        rows = self._rows(rows)
        total, correct = 0.0, 0
        for first, count in self._chunks(rows):
            act, _ = self._buffers(count)
            self._forward(x, self._inputs(rows, first, count), act)
            loss, right = self._head_loss(act[-1], self._labels(rows, first, count))
            total += loss
            correct = correct if right is None else correct + right
        return float(total), int(correct)

    def gradient(self, x, rows, scale, decay, out):
        """out = scale * sum over rows (all rows if None) of grad f_i(x) + decay * x; returns None
        (the Cython kernel returns the loss sum: here that would cost a device synchronisation).
        out must not be x."""
        self._check(x, "x")
        self._check(out, "out")
        if self.xp.may_share_memory(x, out):
            raise ValueError("out must not be x")
        rows = self._rows(rows)
        self.xp.multiply(x, self.dtype.type(decay), out=out)  # decay rounded to the dtype, as the kernel
        for first, count in self._chunks(rows):
            act, deltas = self._buffers(count)
            inputs = self._inputs(rows, first, count)
            self._forward(x, inputs, act)
            self._head_delta(act[-1], self._labels(rows, first, count), float(scale), deltas[-1])
            self._backward(x, inputs, act, deltas, out)

    def squared_norm(self, x):
        """||x||^2 accumulated in double; a float."""
        x = x.astype(np.float64)
        return float(x @ x)
