"""Plain SGD steps in blocks: many steps in one call without the GIL.

:class:`SGDSteps` runs many plain SGD steps in one call (draw a mini-batch, gradient, update;
Local SGD's local steps, Stich 2019, Algorithm 1), with the gradient math of the linear models'
kernels (pyx/objectives.pyx; both include row_math.pxi) and the row stream of
``numpy.random.Generator.integers`` (``mpitrain._native.objectives.bounded_integers``; both
include row_draws.pxi), so a block of steps gives the iterates of the same steps taken one
Python call at a time, bit for bit. With ``average_gradients`` each step's gradient is also
summed over the ranks (an in-place MPI_Allreduce, called from C: synchronous SGD). With
``exchange_steps`` each step's gradient goes to a compressed exchange that takes the step
(compress, MPI_Allgather from C, decode, update: compressed SGD, mpitrain._native.compressed_steps).
"""
import numpy as np

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.pycapsule cimport PyCapsule_GetContext, PyCapsule_GetPointer, PyCapsule_IsValid
from cython cimport floating
from libc.limits cimport INT_MAX
from libc.stdint cimport UINT32_MAX, UINT64_MAX, int32_t, int64_t, uint32_t, uint64_t
from numpy.random cimport bitgen_t

include "row_math.pxi"
include "row_draws.pxi"
include "update_math.pxi"
include "monotonic_clock.pxi"
include "clip_math.pxi"


# buf[:count] <- its sum over the ranks, in place; 0, or an MPI error code (a "mpitrain.InPlaceSum"
# capsule's function: mpitrain._native.inplace_allreduce)
ctypedef int (*sum_in_place_t)(void* context, void* buf, Py_ssize_t count) noexcept nogil

# x <- the step that this rank's gradient grad and step size eta give at step ``step`` after an
# exchange over the ranks, seconds inside MPI added to *seconds; 0, an MPI error code, or a negative
# code of the exchange's own (a "mpitrain.StepExchange" capsule's function:
# mpitrain._native.compressed_steps)
ctypedef int (*step_exchange_t)(void* context, void* x, const void* grad, double eta, int64_t step,
                                double* seconds) noexcept nogil

ctypedef struct StepData:
    int kind  # a value of LOSS_KINDS
    bint sparse  # CSR rows (values, indices, indptr) or dense rows (values, row_stride)
    const void* values  # CSR data (nnz,) or the dense (n, d) matrix; the objective's dtype
    const int32_t* indices
    const int32_t* indptr
    Py_ssize_t row_stride  # dense: elements from one row to the next
    const void* labels  # (n,)
    void* x  # (d,) the parameters, updated in place
    void* grad  # (d,) receives each step's gradient (the last one stays)
    double* work  # (d,) double sums of a gradient
    int64_t* rows  # (b,) each step's mini-batch
    const double* step_sizes  # (capacity,) eta of the block's steps
    const double* output_weights  # (capacity,) w_t of the block's steps, or NULL: no weighted sum
    double* output_total  # (d,) sum_t w_t x_t, or NULL
    Py_ssize_t d
    Py_ssize_t batch  # b
    double scale  # weight / b (weight: 1, or the rank's weight n_k / N of average_gradients)
    double l2  # weight * l2
    bitgen_t* bitgen  # the sampler's generator
    uint64_t rng  # rows are uniform on [0, rng]: rng = n_rows - 1
    sum_in_place_t sum_in_place  # after each gradient, g <- sum over the ranks; NULL: no sum
    void* sum_context
    step_exchange_t exchange  # after each gradient, the exchange takes the step; NULL: x <- x - eta g
    void* exchange_context
    double clip  # lambda of clip_by_norm applied to each gradient before its use; 0: none
    double clip_eps  # the dtype's machine epsilon (clip_by_norm's shrink factor)


cdef void one_gradient(const StepData* s, const floating* values, const floating* labels, const floating* x,
                       floating* g) noexcept nogil:
    """g = s.scale sum_{i in rows} grad f_i(x) + s.l2 x on a fresh mini-batch (rows drawn into s.rows)."""
    draw_rows(s.bitgen, s.rng, s.batch, s.rows)
    if s.sparse:
        csr_slope_sum(s.kind, values, s.indices, s.indptr, labels, x, s.rows, s.batch, s.work, s.d)
    else:
        dense_slope_sum(s.kind, values, s.row_stride, labels, x, s.rows, s.batch, s.work, s.d)
    finish_gradient(s.work, s.scale, s.l2, x, g, s.d)


