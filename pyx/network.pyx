"""Loss and gradient kernels of a feed-forward network (softmax regression, MLP) on CSR or dense rows.

Layers l = 1 .. K (K = L + 1 affine layers: L hidden, one output), widths s_0 = d (inputs),
s_1 .. s_L (hidden), s_K = n_outputs. The parameters are one flat vector x holding, layer by
layer, W_l (s_{l-1}, s_l) row-major and then b_l (s_l,).

Forward pass of a row a (1, d), sigma = relu or tanh on the hidden layers only:

    z_l = h_{l-1} W_l + b_l,   h_0 = a,   h_l = sigma(z_l) (l < K),   o = z_K

The first layer on a CSR row is a gather, z_1 = b_1 + sum_j a_j W_1[j, :]; on dense rows the batch's
rows are gathered into a contiguous buffer (or used in place for a run of consecutive rows) and
multiplied by BLAS gemm, as are all later layers.

Heads (loss f(o; y), its derivative g = df/do, the correct-prediction test):

    softmax  (o in R^C, y in {0..C-1})  f = log sum_c exp(o_c - m) + m - o_y,  m = max_c o_c
                                         g = softmax(o) - e_y;   correct: argmax_c o_c == y
    logistic (o in R, y in {-1, +1})    f = log(1 + exp(-y o)) = max(-y o, 0) + log1p(exp(-|y o|))
                                         g = -y sigmoid(-y o);   correct: y o > 0
    squared  (o in R, y in R)           f = 0.5 (o - y)^2,        g = o - y

Backward pass with delta_K = scale g (one row per batch row):

    dW_l += h_{l-1}^T delta_l,   db_l += sum_rows delta_l,   delta_{l-1} = (delta_l W_l^T) * sigma'(z_{l-1})

with sigma' taken from the activation: relu' = [h > 0] (0 at z = 0, as PyTorch), tanh' = 1 - h^2.
On CSR input dW_1 is a scatter: dW_1[j, :] += a_j delta_1. (Rumelhart, Hinton, Williams 1986.)

One pass of :class:`NetworkKernel` runs the rows in chunks of at most ``chunk`` rows through work
buffers the caller allocated once; nothing is allocated per call. Matrices, activations and
gradients are in the objective's dtype (fused float32/float64: sgemm or dgemm), loss sums and the
bias column sums in double. The loops run without the GIL.
"""
import threading

import numpy as np

from cython cimport floating

include "network_math.pxi"


ctypedef struct Net:
    bint sparse  # CSR (values, indices, indptr) or dense C-contiguous (n, d) values
    int activation  # RELU or TANH
    int head  # SOFTMAX, LOGISTIC or SQUARED
    Py_ssize_t layers  # K, the affine layers
    const int64_t* sizes  # (K + 1,) widths s_0 .. s_K
    const int64_t* weight_at  # (K + 1,) offset of W_l in x (index 0 unused)
    const int64_t* bias_at  # (K + 1,) offset of b_l in x (index 0 unused)
    const int64_t* act_at  # (K + 1,) offset of layer l's rows in the activation buffer (index 0 unused)
    Py_ssize_t n_rows  # the matrix's rows
    Py_ssize_t chunk  # the most rows one pass holds in the buffers
    const void* values  # CSR data (nnz,) or dense (n, d), the objective's dtype
    const int32_t* indices
    const int32_t* indptr
    const void* labels  # (n,) the objective's dtype (logistic, squared)
    const int32_t* classes  # (n,) class indices (softmax), else NULL
    void* act  # (chunk * sum_{l>=1} s_l,) z_l then h_l of each layer, row-major (chunk, s_l)
    void* delta  # (2, chunk * max_l s_l) two delta buffers used in turn
    void* gathered  # (chunk, d) dense input rows, or NULL for CSR
    double* colsum  # (max_l s_l,) bias gradient sums in double
    Py_ssize_t width  # max_l s_l, l >= 1


cdef const floating* dense_input(const Net* s, const int64_t* rows, Py_ssize_t first, Py_ssize_t count,
                                 bint gather, const floating* values) noexcept nogil:
    """The chunk's dense input rows (count, d): in place for consecutive rows (rows NULL), else the
    gathered buffer, filled when ``gather``."""
    cdef Py_ssize_t d = s.sizes[0], i, j
    cdef floating* out = <floating*>s.gathered
    cdef const floating* row
    if rows == NULL:
        return values + first * d
    if gather:
        for i in range(count):
            row = values + rows[first + i] * d
            for j in range(d):
                out[i * d + j] = row[j]
    return out


