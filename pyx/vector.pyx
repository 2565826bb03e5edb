# cython: language_level=3
"""Vector updates fused into one pass (float32 and float64 from one source, GIL released).

Each runs every step somewhere (the SGD update, a compressed exchange's weighted sum), so each
takes C-contiguous 1-D NumPy arrays directly (ndarray_args.pxi: no typed-memoryview set-up per
call) and anything else through its memoryview version (the ``_buffers`` functions below),
with the same arithmetic and the same errors. The GIL is released for long vectors only: at a
few hundred entries releasing it costs a sizeable part of the call.
"""
from cython cimport floating
from libc.string cimport memcpy

include "update_math.pxi"
include "ndarray_args.pxi"

# below this many entries the loops keep the GIL (a call of a few hundred ns; a GIL hand-off
# costs about 100 ns and lets another thread in only for that long)
NOGIL_MIN = 4096


def scaled_update(x, g, double alpha, double beta=1.0):
    """x <- beta * (x + alpha * g) in one pass over x and g; returns None.

    With beta = 1 this is the SGD step x -= eta g (alpha = -eta). With beta = w_k it also
    applies a rank's averaging weight, so the following Allreduce needs no pass of its own.
    The arithmetic (and so every bit) equals ``g *= -alpha; x -= g; x *= beta`` in NumPy.
    """
    cdef Py_ssize_t n = 0, ng = 0
    cdef int kind = vector_type(x, &n, True)
    if kind < 0 or vector_type(g, &ng, False) != kind or ng != n:
        _scaled_update_buffers(x, g, alpha, beta)  # the general path: its checks and errors
        return
    cdef void* xd = vector_data(x)
    cdef const void* gd = vector_data(g)
    if n >= NOGIL_MIN:
        with nogil:
            if kind == cnp.NPY_FLOAT:
                scaled_step(<float*>xd, <const float*>gd, -alpha, beta, n)
            else:
                scaled_step(<double*>xd, <const double*>gd, -alpha, beta, n)
    elif kind == cnp.NPY_FLOAT:
        scaled_step(<float*>xd, <const float*>gd, -alpha, beta, n)
    else:
        scaled_step(<double*>xd, <const double*>gd, -alpha, beta, n)