cdef enum:
    CLIP_REFUSED = -100  # a gradient whose norm is not finite, with clipping on (not an exchange's code)


cdef inline int clipped_gradient(const StepData* s, const floating* values, const floating* labels,
                                 const floating* x, floating* g, double* norm) noexcept nogil:
    """one_gradient, then clip_by_norm(g, clip, out=g) when the kernel clips (as the algorithms do
    before using g); 0, or CLIP_REFUSED with the gradient's norm in *norm."""
    one_gradient(s, values, labels, x, g)
    if s.clip > 0:
        norm[0] = clip_vector(g, g, s.d, s.clip, s.clip_eps)
        if not isfinite(norm[0]):
            return CLIP_REFUSED
    return 0


cdef int sgd_steps(const StepData* s, const floating* values, const floating* labels, floating* x,
                   floating* g, Py_ssize_t count, double beta, double* weight_sum,
                   double* sum_seconds, int64_t first, double* norm) noexcept nogil:
    """``count`` steps on s (see SGDSteps.run), the first one step ``first`` of the run: adds the
    block's output weights to weight_sum and the seconds inside the sums over the ranks to sum_seconds;
    returns 0, or the error code of a sum or exchange, or CLIP_REFUSED with the gradient's norm in
    *norm (the step that got it is not taken)."""
    cdef Py_ssize_t t, j
    cdef floating w
    cdef double started
    cdef int code
    for t in range(count):
        if s.output_weights != NULL:  # total += w_t x_t, as NumPy does it (the product in x's dtype)
            w = <floating>s.output_weights[t]
            for j in range(s.d):
                s.output_total[j] = s.output_total[j] + <double>(w * x[j])
            weight_sum[0] += s.output_weights[t]
        if clipped_gradient(s, values, labels, x, g, norm) != 0:
            return CLIP_REFUSED
        if s.exchange != NULL:  # (no output weights and beta = 1 here: exchange_steps and run check)
            code = s.exchange(s.exchange_context, <void*>x, <const void*>g, s.step_sizes[t], first + t,
                              sum_seconds)
            if code != 0:
                return code
            continue
        if s.sum_in_place != NULL:
            started = monotonic_seconds()
            code = s.sum_in_place(s.sum_context, <void*>g, s.d)
            sum_seconds[0] += monotonic_seconds() - started
            if code != 0:
                return code
        scaled_step(x, g, s.step_sizes[t], beta if t + 1 == count else 1.0, s.d)
    return 0


# the end of a step of an in-process group, once every member's exchange took the sender's half of
# it; 0 or a negative code of the exchange's own (a "mpitrain.StepExchangeGroupEnd" capsule's function:
# mpitrain._native.compressed_steps)
ctypedef int (*group_step_end_t)(void** contexts, Py_ssize_t size) noexcept nogil


cdef int group_steps(StepData** members, Py_ssize_t size, const floating* dtype_of, Py_ssize_t count,
                     int64_t first, group_step_end_t end, void** contexts, double* seconds, double* own,
                     double* norm, Py_ssize_t* failed) noexcept nogil:
    """``count`` compressed steps of every member (SGDStepsGroup.run): for each step, each member in
    rank order draws, takes its gradient (clipped), and its exchange the sender's half (its seconds
    added to own[r]); then ``end`` finishes the step for all (its seconds added to *seconds).
    Returns 0 or the first failure's code, its member in *failed."""
    cdef Py_ssize_t t, r
    cdef StepData* s
    cdef double mark = monotonic_seconds(), now
    cdef int code
    for t in range(count):
        for r in range(size):
            s = members[r]
            code = clipped_gradient(s, <const floating*>s.values, <const floating*>s.labels,
                                    <const floating*>s.x, <floating*>s.grad, norm)
            if code == 0:
                code = s.exchange(s.exchange_context, s.x, <const void*>s.grad, s.step_sizes[t], first + t,
                                  seconds)
            if code != 0:
                failed[0] = r
                return code
            now = monotonic_seconds()
            own[r] += now - mark
            mark = now
        code = end(contexts, size)
        now = monotonic_seconds()
        seconds[0] += now - mark
        mark = now
        if code != 0:
            failed[0] = 0
            return code
    return 0