cdef void csr_first_layer(const Net* s, const floating* values, const int64_t* rows, Py_ssize_t first,
                          Py_ssize_t count, const floating* w, floating* z) noexcept nogil:
    """z (count, s_1) += the chunk's CSR rows times W_1, by gathering the rows of W_1."""
    cdef Py_ssize_t n_out = s.sizes[1], i, j, k, r
    cdef floating a
    cdef const floating* w_row
    cdef floating* z_row
    for i in range(count):
        r = first + i if rows == NULL else <Py_ssize_t>rows[first + i]
        z_row = z + i * n_out
        for k in range(s.indptr[r], s.indptr[r + 1]):
            a = values[k]
            w_row = w + <Py_ssize_t>s.indices[k] * n_out
            for j in range(n_out):
                z_row[j] += a * w_row[j]


cdef void csr_first_gradient(const Net* s, const floating* values, const int64_t* rows, Py_ssize_t first,
                             Py_ssize_t count, const floating* delta, floating* dw) noexcept nogil:
    """dW_1 (d, s_1) += the chunk's CSR rows^T delta_1, by scattering into the rows of dW_1."""
    cdef Py_ssize_t n_out = s.sizes[1], i, j, k, r
    cdef floating a
    cdef const floating* d_row
    cdef floating* g_row
    for i in range(count):
        r = first + i if rows == NULL else <Py_ssize_t>rows[first + i]
        d_row = delta + i * n_out
        for k in range(s.indptr[r], s.indptr[r + 1]):
            a = values[k]
            g_row = dw + <Py_ssize_t>s.indices[k] * n_out
            for j in range(n_out):
                g_row[j] += a * d_row[j]


cdef void forward(const Net* s, const floating* x, const int64_t* rows, Py_ssize_t first,
                  Py_ssize_t count) noexcept nogil:
    """h_1 .. h_{K-1} and o = z_K of the chunk into the activation buffer."""
    cdef const floating* values = <const floating*>s.values
    cdef floating* act = <floating*>s.act
    cdef floating* z
    cdef const floating* b
    cdef const floating* inputs
    cdef Py_ssize_t l, i, j, n_in, n_out
    for l in range(1, s.layers + 1):
        n_in, n_out = s.sizes[l - 1], s.sizes[l]
        z = act + s.act_at[l]
        b = x + s.bias_at[l]
        for i in range(count):
            for j in range(n_out):
                z[i * n_out + j] = b[j]
        if l == 1 and s.sparse:
            csr_first_layer(s, values, rows, first, count, x + s.weight_at[1], z)
        else:
            if l == 1:
                inputs = dense_input(s, rows, first, count, True, values)
            else:
                inputs = act + s.act_at[l - 1]
            gemm(False, False, count, n_out, n_in, inputs, n_in, x + s.weight_at[l], n_out, 1, z, n_out)
        if l < s.layers:
            activate(s.activation, z, count * n_out)


cdef void backward(const Net* s, const floating* x, const int64_t* rows, Py_ssize_t first,
                   Py_ssize_t count, floating* g) noexcept nogil:
    """g += the chunk's gradient, from delta_K in the first delta buffer (see the module docstring)."""
    cdef const floating* values = <const floating*>s.values
    cdef floating* act = <floating*>s.act
    cdef floating* delta = <floating*>s.delta
    cdef floating* previous = delta + s.chunk * s.width
    cdef floating* swap
    cdef const floating* inputs
    cdef floating* bias
    cdef Py_ssize_t l, i, j, n_in, n_out
    for l in range(s.layers, 0, -1):
        n_in, n_out = s.sizes[l - 1], s.sizes[l]
        if l == 1 and s.sparse:
            csr_first_gradient(s, values, rows, first, count, delta, g + s.weight_at[1])
        else:
            if l == 1:
                inputs = dense_input(s, rows, first, count, False, values)
            else:
                inputs = act + s.act_at[l - 1]
            gemm(True, False, n_in, n_out, count, inputs, n_in, delta, n_out, 1, g + s.weight_at[l], n_out)
        for j in range(n_out):
            s.colsum[j] = 0.0
        for i in range(count):
            for j in range(n_out):
                s.colsum[j] += <double>delta[i * n_out + j]
        bias = g + s.bias_at[l]
        for j in range(n_out):
            bias[j] = <floating>(<double>bias[j] + s.colsum[j])
        if l > 1:
            gemm(False, True, count, n_in, n_out, delta, n_out, x + s.weight_at[l], n_out, 0, previous, n_in)
            times_derivative(s.activation, act + s.act_at[l - 1], previous, count * n_in)
            swap = delta
            delta = previous
            previous = swap