def _scaled_update_buffers(floating[::1] x, floating[::1] g, double alpha, double beta=1.0):
    """``scaled_update`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t n = x.shape[0]
    if g.shape[0] != n:
        raise ValueError(f"g has {g.shape[0]} entries, x has {n}")
    if n == 0:
        return
    with nogil:
        scaled_step(&x[0], &g[0], -alpha, beta, n)


def copy_and_update(floating[::1] x, floating[::1] g, const floating[::1] src, double alpha, double beta=1.0):
    """g <- src, then x <- beta * (x + alpha * g), in one pass over the three; returns None.

    Every bit equals ``g[:] = src; scaled_update(x, g, alpha, beta)``: a gradient that arrives in
    a buffer of its own (PyTorch's autograd) lands in g and steps x while it is read once.
    src must not overlap x or g.
    """
    cdef Py_ssize_t n = x.shape[0]
    if g.shape[0] != n or src.shape[0] != n:
        raise ValueError(f"x, g and src must have one length, got {n}, {g.shape[0]} and {src.shape[0]}")
    if n == 0:
        return
    with nogil:
        copied_step(&x[0], &g[0], &src[0], -alpha, beta, n)


ctypedef fused source_t:
    float
    double


cdef inline void weighted_sum(floating* out, const source_t* src, double weight, Py_ssize_t n) noexcept nogil:
    cdef floating w = <floating>weight
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = out[i] + (<floating>src[i]) * w


def add_weighted(out, src, double weight):
    """out <- out + w * src, with w = weight rounded to out's dtype and src converted to it,
    in one pass; returns None.

    Every bit equals NumPy's ``out += np.multiply(src, out.dtype.type(weight), dtype=out.dtype)``
    (a product rounded, then a sum rounded: no fused multiply-add). It adds one rank's decoded
    payload, weighted, into the mean of a compressed exchange
    (mpitrain.algorithms.compressed_exchange.average_payloads).
    """
    cdef Py_ssize_t n = 0, ns = 0
    cdef int kind = vector_type(out, &n, True)
    cdef int source = vector_type(src, &ns, False)
    if kind < 0 or source < 0 or ns != n or n >= NOGIL_MIN:
        _add_weighted_buffers(out, src, weight)  # the general path (and long vectors, without the GIL)
    elif kind == cnp.NPY_FLOAT:
        if source == cnp.NPY_FLOAT:
            weighted_sum(<float*>vector_data(out), <const float*>vector_data(src), weight, n)
        else:
            weighted_sum(<float*>vector_data(out), <const double*>vector_data(src), weight, n)
    elif source == cnp.NPY_FLOAT:
        weighted_sum(<double*>vector_data(out), <const float*>vector_data(src), weight, n)
    else:
        weighted_sum(<double*>vector_data(out), <const double*>vector_data(src), weight, n)


def _add_weighted_buffers(floating[::1] out, const source_t[::1] src, double weight):
    """``add_weighted`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t n = out.shape[0]
    if src.shape[0] != n:
        raise ValueError(f"src has {src.shape[0]} entries, out has {n}")
    if n == 0:
        return
    with nogil:
        weighted_sum(&out[0], &src[0], weight, n)


def scaled_copy(out, src, double weight):
    """out <- w * src, with w = weight rounded to the dtype of out and src (one dtype); returns
    None. Every bit equals NumPy's ``np.multiply(src, out.dtype.type(weight), out=out)``: a
    rank's weighted values before the Allreduce of a summable compressed exchange
    (mpitrain.algorithms.compressed_exchange.weighted_values)."""
    cdef Py_ssize_t n = 0, ns = 0, i
    cdef int kind = vector_type(out, &n, True)
    cdef float* of
    cdef const float* sf
    cdef double* od
    cdef const double* sd
    cdef float wf = <float>weight
    if kind < 0 or vector_type(src, &ns, False) != kind or ns != n:
        _scaled_copy_buffers(out, src, weight)
    elif kind == cnp.NPY_FLOAT:
        of, sf = <float*>vector_data(out), <const float*>vector_data(src)
        for i in range(n):
            of[i] = sf[i] * wf
    else:
        od, sd = <double*>vector_data(out), <const double*>vector_data(src)
        for i in range(n):
            od[i] = sd[i] * weight


def _scaled_copy_buffers(floating[::1] out, const floating[::1] src, double weight):
    """``scaled_copy`` for any buffers (typed memoryviews), the GIL released."""
    cdef Py_ssize_t n = out.shape[0], i
    cdef floating w = <floating>weight
    if src.shape[0] != n:
        raise ValueError(f"src has {src.shape[0]} entries, out has {n}")
    with nogil:
        for i in range(n):
            out[i] = src[i] * w



def cast_copy(out, src):
    """out <- src in out's dtype (float32 or float64 each; a float64 value rounded to the nearest
    float32, as C's conversion and NumPy's cast do); returns None. Every bit equals NumPy's
    ``out[...] = src`` for 1-D arrays of one length: a gradient put into a compressor's wire
    dtype (mpitrain.algorithms.feedback). Anything else (other arrays, overlapping memory,
    long vectors) goes to that NumPy assignment, its errors included."""
    cdef Py_ssize_t n = 0, ns = 0, i
    cdef int kind = vector_type(out, &n, True)
    cdef int source = vector_type(src, &ns, False)
    cdef char* o
    cdef const char* s
    if kind < 0 or source < 0 or ns != n or n >= NOGIL_MIN:
        out[...] = src
        return
    o, s = <char*>vector_data(out), <const char*>vector_data(src)
    if o < s + ns * (4 if source == cnp.NPY_FLOAT else 8) and s < o + n * (4 if kind == cnp.NPY_FLOAT else 8):
        out[...] = src  # the two overlap: NumPy buffers the copy
    elif kind == source:
        memcpy(o, s, n * (4 if kind == cnp.NPY_FLOAT else 8))
    elif kind == cnp.NPY_FLOAT:
        for i in range(n):
            (<float*>o)[i] = <float>(<const double*>s)[i]
    else:
        for i in range(n):
            (<double*>o)[i] = <double>(<const float*>s)[i]


def scaled_copy_from(out, payload, Py_ssize_t offset, double weight):
    """out <- w * values, where values are out's length of out's dtype stored in the bytes of
    ``payload`` (uint8) from ``offset`` to its end (any alignment), w = weight rounded to that
    dtype; returns None. The bits of ``scaled_copy(out, payload[offset:].view(out.dtype),
    weight)``, without the view: a rank's weighted values section before the Allreduce of a
    summable compressed exchange (mpitrain.algorithms.compressed_exchange). ValueError for
    anything else."""
    cdef Py_ssize_t n = 0, nbytes = 0, i
    cdef int kind = vector_type(out, &n, True)
    cdef const unsigned char* p = byte_data(payload, &nbytes, False)
    cdef float* of
    cdef double* od
    cdef float wf = <float>weight
    if kind < 0 or p == NULL or offset < 0 \
            or nbytes - offset != n * (4 if kind == cnp.NPY_FLOAT else 8):
        raise ValueError("scaled_copy_from takes a writable contiguous float32 or float64 out and a "
                         "uint8 payload whose bytes from offset to its end hold exactly len(out) values")
    if <const unsigned char*>vector_data(out) < p + nbytes and p < <const unsigned char*>vector_data(out) + (nbytes - offset):
        raise ValueError("scaled_copy_from: out overlaps the payload")
    if kind == cnp.NPY_FLOAT:
        of = <float*>vector_data(out)
        memcpy(of, p + offset, n * sizeof(float))
        for i in range(n):
            of[i] = of[i] * wf
    else:
        od = <double*>vector_data(out)
        memcpy(od, p + offset, n * sizeof(double))
        for i in range(n):
            od[i] = od[i] * weight