cdef const void* vector_address(object array, bint single, Py_ssize_t length, str what) except NULL:
    """The data of a C-contiguous 1-D float32 (single) or float64 array of ``length`` entries."""
    cdef const float[::1] f
    cdef const double[::1] g
    cdef Py_ssize_t got
    try:
        if single:
            f = array
            got = f.shape[0]
        else:
            g = array
            got = g.shape[0]
    except (ValueError, TypeError, BufferError):
        raise ValueError(f"{what} must be a C-contiguous 1-D {'float32' if single else 'float64'} array") from None
    if got != length:
        raise ValueError(f"{what} must have {length} entries, got {got}")
    if length == 0:
        return <const void*>1  # never read; NULL would mean an error
    return <const void*>&f[0] if single else <const void*>&g[0]


cdef int check_writable(object array, str what) except -1:
    """Raise unless ``array`` (whose address vector_address took) may be written."""
    if not array.flags.writeable:
        raise ValueError(f"{what} must be writable")
    return 0


cdef class SGDSteps:
    """Plain SGD steps on an L2-regularised linear model, many in one call without the GIL.

    Step t of a block (Stich 2019, Algorithm 1, the local step; mpitrain.objectives.base):

        rows = b draws of Generator(bit_generator).integers(0, n_rows)    (the sampler's stream)
        g    = (1/b) sum_{i in rows} grad f_i(x) + l2 x                   (into grad, x's dtype)
        x   <- x - eta_t g,  and on the last step of a block  x <- beta (x - eta_t g)

    with the arithmetic of ``batch_gradient`` and ``mpitrain._native.vector.scaled_update``, so a
    block equals its steps taken one by one, bit for bit. ``average_gradients`` turns this into
    synchronous SGD (the gradient weighted and summed over the ranks before the update);
    ``clip_gradients`` clips each g to a ball first (clip_by_norm's bits). With
    ``output_weights`` and
    ``output_total`` (float64), each step first adds w_t x (the product in x's dtype, as NumPy's
    ``total += w * x``) to ``output_total``: Stich's weighted iterate sum.

    Built once (every array checked here; the kernel picked by dtype and layout): ``kind``, a
    value of LOSS_KINDS; ``matrix``, (data, indices, indptr) of a CSR matrix (int32 indices) or
    (features,), a C-contiguous (n, d) array; labels (n,); x and grad (d,) in the matrix's
    dtype (float32 or float64); work (d,) float64; rows (b,) int64, b >= 1, receiving each
    step's mini-batch; bit_generator, the sampler's numpy BitGenerator (its lock is held during
    a call); 1 <= n_rows <= n; step_sizes (capacity,) float64, filled by the caller before each
    call. The object keeps every array alive and writes into x, grad, work, rows and
    output_total.
    """

    cdef StepData s
    cdef bint single
    cdef readonly Py_ssize_t capacity  # the most steps one call takes: len(step_sizes)
    cdef readonly object step_sizes  # (capacity,) float64: eta of the next call's steps, filled by the caller
    cdef readonly object output_weights  # (capacity,) float64 w_t of the next call's steps, or None
    cdef readonly double sum_seconds  # seconds the last call spent in the sums over the ranks
    cdef double objective_l2
    cdef object arrays  # what the pointers in s point into
    cdef object allreduce  # what s.sum_context points into, or None
    cdef readonly object exchange  # what s.exchange_context points into, or None
    cdef object lock

    def __init__(self, int kind, tuple matrix, labels, double l2, x, grad, work, rows, bit_generator,
                 int64_t n_rows, step_sizes, output_weights=None, output_total=None):
        cdef const float[:, ::1] dense32
        cdef const double[:, ::1] dense64
        cdef const int32_t[::1] indices
        cdef const int32_t[::1] indptr
        cdef int64_t[::1] row_view
        cdef Py_ssize_t n, d
        if kind not in LOSS_KINDS.values():
            raise ValueError(f"kind must be one of {sorted(LOSS_KINDS.values())}, got {kind}")
        if len(matrix) not in (1, 3):
            raise ValueError("matrix must be (data, indices, indptr) or (features,)")
        dtype = np.dtype(getattr(x, "dtype", None))
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"x must be float32 or float64, got {dtype}")
        self.single = dtype == np.float32
        self.s.kind = kind
        self.s.sparse = len(matrix) == 3
        d = len(x)
        if self.s.sparse:
            indices, indptr = matrix[1], matrix[2]
            n = indptr.shape[0] - 1
            if n < 0 or indptr[0] != 0 or indptr[n] != indices.shape[0]:
                raise ValueError("indptr must start at 0 and end at len(indices)")
            self.s.values = vector_address(matrix[0], self.single, indices.shape[0], "data")
            self.s.indices = &indices[0] if indices.shape[0] > 0 else NULL
            self.s.indptr = &indptr[0]
            self.s.row_stride = 0
        else:
            if getattr(matrix[0], "dtype", None) != dtype:
                raise ValueError(f"features must be {dtype}")
            if self.single:
                dense32 = matrix[0]
                n, d_features = dense32.shape[0], dense32.shape[1]
                self.s.values, self.s.row_stride = &dense32[0, 0], dense32.strides[0] // sizeof(float)
            else:
                dense64 = matrix[0]
                n, d_features = dense64.shape[0], dense64.shape[1]
                self.s.values, self.s.row_stride = &dense64[0, 0], dense64.strides[0] // sizeof(double)
            if d_features != d:
                raise ValueError(f"x must have {d_features} entries (the features' columns), got {d}")
        if d == 0:
            raise ValueError("x must not be empty")
        if not 1 <= n_rows <= n:
            raise ValueError(f"n_rows must be in [1, {n}] (the matrix's rows), got {n_rows}")
        self.s.labels = vector_address(labels, self.single, n, "labels")
        self.s.x = <void*>vector_address(x, self.single, d, "x")
        self.s.grad = <void*>vector_address(grad, self.single, d, "grad")
        self.s.work = <double*>vector_address(work, False, d, "work")
        for array, what in ((x, "x"), (grad, "grad"), (work, "work")):
            check_writable(array, what)
        row_view = rows
        if row_view.shape[0] < 1:
            raise ValueError("rows must hold the batch: at least one entry")
        self.s.rows = &row_view[0]
        self.s.batch = row_view.shape[0]
        self.capacity = len(step_sizes)
        self.s.step_sizes = <const double*>vector_address(step_sizes, False, self.capacity, "step_sizes")
        if (output_weights is None) != (output_total is None):
            raise ValueError("pass both output_weights and output_total, or neither")
        self.s.output_weights = NULL
        self.s.output_total = NULL
        if output_weights is not None:
            self.s.output_weights = <const double*>vector_address(output_weights, False, self.capacity,
                                                                  "output_weights")
            self.s.output_total = <double*>vector_address(output_total, False, d, "output_total")
            check_writable(output_total, "output_total")
        self.s.d = d
        self.s.scale = 1.0 / self.s.batch
        self.s.l2 = self.objective_l2 = l2
        self.s.sum_in_place, self.s.sum_context, self.allreduce = NULL, NULL, None
        self.s.exchange, self.s.exchange_context, self.exchange = NULL, NULL, None
        self.s.bitgen = bitgen_of(bit_generator)
        self.s.rng = <uint64_t>(n_rows - 1)
        self.lock = bit_generator.lock
        self.step_sizes, self.output_weights = step_sizes, output_weights
        self.arrays = (matrix, labels, x, grad, work, rows, bit_generator, bit_generator.capsule, step_sizes,
                       output_weights, output_total)

    @property
    def dtype(self):
        """numpy dtype of x and grad: float32 or float64."""
        return np.dtype(np.float32 if self.single else np.float64)

    def average_gradients(self, double weight, allreduce=None):
        """Synchronous SGD from the next call on: each step's gradient is ``weight`` times the
        mini-batch gradient (the arithmetic of ``batch_gradient(..., weight=weight)``: scale
        weight / b, regulariser weight * l2), then summed over the ranks in place by ``allreduce``
        (an ``mpitrain._native.inplace_allreduce.InPlaceAllreduce`` of x's dtype; None: no sum, one
        rank) before the update, so x <- x - eta_t sum_k w_k g_k as mpitrain.algorithms.sync_sgd
        steps it. weight = 1 and no allreduce is plain SGD again; returns None."""
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        if self.exchange is not None:
            raise ValueError("this kernel takes compressed steps (exchange_steps); call exchange_steps(None) first")
        if allreduce is not None:
            capsule = getattr(allreduce, "capsule", None)
            if not PyCapsule_IsValid(capsule, b"mpitrain.InPlaceSum"):
                raise ValueError("allreduce must be an mpitrain._native.inplace_allreduce.InPlaceAllreduce")
            if allreduce.dtype != self.dtype:
                raise ValueError(f"allreduce sums {allreduce.dtype}; x is {self.dtype}")
            if self.s.d > INT_MAX:
                raise ValueError(f"x has {self.s.d} entries; MPI_Allreduce takes at most {INT_MAX}")
            self.s.sum_in_place = <sum_in_place_t>PyCapsule_GetPointer(capsule, b"mpitrain.InPlaceSum")
            self.s.sum_context = PyCapsule_GetContext(capsule)
        else:
            self.s.sum_in_place, self.s.sum_context = NULL, NULL
        self.allreduce = allreduce
        self.s.scale = weight / self.s.batch
        self.s.l2 = weight * self.objective_l2

    def exchange_steps(self, exchange=None):
        """Compressed SGD from the next call on: each step's plain mini-batch gradient (weight 1)
        goes to ``exchange``, which takes the step (an object with a ``capsule`` named
        "mpitrain.StepExchange" over x's dtype: mpitrain._native.compressed_steps.FeedbackExchange);
        the seconds it spends inside MPI are then in ``sum_seconds``. None: plain SGD again. Not with
        ``average_gradients``' sum nor with output weights; returns None."""
        if exchange is None:
            self.s.exchange, self.s.exchange_context, self.exchange = NULL, NULL, None
            return
        if self.allreduce is not None or self.s.scale != 1.0 / self.s.batch:
            raise ValueError("this kernel averages gradients (average_gradients); call average_gradients(1.0) first")
        if self.output_weights is not None:
            raise ValueError("a kernel with output weights cannot take compressed steps")
        capsule = getattr(exchange, "capsule", None)
        if not PyCapsule_IsValid(capsule, b"mpitrain.StepExchange"):
            raise ValueError("exchange must be an mpitrain._native.compressed_steps exchange")
        if exchange.model_dtype != self.dtype:
            raise ValueError(f"exchange steps {exchange.model_dtype} parameters; x is {self.dtype}")
        if exchange.d != self.s.d:
            raise ValueError(f"exchange is for d = {exchange.d}; x has {self.s.d} entries")
        self.s.exchange = <step_exchange_t>PyCapsule_GetPointer(capsule, b"mpitrain.StepExchange")
        self.s.exchange_context = PyCapsule_GetContext(capsule)
        self.exchange = exchange

    def clip_gradients(self, double max_norm):
        """From the next call on, clip each step's gradient to the ball of radius ``max_norm``
        before it is used (summed, exchanged or stepped with): clip_lambda(g) = min(1, lambda /
        ||g||) g, the C of mpitrain.clip (pyx/clip_math.pxi), so the bits of
        ``clip_by_norm(g, max_norm, out=g)``; a gradient whose norm is not finite raises its
        ValueError. 0 turns clipping off; returns None. (``gradient()`` does not clip.)"""
        if not (0.0 <= max_norm < float("inf")):
            raise ValueError(f"max_norm must be a finite number >= 0 (0: none), got {max_norm!r}")
        self.s.clip = max_norm
        self.s.clip_eps = float(np.finfo(self.dtype).eps)

    def gradient(self):
        """The gradient of one step without the update: a mini-batch drawn from the sampler's
        stream (the rows of ``sampler.draw()``), then ``grad`` = weight / b sum_{i in rows}
        grad f_i(x) + weight * l2 x (weight 1 unless ``average_gradients`` set it; no sum over the
        ranks), the arithmetic of ``batch_gradient(x, rows, grad, weight)``, bit for bit; x is
        unchanged. One call with no argument to check (compressed SGD's gradient). Returns None."""
        with self.lock, nogil:
            if self.single:
                one_gradient(&self.s, <const float*>self.s.values, <const float*>self.s.labels,
                             <const float*>self.s.x, <float*>self.s.grad)
            else:
                one_gradient(&self.s, <const double*>self.s.values, <const double*>self.s.labels,
                             <const double*>self.s.x, <double*>self.s.grad)

    def run(self, Py_ssize_t count, double beta=1.0, double weight_sum=0.0, int64_t first=0):
        """Take ``count`` steps (0 <= count <= capacity) with eta = step_sizes[:count] (and output
        weights output_weights[:count]); the last one is scaled by ``beta``. Returns weight_sum plus
        the block's output weights, added in order (weight_sum when there is no output); the
        seconds spent in the sums over the ranks are then in ``sum_seconds``. An MPI error in a sum
        raises mpi4py's MPI.Exception (the steps before it are taken); a failure of the exchange
        itself, the exception its ``failure`` gives. ``first``: the run's index of the block's first
        step (the exchange's per-step seeds; plain and averaged steps do not use it)."""
        cdef int code
        cdef double norm = 0.0
        if count < 0 or count > self.capacity:
            raise ValueError(f"count must be in [0, {self.capacity}], got {count}")
        if self.exchange is not None and beta != 1.0:
            raise ValueError("compressed steps (exchange_steps) take beta = 1")
        self.sum_seconds = 0.0
        with self.lock, nogil:
            if self.single:
                code = sgd_steps(&self.s, <const float*>self.s.values, <const float*>self.s.labels,
                                 <float*>self.s.x, <float*>self.s.grad, count, beta, &weight_sum, &self.sum_seconds,
                                 first, &norm)
            else:
                code = sgd_steps(&self.s, <const double*>self.s.values, <const double*>self.s.labels,
                                 <double*>self.s.x, <double*>self.s.grad, count, beta, &weight_sum,
                                 &self.sum_seconds, first, &norm)
        if code == CLIP_REFUSED:  # clip_by_norm's refusal, in its words
            raise ValueError(f"||g||_2 is {norm}: cannot clip a non-finite gradient")
        if code < 0:  # the exchange's own failure (not MPI's)
            raise self.exchange.failure(code)
        if code != 0:
            from mpi4py import MPI
            raise MPI.Exception(code)
        return weight_sum