cdef double run(const Net* s, const floating* x, const int64_t* rows, Py_ssize_t count, double scale,
                floating* g, Py_ssize_t* correct) noexcept nogil:
    """Sum of the loss over ``count`` rows (rows NULL: rows 0 .. count - 1) in chunks; with g not
    NULL also g += scale * sum of the rows' gradients."""
    cdef double total = 0.0
    cdef Py_ssize_t first = 0, size
    cdef const floating* outputs = <const floating*>s.act + s.act_at[s.layers]
    cdef floating* delta = <floating*>s.delta if g != NULL else NULL
    while first < count:
        size = min(s.chunk, count - first)
        forward(s, x, rows, first, size)
        total += head_pass(s.head, outputs, s.sizes[s.layers], <const floating*>s.labels, s.classes,
                           rows, first, size, scale, delta, correct)
        if g != NULL:
            backward(s, x, rows, first, size, g)
        first += size
    return total


cdef void scaled_copy(const floating* x, floating decay, floating* out, Py_ssize_t size) noexcept nogil:
    """out = decay * x in x's dtype (the regulariser's term, where the gradient sums then add)."""
    cdef Py_ssize_t j
    for j in range(size):
        out[j] = decay * x[j]


cdef void* address(object array, bint single, Py_ssize_t length, str what, bint writable) except NULL:
    """The data of a C-contiguous 1-D array of ``length`` float32 (single) or float64 entries."""
    cdef const float[::1] f
    cdef const double[::1] g
    if getattr(array, "dtype", None) != (np.float32 if single else np.float64) or array.ndim != 1:
        raise ValueError(f"{what} must be a 1-D {'float32' if single else 'float64'} array")
    if writable and not array.flags.writeable:
        raise ValueError(f"{what} must be writable")
    if array.shape[0] != length:
        raise ValueError(f"{what} must have {length} entries, got {array.shape[0]}")
    if length == 0:
        return <void*>1  # never read; NULL would mean an error
    if single:
        f = array
        return <void*>&f[0]
    g = array
    return <void*>&g[0]