cdef class SGDStepsGroup:
    """The compressed SGD steps of K ranks that share this process (mpitrain.comm.inprocess), all of
    them in one call without the GIL: K SGDSteps kernels, one per rank in rank order, each with a
    ``grouped`` exchange (mpitrain._native.compressed_steps.FeedbackExchange). Step t of a call:
    every rank in turn draws its mini-batch, takes its gradient (clipped when its kernel clips) and
    its sender's half (compensate, encode, the rule's memory); then the payloads are gathered, their
    weighted mean decoded once, and every rank descends. Every rank's iterates, memory and row
    stream are those of its kernel's ``run`` on an MPI communicator (the same payloads, decoded and
    added in the same order), and so those of compressed SGD stepped one Python call at a time on
    the in-process communicator, bit for bit (tests/test_grouped_steps.py).

    The kernels keep their own step sizes: each rank fills its kernel's ``step_sizes`` before a
    call, as for ``run``. The group holds the kernels; an exchange rebound since it was made
    (``exchange_steps``) is refused at the next call.
    """

    cdef StepData** members
    cdef void** contexts
    cdef double* own  # each member's seconds in the last call: its draws, gradients and sender halves
    cdef group_step_end_t end
    cdef bint single
    cdef readonly tuple kernels
    cdef readonly Py_ssize_t size, capacity  # ranks; the most steps one call takes
    cdef readonly double sum_seconds  # seconds the last call spent gathering, averaging and descending
    cdef tuple locks

    def __cinit__(self):
        self.members, self.contexts, self.own = NULL, NULL, NULL

    def __dealloc__(self):
        PyMem_Free(self.members)
        PyMem_Free(self.contexts)
        PyMem_Free(self.own)

    def __init__(self, kernels):
        cdef SGDSteps kernel, head
        cdef Py_ssize_t i
        kernels = tuple(kernels)
        if len(kernels) < 2 or any(type(k) is not SGDSteps for k in kernels):
            raise ValueError("a group takes two or more SGDSteps kernels, one per rank")
        locks = {id((<SGDSteps>k).lock) for k in kernels}
        if len({id(k) for k in kernels}) != len(kernels) or len(locks) != len(kernels):
            raise ValueError("the kernels of a group must be distinct, each with a sampler of its own")
        head = kernels[0]
        lead = head.exchange
        for i, k in enumerate(kernels):
            kernel = k
            exchange = kernel.exchange
            if exchange is None or not getattr(exchange, "grouped", False):
                raise ValueError(f"kernel {i} has no grouped exchange (exchange_steps with a grouped exchange)")
            if kernel.single != head.single or exchange.size != len(kernels) or any(
                    getattr(exchange, name) != getattr(lead, name)
                    for name in ("d", "k", "payload_nbytes", "feedback", "wire_dtype", "model_dtype")):
                raise ValueError(f"kernel {i}'s exchange differs from kernel 0's (d, k, payload, rule, "
                                 f"dtypes) or is not for {len(kernels)} ranks")
        capsule = lead.group_capsule
        if not PyCapsule_IsValid(capsule, b"mpitrain.StepExchangeGroupEnd"):
            raise ValueError("the exchanges have no group end")
        self.end = <group_step_end_t>PyCapsule_GetPointer(capsule, b"mpitrain.StepExchangeGroupEnd")
        self.size = len(kernels)
        self.members = <StepData**>PyMem_Malloc(self.size * sizeof(StepData*))
        self.contexts = <void**>PyMem_Malloc(self.size * sizeof(void*))
        self.own = <double*>PyMem_Malloc(self.size * sizeof(double))
        if self.members == NULL or self.contexts == NULL or self.own == NULL:
            raise MemoryError()
        for i in range(self.size):
            kernel = kernels[i]
            self.members[i] = &kernel.s
            self.contexts[i] = kernel.s.exchange_context
        self.single = head.single
        self.kernels = kernels
        self.capacity = min((<SGDSteps>k).capacity for k in kernels)
        self.locks = tuple((<SGDSteps>k).lock for k in kernels)

    def run(self, Py_ssize_t count, int64_t first=0):
        """Take ``count`` steps (0 <= count <= capacity) of every rank, step i with eta = its kernel's
        step_sizes[i]; ``first``: the run's index of the first step (the exchanges' seeds). The
        seconds spent ending the steps (gather, mean, descents) are then in ``sum_seconds``, and each
        rank's own part in ``member_seconds``. A
        failure raises what the failing rank's kernel raises from ``run`` (the steps before it are
        taken; the failing step is then half taken on some ranks, as when an MPI job fails)."""
        cdef Py_ssize_t i, failed = 0
        cdef int code = 0
        cdef double norm = 0.0
        cdef SGDSteps kernel
        if count < 0 or count > self.capacity:
            raise ValueError(f"count must be in [0, {self.capacity}], got {count}")
        for i in range(self.size):
            kernel = self.kernels[i]
            if kernel.s.exchange == NULL or kernel.s.exchange_context != self.contexts[i]:
                raise ValueError(f"kernel {i}'s exchange changed since the group was made")
        self.sum_seconds = 0.0
        for i in range(self.size):
            self.own[i] = 0.0
        held = []
        try:
            for lock in self.locks:
                lock.acquire()
                held.append(lock)
            with nogil:
                if self.single:
                    code = group_steps(self.members, self.size, <const float*>NULL, count, first, self.end,
                                       self.contexts, &self.sum_seconds, self.own, &norm, &failed)
                else:
                    code = group_steps(self.members, self.size, <const double*>NULL, count, first, self.end,
                                       self.contexts, &self.sum_seconds, self.own, &norm, &failed)
        finally:
            for lock in held:
                lock.release()
        if code == CLIP_REFUSED:  # clip_by_norm's refusal, in its words
            raise ValueError(f"||g||_2 is {norm}: cannot clip a non-finite gradient")
        if code != 0:
            raise (<SGDSteps>self.kernels[failed]).exchange.failure(code)

    @property
    def member_seconds(self) -> tuple:
        """Each rank's seconds in the last call, in rank order: its draws, gradients and sender
        halves (what it computed; the rest of the call, ``sum_seconds``, ended the steps)."""
        return tuple(self.own[i] for i in range(self.size))