cdef class NetworkKernel:
    """Loss and gradient passes of one network on one matrix, with work buffers allocated once.

    Built once by ``mpitrain.objectives.network.Network``, which checks and keeps every array:
    activation, head: values of ACTIVATIONS and HEADS; layout: int64 (4, K + 1) rows sizes,
    weight_at, bias_at, act_at (see Net); matrix: (data, indices, indptr) of a CSR matrix with int32
    indices, or (features,) C-contiguous (n, d); labels (n,) in the matrix's dtype; classes (n,)
    int32 or None (softmax needs it); act, delta, gathered (None for CSR): buffers in the matrix's
    dtype of at least chunk * sum s_l, 2 * chunk * max s_l and chunk * d entries; colsum float64
    (max s_l,). x and out of a call are 1-D of the matrix's dtype with n_params entries. Calls from
    several threads take turns (a lock): they share the buffers.
    """

    cdef Net s
    cdef bint single
    cdef readonly Py_ssize_t n_params
    cdef object arrays  # what the pointers in s point into
    cdef object lock  # one pass at a time: the passes share the work buffers (threads as ranks)

    def __init__(self, int activation, int head, layout, tuple matrix, labels, classes, Py_ssize_t chunk,
                 act, delta, gathered, colsum):
        cdef const int64_t[:, ::1] table = layout
        cdef const int32_t[::1] indices
        cdef const int32_t[::1] indptr
        cdef const int32_t[::1] class_view
        cdef Py_ssize_t layers = table.shape[1] - 1, l, total = 0, width = 0, n, d
        if activation not in ACTIVATIONS.values() or head not in HEADS.values():
            raise ValueError("activation and head must be values of ACTIVATIONS and HEADS")
        if table.shape[0] != 4 or layers < 1 or chunk < 1:
            raise ValueError("layout must have shape (4, K + 1), K >= 1, and chunk must be >= 1")
        self.single = np.dtype(labels.dtype) == np.float32
        self.s.activation, self.s.head, self.s.layers, self.s.chunk = activation, head, layers, chunk
        self.s.sizes, self.s.weight_at = &table[0, 0], &table[1, 0]
        self.s.bias_at, self.s.act_at = &table[2, 0], &table[3, 0]
        for l in range(1, layers + 1):
            total += table[0, l]
            width = max(width, table[0, l])
        self.s.width = width
        self.n_params = table[2, layers] + table[0, layers]
        d = table[0, 0]
        self.s.sparse = len(matrix) == 3
        if self.s.sparse:
            indices, indptr = matrix[1], matrix[2]
            n = indptr.shape[0] - 1
            if n < 0 or indptr[0] != 0 or indptr[n] != indices.shape[0]:
                raise ValueError("indptr must start at 0 and end at len(indices)")
            self.s.values = address(matrix[0], self.single, indices.shape[0], "data", False)
            self.s.indices = &indices[0] if indices.shape[0] > 0 else NULL
            self.s.indptr = &indptr[0]
            self.s.gathered = NULL
        else:
            if matrix[0].ndim != 2 or matrix[0].shape[1] != d or not matrix[0].flags.c_contiguous:
                raise ValueError(f"features must be a C-contiguous (n, {d}) array")
            n = matrix[0].shape[0]
            self.s.values = address(matrix[0].reshape(-1), self.single, n * d, "features", False)
            self.s.gathered = address(gathered, self.single, chunk * d, "gathered", True)
        self.s.n_rows = n
        self.s.labels = address(labels, self.single, n, "labels", False)
        self.s.classes = NULL
        if head == SOFTMAX:
            class_view = classes
            if class_view.shape[0] != n:
                raise ValueError(f"classes must have {n} entries")
            self.s.classes = &class_view[0] if n > 0 else NULL
        self.s.act = address(act, self.single, chunk * total, "act", True)
        self.s.delta = address(delta, self.single, 2 * chunk * width, "delta", True)
        self.s.colsum = <double*>address(colsum, False, width, "colsum", True)
        self.arrays = (layout, matrix, labels, classes, act, delta, gathered, colsum)
        self.lock = threading.Lock()

    cdef const int64_t* row_pointer(self, rows, Py_ssize_t* count) except? NULL:
        """rows' data and count (all n rows and NULL for None); IndexError for a row outside [0, n)."""
        cdef const int64_t[::1] view
        cdef Py_ssize_t i
        cdef bint ok = True
        if rows is None:
            count[0] = self.s.n_rows
            return NULL
        view = rows
        count[0] = view.shape[0]
        if count[0] == 0:
            return NULL
        with nogil:
            for i in range(count[0]):
                if view[i] < 0 or view[i] >= self.s.n_rows:
                    ok = False
                    break
        if not ok:
            raise IndexError(f"a row index is outside [0, {self.s.n_rows})")
        return &view[0]

    def loss_sum(self, x, rows=None):
        """(sum of the head's loss over rows (all rows if None), accumulated in double; the number of
        those rows predicted correctly (0 for the squared head))."""
        cdef Py_ssize_t count, correct = 0
        cdef const int64_t* rp = self.row_pointer(rows, &count)
        cdef const void* xp = address(x, self.single, self.n_params, "x", False)
        cdef double total
        with self.lock, nogil:
            if self.single:
                total = run(&self.s, <const float*>xp, rp, count, 1.0, <float*>NULL, &correct)
            else:
                total = run(&self.s, <const double*>xp, rp, count, 1.0, <double*>NULL, &correct)
        return total, correct

    def gradient(self, x, rows, double scale, double decay, out):
        """out = scale * sum over rows (all rows if None) of grad f_i(x) + decay * x; returns the loss
        sum of those rows (double). out must not be x."""
        cdef Py_ssize_t count, correct = 0
        cdef const int64_t* rp = self.row_pointer(rows, &count)
        cdef const void* xp = address(x, self.single, self.n_params, "x", False)
        cdef void* op = address(out, self.single, self.n_params, "out", True)
        cdef double total
        if xp == op:
            raise ValueError("out must not be x")
        with self.lock, nogil:
            if self.single:
                scaled_copy(<const float*>xp, <float>decay, <float*>op, self.n_params)
                total = run(&self.s, <const float*>xp, rp, count, scale, <float*>op, &correct)
            else:
                scaled_copy(<const double*>xp, decay, <double*>op, self.n_params)
                total = run(&self.s, <const double*>xp, rp, count, scale, <double*>op, &correct)
        return total
