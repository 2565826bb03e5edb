"""Compressed SGD's exchange in C: a compressor with a feedback rule, one step at a time without the GIL.

Beznosikov, Horvath, Richtarik, Safaryan 2020 (docs/papers.md s.2), for worker k with gradient g_k
(p and every feedback memory in the wire dtype: g cast to it, gamma rounded to it):

    none:  p_k = g_k;              x <- x - gamma_t sum_k w_k C(p_k)
    ef:    p_k = e_k + gamma_t g_k;  e_k <- p_k - C(p_k);  x <- x - sum_k w_k C(p_k)
    ef21:  p_k = g_k - h_k;        h_k <- h_k + C(p_k);  h <- h + sum_k w_k C(p_k);  x <- x - gamma_t h
           (Richtarik, Sokolov, Fatkhullin 2021, arXiv 2106.05203, Algorithm 1; h in the model dtype)

(g_k clipped before the exchange gets it when the kernel clips: ``SGDSteps.clip_gradients``), with C
one of (``kind``):

- ``top_k``: Top-k (k values then k packed indices), or Top-k followed by an unbiased quantiser of
  its k values (``mpitrain.compress.Composition``, Beznosikov et al.'s new compressor, e.g. Top-k +
  natural dithering: the quantiser's payload of the k values, then the packed indices; decoded
  values scaled by 1/(1 + omega); its seed derive_seed(derive_seed(derive_seed(s, t), rank), 1), s
  the sender's base seed, t the step); the quantiser a dithering (standard or natural) or natural
  compression (or biased rounding);
- ``dithering``, ``natural``: that quantiser of all d entries (seed derive_seed(derive_seed(s, t), rank));
- ``scaled_sign`` ((||p||_1 / d) sign(p): the scale, then d sign bits) and ``ternary`` (||p||_inf,
  then d 2-bit codes, at this rank's seed);
- ``identity`` and ``rand_k`` (scaled by d/k or not; its subset drawn from derive_seed(s, t), a
  seed every rank shares: the C of pyx/randk_payload.pxi, included here and by compress_select.pyx),
  the summable ones: the mean is the decode of sum_k w_k values_k, each rank's values times its
  weight in the wire dtype, summed over the ranks (``CompressedAverager.average``'s Allreduce);
- any of them run as C / (1 + omega) (``ContractiveScaling``, an unbiased C under error feedback):
  each decoded vector times that scale in the wire dtype.

The ditherings', natural compression's, scaled sign's and ternary's payloads are written and read
by compress_round's own kernels, taken as capsules from ``compress_round.C_KERNELS``; a value a
compressor refuses (Rand-k's d/k overflow, natural compression's input range, a dithering norm
the header cannot hold) stops the block with that compressor's own error, in its words.
Every rank decodes all K payloads in rank order (or the summed values once).
:class:`FeedbackExchange` takes that step for one rank: it is the step hook of
``mpitrain._native.sgd_steps.SGDSteps.exchange_steps``, so a block of compressed SGD steps (draw,
gradient, compensate, encode, MPI_Allgather called from C, decode-sum, update) runs in one call.
Every operation is the one mpitrain.algorithms.compressed_sgd takes one Python call at a time, on
the same bytes in the same order: the rules' ``compensate``, ``update`` and ``descend``
(mpitrain.algorithms.feedback; EF's ``add_weighted`` into a copy of e), the compressors' ``encode`` /
``decode`` (the same C: TopK's of pyx/topk_payload.pxi, RandK's of pyx/randk_payload.pxi with its
range check, compress_round's for the others) and ``average_payloads``
(zeros, then ``add_weighted`` of each rank's decoded payload with its weight), so the iterates
equal the step-by-step path's bit for bit (tests/test_compressed_steps_fused.py, on one rank and
under mpiexec). MPI_Allgather moves the same bytes as the Allgatherv of mpitrain.comm.payloads (all
payloads have one length); a summable exchange's in-place MPI_Allreduce of the weighted values is
the call mpi4py makes for it (mpitrain._native.inplace_allreduce, as synchronous SGD's steps call it).

In-process groups (``grouped``): K ranks of one process (mpitrain.comm.inprocess, the experiments)
step together in one call of ``mpitrain._native.sgd_steps.SGDStepsGroup``: each step, every rank's
sender half (compensate, encode, memory: ``feedback_encode``), then :func:`group_step_end` gathers the
payloads, decodes their mean once (every rank would compute the same bits) and takes every rank's
descent (tests/test_grouped_steps.py).

For the small vectors where the per-step Python is most of a step's time: k <= SMALL_K (64) for
Top-k, levels <= 255 for a dithering, and d <= SORT_MAX_D (1024); larger problems keep the
step-by-step path.
"""
from cpython.pycapsule cimport PyCapsule_GetContext, PyCapsule_New, PyCapsule_SetContext
from cython cimport floating
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.limits cimport INT_MAX
from libc.math cimport fabs, isinf
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t, uintptr_t

import numpy as np

include "compress_common.pxi"
include "topk_payload.pxi"
include "randk_payload.pxi"
include "update_math.pxi"
include "mpi_handles.pxi"
include "monotonic_clock.pxi"

#: the largest d and k the exchange takes (compress_select: ``SORT_MAX_D``, ``SMALL_K``)
MAX_D = SMALL_D  # 1024
MAX_K = SMALL_K

# MPI_Allgather(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, comm) with int handles
# (MPICH's ABI) and with pointer handles (Open MPI, the MPI 5 ABI)
ctypedef int (*allgather_int_handles)(const void*, int, int, void*, int, int, int) noexcept nogil
ctypedef int (*allgather_pointer_handles)(const void*, int, void*, void*, int, void*, void*) noexcept nogil
# buf[:count] <- its sum over the ranks, in place; 0 or an MPI error code (a "mpitrain.InPlaceSum"
# capsule's function: mpitrain._native.inplace_allreduce, as sync SGD's steps call it)
ctypedef int (*sum_in_place_t)(void* context, void* buf, Py_ssize_t count) noexcept nogil

cdef enum:
    RULE_NONE = 0
    RULE_EF = 1
    RULE_EF21 = 2

cdef enum:
    KIND_TOP_K = 0  # Top-k, or Top-k then a quantiser (``composed``)
    KIND_IDENTITY = 1  # the values themselves (summable)
    KIND_RAND_K = 2  # Rand-k on a subset drawn from a seed every rank shares (summable)
    KIND_SCALED_SIGN = 3  # (||p||_1 / d) sign(p): the scale, then d sign bits
    KIND_DITHERING = 4  # standard or natural dithering of all d entries (``quantiser``)
    KIND_NATURAL = 5  # natural compression or biased rounding of all d entries (``quantiser``)
    KIND_TERNARY = 6  # ||p||_inf, then d 2-bit codes
    Q_DITHER = 0  # the kind of ``quantiser``: a dithering
    Q_NATURAL = 1  # natural compression (random) or biased rounding (deterministic)
    NATURAL_REFUSED = -4  # outside natural compression's input range (NaturalCompression.check_range)
    RANGE_REFUSED = -3  # a kept finite value times Rand-k's d/k overflows (RandK.check_range)
    BITMAP_WORDS = 16  # words of a Rand-k subset's bitmap, d <= MAX_D = 1024 (checked below)

#: the rules' names (mpitrain.algorithms.feedback.FEEDBACKS) and their numbers here
RULES = {"none": RULE_NONE, "ef": RULE_EF, "ef21": RULE_EF21}
assert 64 * BITMAP_WORDS >= MAX_D
#: the compressors an exchange takes
KINDS = {"top_k": KIND_TOP_K, "identity": KIND_IDENTITY, "rand_k": KIND_RAND_K, "scaled_sign": KIND_SCALED_SIGN,
         "dithering": KIND_DITHERING, "natural": KIND_NATURAL, "ternary": KIND_TERNARY}

# compress_round's kernels for C callers (its C_KERNELS capsules)
include "round_kernel_types.pxi"

ctypedef struct Quantiser:  # the unbiased quantiser: after Top-k in a composition, or of all d entries
    int levels  # (dithering) s
    Py_ssize_t bucket, buckets  # (dithering) entries a norm, norms
    bint natural  # (dithering) natural levels
    double p  # (dithering) the norm's p
    double scale  # in a composition: 1 / (1 + omega), a value of the wire dtype
    Py_ssize_t head  # payload bytes of the quantiser's part (norms, then codes; or codes)
    uint64_t base  # the sender's base seed
    uint64_t rank
    void* pack
    void* unpack
    int kind  # Q_DITHER or Q_NATURAL
    bint deterministic  # (natural) biased rounding
    double top, tiny  # (natural) the input range: NaturalCompression.input_range()

ctypedef struct ExchangeData:
    int rule  # RULE_NONE, RULE_EF or RULE_EF21
    int kind  # KIND_TOP_K, KIND_IDENTITY or KIND_RAND_K
    bint composed  # Top-k then a quantiser (``quantiser``), else Top-k alone
    bint summable  # identity, Rand-k: the mean is decode(sum_k w_k values_k), an Allreduce of the values
    Py_ssize_t values_offset, nvalues  # a summable payload's values: where they start, how many
    double randk_scale  # Rand-k's d/k (scaled) or 1, a value of the wire dtype
    bint randk_checked  # scaled with k < d: encode refuses a kept value that d/k overflows
    uint64_t seed_base  # the sender's base seed (Rand-k's subset at step t: derive_seed(base, t))
    void* summed  # (d,) wire dtype scratch: the summed values of a summable exchange
    void* sum_in_place  # a summable exchange over MPI: InPlaceAllreduce's function and context
    void* sum_context
    Py_ssize_t rank  # this rank (its weight in weights)
    bint post_scaled  # decoded values times post_scale (ContractiveScaling: 1 / (1 + omega), wire dtype)
    double post_scale
    void* head_pack  # scaled sign, ternary: compress_round's pack and unpack for the wire dtype
    void* head_unpack
    bint refused_subnormal  # after NATURAL_REFUSED: the subnormal flag (the largest |value| in refused_max)
    Quantiser quantiser
    Py_ssize_t d, k, nbytes, size  # size: ranks (1: no MPI call)
    int bits  # bits of a packed index
    bint wire_single, model_single  # float32 (else float64) on the wire / in the model
    void* error  # (d,) wire dtype, updated in place: e_k (ef), h_k (ef21), unused (none)
    void* average  # (d,) h, model dtype, updated in place (ef21), else NULL
    void* compensated  # (d,) p_k, wire dtype
    void* decoded  # (d,) wire dtype scratch
    void* mean  # (d,) sum_k w_k v_k, model dtype (the averager's array)
    uint8_t* payload  # (nbytes,) this rank's
    uint8_t* gathered  # (size * nbytes,) every rank's, in rank order
    const double* weights  # (size,) w_k
    void* allgather  # the library's MPI_Allgather, or NULL (one rank)
    MPIHandles h  # the communicator and MPI_BYTE
    Py_ssize_t refused_bucket  # after -2: the bucket whose norm overflowed, and its max |value|
    double refused_max
    bint grouped  # a member of an in-process group: the steps end in group_step_end
    void* pending_x  # (grouped) x and eta of the step under way, for group_step_end
    double pending_eta


cdef int allgather_payloads(ExchangeData* e) noexcept nogil:
    """Every rank's payload into e.gathered, in rank order; 0 or the MPI error code."""
    cdef int n = <int>e.nbytes
    if e.h.int_handles:
        return (<allgather_int_handles>e.allgather)(e.payload, n, e.h.datatype_int, e.gathered, n,
                                                    e.h.datatype_int, e.h.comm_int)
    return (<allgather_pointer_handles>e.allgather)(e.payload, n, e.h.datatype_pointer, e.gathered, n,
                                                    e.h.datatype_pointer, e.h.comm_pointer)


cdef int dither_into(ExchangeData* e, const real_t* values, Py_ssize_t n, uint64_t seed) noexcept nogil:
    """The dithering payload of values[0:n] (its norms, then its codes) at the start of e.payload,
    compress_round's own dither_pack; 0, or -2 when a bucket of finite values has an infinite norm
    (the header cannot hold it: Dithering._check_norms), its index and largest |value| kept."""
    cdef Quantiser* c = &e.quantiser
    cdef real_t* norms = <real_t*>e.payload  # the payload buffer is 16-byte aligned (NumPy)
    cdef Py_ssize_t i, j, lo, hi, cut = c.buckets * <Py_ssize_t>sizeof(real_t)
    cdef bint finite
    if real_t is float:
        (<dither_pack32_t>c.pack)(values, n, seed, c.levels, c.bucket, c.natural, c.p, norms, e.payload + cut,
                                  c.head - cut)
    else:
        (<dither_pack64_t>c.pack)(values, n, seed, c.levels, c.bucket, c.natural, c.p, norms, e.payload + cut,
                                  c.head - cut)
    for j in range(c.buckets):
        if isinf(norms[j]):
            lo, hi = j * c.bucket, min((j + 1) * c.bucket, n)
            finite = True
            for i in range(lo, hi):
                finite = finite and not (isinf(values[i]) or values[i] != values[i])
            if finite:
                e.refused_bucket, e.refused_max = j, 0.0
                for i in range(lo, hi):
                    e.refused_max = max(e.refused_max, fabs(<double>values[i]))
                return -2
    return 0


cdef void undither(ExchangeData* e, const uint8_t* payload, Py_ssize_t n, real_t* values) noexcept nogil:
    """values[0:n] from a dithering payload at ``payload`` (its norms, then its codes), compress_round's
    own dither_unpack."""
    cdef Quantiser* c = &e.quantiser
    cdef real_t norms[SMALL_D]  # an aligned copy (a gathered payload may start anywhere)
    cdef Py_ssize_t cut = c.buckets * <Py_ssize_t>sizeof(real_t)
    memcpy(norms, payload, cut)
    if real_t is float:
        (<dither_unpack32_t>c.unpack)(payload + cut, c.head - cut, c.levels, c.bucket, c.natural, norms, values, n)
    else:
        (<dither_unpack64_t>c.unpack)(payload + cut, c.head - cut, c.levels, c.bucket, c.natural, norms, values, n)


cdef int natural_into(ExchangeData* e, const real_t* values, Py_ssize_t n, uint64_t seed) noexcept nogil:
    """NaturalCompression.encode of values[0:n] at the start of e.payload, compress_round's own
    natural_pack; 0, or NATURAL_REFUSED outside the input range (check_range's test, its two numbers
    kept for its message)."""
    cdef Quantiser* c = &e.quantiser
    cdef double largest = 0.0
    cdef bint subnormal = False
    if real_t is float:
        (<natural_pack32_t>c.pack)(values, n, seed, c.deterministic, e.payload, c.head, &largest, &subnormal)
    else:
        (<natural_pack64_t>c.pack)(values, n, seed, c.deterministic, e.payload, c.head, &largest, &subnormal)
    if (largest >= c.top if c.deterministic else largest > c.top) or (subnormal and largest < c.tiny):
        e.refused_max, e.refused_subnormal = largest, subnormal
        return NATURAL_REFUSED
    return 0


cdef inline int quantise_into(ExchangeData* e, const real_t* values, Py_ssize_t n, uint64_t seed) noexcept nogil:
    """The unbiased quantiser's payload of values[0:n] at the start of e.payload; 0 or its refusal."""
    if e.quantiser.kind == Q_NATURAL:
        return natural_into(e, values, n, seed)
    return dither_into(e, values, n, seed)


cdef inline void unquantise(ExchangeData* e, const uint8_t* payload, Py_ssize_t n, real_t* values) noexcept nogil:
    """values[0:n] from the unbiased quantiser's payload at ``payload``."""
    if e.quantiser.kind == Q_NATURAL:
        if real_t is float:
            (<natural_unpack32_t>e.quantiser.unpack)(payload, e.quantiser.head, values, n)
        else:
            (<natural_unpack64_t>e.quantiser.unpack)(payload, e.quantiser.head, values, n)
        return
    undither(e, payload, n, values)


cdef int composed_encode(ExchangeData* e, const real_t* p, int64_t step) noexcept nogil:
    """Composition.encode of p into e.payload at step ``step``; 0, or the quantiser's refusal."""
    cdef Quantiser* c = &e.quantiser
    cdef uint64_t keys[2 * SMALL_D]
    cdef int64_t idx[SMALL_K + 1]
    cdef real_t values[SMALL_K]
    cdef Py_ssize_t i, k = e.k
    cdef uint64_t seed = mpt_derive_seed(mpt_derive_seed(mpt_derive_seed(c.base, <uint64_t>step), c.rank), 1)
    cdef int code
    if real_t is float:
        topk_small(<const uint32_t*>p, e.d, k, 0x7FFFFFFFULL, idx, <uint32_t*>keys)
    else:
        topk_small(<const uint64_t*>p, e.d, k, 0x7FFFFFFFFFFFFFFFULL, idx, keys)
    for i in range(k):
        values[i] = p[idx[i]]
    code = quantise_into(e, values, k, seed)
    if code != 0:
        return code
    pack_indices(idx, k, e.bits, e.payload + c.head)  # the support: TopK.write_support
    return 0


cdef int composed_decode(ExchangeData* e, const uint8_t* payload, real_t* out) noexcept nogil:
    """out = Composition.decode(payload): zeros, and at the payload's indices its quantised values
    times the scale; 0, or -1 for an index >= d."""
    cdef Quantiser* c = &e.quantiser
    cdef int64_t idx[SMALL_K]
    cdef real_t values[SMALL_K]
    cdef real_t scale = <real_t>c.scale
    cdef Py_ssize_t i, k = e.k
    cdef mpt_reader r
    mpt_reader_init(&r, payload + c.head, e.nbytes - c.head)
    for i in range(k):
        idx[i] = <int64_t>mpt_get(&r, e.bits)
        if idx[i] >= e.d:
            return -1
    unquantise(e, payload, k, values)
    memset(out, 0, e.d * sizeof(real_t))
    for i in range(k):
        out[idx[i]] = values[i] * scale
    return 0


cdef int randk_range(ExchangeData* e, const uint8_t* payload, const real_t* dtype_of) noexcept nogil:
    """RandK.check_range's test of a payload's kept values: 0, or RANGE_REFUSED when the largest
    kept finite |value| times d/k overflows the wire dtype (a NaN among them: no refusal, as NumPy's
    max and min propagate it). The error is RandK.check_range's own (FeedbackExchange.failure)."""
    cdef real_t v, hi = 0, lo = 0, big, finite = 0, scale = <real_t>e.randk_scale
    cdef Py_ssize_t i
    cdef bint seen_finite = False
    for i in range(e.k):
        memcpy(&v, payload + 8 + i * sizeof(real_t), sizeof(real_t))
        if v != v:
            return 0
        if i == 0 or v > hi:
            hi = v
        if i == 0 or v < lo:
            lo = v
        if not isinf(v):
            if not seen_finite or fabs(v) > finite:
                finite = <real_t>fabs(v)
            seen_finite = True
    big = hi if hi > -lo else -lo
    if not isinf(big * scale):
        return 0
    if isinf(big):  # a kept inf: the finite ones decide
        if not seen_finite:
            return 0
        big = finite
        if not isinf(big * scale):
            return 0
    return RANGE_REFUSED


cdef int randk_encode_step(ExchangeData* e, const real_t* p, int64_t step) noexcept nogil:
    """RandK.encode(p, derive_seed(base, step)) into e.payload (its range check included)."""
    cdef uint64_t bm[BITMAP_WORDS]
    cdef uint64_t s = mpt_derive_seed(e.seed_base, <uint64_t>step)
    cdef double top, bottom
    memset(bm, 0, ((e.d + 63) // 64) * sizeof(uint64_t))
    randk_bitmap(s, e.d, e.k, bm)
    randk_gather(p, e.d, e.k, s, bm, e.payload, &top, &bottom)
    if e.randk_checked:
        return randk_range(e, e.payload, p)
    return 0


cdef void randk_decode_into(ExchangeData* e, const uint8_t* payload, real_t* out) noexcept nogil:
    """out = RandK.decode(payload): zeros, and value_j times d/k (or 1) at the subset of its seed."""
    cdef uint64_t bm[BITMAP_WORDS]
    cdef uint64_t s
    memcpy(&s, payload, 8)
    memset(bm, 0, ((e.d + 63) // 64) * sizeof(uint64_t))
    randk_bitmap(s, e.d, e.k, bm)
    randk_scatter(payload, e.k, e.randk_scale, bm, out, e.d)


cdef void sign_encode_into(ExchangeData* e, const real_t* p) noexcept nogil:
    """ScaledSign.encode(p) into e.payload: the scale ||p||_1 / d in the wire dtype, then the sign bits
    (compress_round.sign_encode_payload's bytes, from its sign_pack)."""
    cdef real_t scale
    if real_t is float:
        scale = <float>(<sign_pack32_t>e.head_pack)(p, e.d, e.payload + sizeof(float))
    else:
        scale = (<sign_pack64_t>e.head_pack)(p, e.d, e.payload + sizeof(double))
    memcpy(e.payload, &scale, sizeof(real_t))


cdef void headed_decode_into(ExchangeData* e, const uint8_t* payload, real_t* out) noexcept nogil:
    """out = ScaledSign.decode or Ternary.decode of payload: the scale read from the header, then the
    codes unpacked with it (-scale or scale; 0, scale or -scale). sign_unpack and ternary_unpack
    have one signature."""
    cdef real_t scale
    memcpy(&scale, payload, sizeof(real_t))
    if real_t is float:
        (<sign_unpack32_t>e.head_unpack)(payload + sizeof(float), <double>scale, out, e.d)
    else:
        (<sign_unpack64_t>e.head_unpack)(payload + sizeof(double), scale, out, e.d)


cdef void ternary_encode_into(ExchangeData* e, const real_t* p, uint64_t seed) noexcept nogil:
    """Ternary.encode(p, seed) into e.payload: ||p||_inf in the wire dtype, then the 2-bit codes
    (compress_round's own ternary_pack)."""
    cdef real_t top
    cdef int64_t cap = e.nbytes - <int64_t>sizeof(real_t)
    if real_t is float:
        top = (<ternary_pack32_t>e.head_pack)(p, e.d, seed, e.payload + sizeof(float), cap)
    else:
        top = (<ternary_pack64_t>e.head_pack)(p, e.d, seed, e.payload + sizeof(double), cap)
    memcpy(e.payload, &top, sizeof(real_t))



cdef inline uint64_t rank_seed(ExchangeData* e, int64_t step) noexcept nogil:
    """A random compressor's seed on this rank at step ``step`` (CompressedSender.seed, not shared):
    derive_seed(derive_seed(base, step), rank)."""
    return mpt_derive_seed(mpt_derive_seed(e.seed_base, <uint64_t>step), <uint64_t>e.rank)


cdef inline int encode_payload(ExchangeData* e, const real_t* p, int64_t step) noexcept nogil:
    """This rank's payload of p into e.payload; 0 or a negative code (composed_encode, randk_range)."""
    if e.kind == KIND_IDENTITY:  # Identity.encode: the values' bytes
        memcpy(e.payload, p, e.d * sizeof(real_t))
        return 0
    if e.kind == KIND_RAND_K:
        return randk_encode_step(e, p, step)
    if e.kind == KIND_SCALED_SIGN:
        sign_encode_into(e, p)
        return 0
    if e.kind == KIND_DITHERING or e.kind == KIND_NATURAL:  # with this rank's seed of the step
        return quantise_into(e, p, e.d, rank_seed(e, step))
    if e.kind == KIND_TERNARY:
        ternary_encode_into(e, p, rank_seed(e, step))
        return 0
    if e.composed:
        return composed_encode(e, p, step)
    topk_encode_into(p, e.d, e.k, e.bits, NULL, e.payload)
    return 0


cdef inline int decode_raw(ExchangeData* e, const uint8_t* payload, real_t* out) noexcept nogil:
    """out = the (d,) vector a payload holds; 0, or -1 for an index >= d."""
    if e.kind == KIND_IDENTITY:
        memcpy(out, payload, e.d * sizeof(real_t))
        return 0
    if e.kind == KIND_RAND_K:
        randk_decode_into(e, payload, out)
        return 0
    if e.kind == KIND_SCALED_SIGN or e.kind == KIND_TERNARY:
        headed_decode_into(e, payload, out)
        return 0
    if e.kind == KIND_DITHERING or e.kind == KIND_NATURAL:
        unquantise(e, payload, e.d, out)
        return 0
    if e.composed:
        return composed_decode(e, payload, out)
    return -1 if topk_scatter(payload, e.nbytes, e.k, e.bits, out, e.d) >= 0 else 0


cdef inline int decode_payload(ExchangeData* e, const uint8_t* payload, real_t* out) noexcept nogil:
    """The compressor's decode: decode_raw, then times 1 / (1 + omega) in the wire dtype for an
    unbiased compressor that error feedback runs scaled (ContractiveScaling.decode); 0 or -1."""
    cdef Py_ssize_t j
    cdef real_t scale
    if decode_raw(e, payload, out) != 0:
        return -1
    if e.post_scaled:
        scale = <real_t>e.post_scale
        for j in range(e.d):
            out[j] = out[j] * scale
    return 0


cdef int feedback_encode(ExchangeData* e, real_t* p, const floating* g, double eta, int64_t step) noexcept nogil:
    """The sender's half of step ``step`` (module doc), p = e.compensated: compensate, encode into
    e.payload, update the rule's memory; 0 or a negative code (composed_encode)."""
    cdef Py_ssize_t j, d = e.d
    cdef real_t* memory = <real_t*>e.error
    cdef real_t* v = <real_t*>e.decoded
    cdef real_t a = <real_t>eta
    cdef int code
    if e.rule == RULE_EF:  # ErrorFeedback.compensate: a copy of e, then add_weighted(p, g, eta)
        for j in range(d):
            p[j] = memory[j] + (<real_t>g[j]) * a
    elif e.rule == RULE_EF21:  # EF21.compensate: g cast, then p -= h_k
        for j in range(d):
            p[j] = (<real_t>g[j]) - memory[j]
    else:  # NoFeedback.compensate: g cast (g itself when it has the wire dtype: the same values)
        for j in range(d):
            p[j] = <real_t>g[j]
    code = encode_payload(e, <const real_t*>p, step)
    if code != 0:
        return code
    if e.rule != RULE_NONE or e.size == 1:
        decode_payload(e, e.payload, v)  # this rank's C(p_k): its own indices
    if e.rule == RULE_EF:  # ErrorFeedback.update: e <- p - C(p)
        for j in range(d):
            memory[j] = p[j] - v[j]
    elif e.rule == RULE_EF21:  # EF21.update: h_k <- h_k + C(p)
        for j in range(d):
            memory[j] = memory[j] + v[j]
    return 0


cdef int average_gathered(ExchangeData* e, const uint8_t* gathered, real_t* v, floating* mean) noexcept nogil:
    """mean = sum_r w_r decode(payload r) of the e.size payloads in ``gathered`` (average_payloads:
    zeros, then each rank's term in rank order), v a (d,) scratch; 0, or -1 for a payload with an
    index >= d."""
    cdef Py_ssize_t j, r, d = e.d
    cdef floating w
    for j in range(d):
        mean[j] = 0
    for r in range(e.size):
        if decode_payload(e, gathered + r * e.nbytes, v) != 0:
            return -1
        w = <floating>e.weights[r]
        for j in range(d):  # add_weighted(mean, v, w_r)
            mean[j] = mean[j] + (<floating>v[j]) * w
    return 0


cdef void feedback_descend(ExchangeData* e, floating* x, const floating* mean, double eta) noexcept nogil:
    """The rule's ``descend`` with the decoded mean: x - mean (ef), h += mean then x - eta h (ef21),
    x - eta mean (none)."""
    cdef Py_ssize_t j
    cdef floating* h = <floating*>e.average
    if e.rule == RULE_EF:  # ErrorFeedbackRule.descend: x - 1.0 mean
        scaled_step(x, mean, 1.0, 1.0, e.d)
    elif e.rule == RULE_EF21:  # EF21.descend: h += mean, then x - eta h
        for j in range(e.d):
            h[j] = h[j] + mean[j]
        scaled_step(x, <const floating*>h, eta, 1.0, e.d)
    else:  # NoFeedback.descend: x - eta mean
        scaled_step(x, mean, eta, 1.0, e.d)


cdef int feedback_step(ExchangeData* e, real_t* p, const floating* g, floating* x, double eta, int64_t step,
                       double* seconds) noexcept nogil:
    """Step ``step`` (module doc) with p = e.compensated; 0, an MPI error code, -1 for a gathered
    payload with an index >= d (not this build's payload), -2 (composed_encode). A member of an
    in-process group (``grouped``) takes the sender's half only and leaves x and eta for
    :func:`group_step_end`."""
    cdef Py_ssize_t j
    cdef real_t* v = <real_t*>e.decoded
    cdef floating* mean = <floating*>e.mean
    cdef double started
    cdef int code = feedback_encode(e, p, g, eta, step)
    if code != 0:
        return code
    if e.grouped:
        e.pending_x, e.pending_eta = <void*>x, eta
        return 0
    if e.size == 1:  # one rank: the mean is C(p) itself (CompressedAverager.average, size 1)
        for j in range(e.d):
            mean[j] = <floating>v[j]
    elif e.summable:
        code = allreduced_mean(e, v, mean, seconds)
        if code != 0:
            return code
    else:
        started = monotonic_seconds()
        code = allgather_payloads(e)
        seconds[0] += monotonic_seconds() - started
        if code != 0:
            return code
        if average_gathered(e, e.gathered, v, mean) != 0:
            return -1
    feedback_descend(e, x, <const floating*>mean, eta)
    return 0


cdef void add_weighted_values(ExchangeData* e, const uint8_t* payload, double weight, real_t* total,
                              bint first) noexcept nogil:
    """total (+)= weight times a summable payload's values, the product rounded to the wire dtype
    (weighted_values: scaled_copy_from); ``first``: total = that product."""
    cdef real_t value, term, w = <real_t>weight
    cdef Py_ssize_t j
    for j in range(e.nvalues):
        memcpy(&value, payload + e.values_offset + j * sizeof(real_t), sizeof(real_t))
        term = value * w
        total[j] = term if first else total[j] + term


cdef void decode_summed(ExchangeData* e, const real_t* total, real_t* v, floating* mean) noexcept nogil:
    """mean = decode of this rank's payload with its values replaced by ``total`` (decode_sum: the
    template is the payload, whose seed, for Rand-k, is every rank's), cast to the model dtype."""
    cdef Py_ssize_t j
    memcpy(e.gathered, e.payload, e.nbytes)
    memcpy(e.gathered + e.values_offset, total, e.nvalues * sizeof(real_t))
    decode_payload(e, e.gathered, v)
    for j in range(e.d):
        mean[j] = <floating>v[j]


cdef int allreduced_mean(ExchangeData* e, real_t* v, floating* mean, double* seconds) noexcept nogil:
    """A summable exchange over MPI: this rank's weighted values summed over the ranks in place
    (MPI_Allreduce called from C, the call mpi4py makes: CompressedAverager.average's), then decoded
    into mean; 0 or the MPI error code."""
    cdef real_t* total = <real_t*>e.summed
    cdef double started
    cdef int code
    add_weighted_values(e, e.payload, e.weights[e.rank], total, True)
    started = monotonic_seconds()
    code = (<sum_in_place_t>e.sum_in_place)(e.sum_context, <void*>total, e.nvalues)
    seconds[0] += monotonic_seconds() - started
    if code != 0:
        return code
    decode_summed(e, <const real_t*>total, v, mean)
    return 0


cdef void summed_mean(ExchangeData** members, Py_ssize_t size, real_t* v, floating* mean) noexcept nogil:
    """An in-process group's summable mean: every rank's weighted values added in rank order (the
    in-process Allreduce), then decoded once from member 0's payload into mean."""
    cdef ExchangeData* e = members[0]
    cdef Py_ssize_t r
    for r in range(size):
        add_weighted_values(e, members[r].payload, e.weights[r], <real_t*>e.summed, r == 0)
    decode_summed(e, <const real_t*>e.summed, v, mean)


cdef int group_end_typed(ExchangeData** members, Py_ssize_t size, real_t* v, floating* mean) noexcept nogil:
    """The rest of a step for every member (see group_step_end), v and mean member 0's."""
    cdef ExchangeData* e = members[0]
    cdef Py_ssize_t r
    if e.summable:
        summed_mean(members, size, v, mean)
    else:
        for r in range(size):  # the Allgather: every payload into member 0's buffer, in rank order
            memcpy(e.gathered + r * e.nbytes, members[r].payload, e.nbytes)
        if average_gathered(e, e.gathered, v, mean) != 0:
            return -1
    for r in range(1, size):  # every rank's mean: the one computed (they would compute the same bits)
        memcpy(members[r].mean, mean, e.d * sizeof(floating))
    for r in range(size):
        feedback_descend(members[r], <floating*>members[r].pending_x, <const floating*>members[r].mean,
                         members[r].pending_eta)
    return 0


cdef int group_step_end(void** contexts, Py_ssize_t size) noexcept nogil:
    """The end of a step of an in-process group: after each of its ``size`` members (the contexts of
    their capsules, in rank order) took the sender's half of the step, gather the payloads, decode
    their weighted mean once (every rank would compute it from the same bytes, in the same order)
    and take each member's descent; 0, or -1 for a payload with an index >= d. The capsule
    "mpitrain.StepExchangeGroupEnd" (mpitrain._native.sgd_steps.SGDStepsGroup)."""
    cdef ExchangeData** members = <ExchangeData**>contexts
    cdef ExchangeData* e = members[0]
    if e.wire_single:
        if e.model_single:
            return group_end_typed(members, size, <float*>e.decoded, <float*>e.mean)
        return group_end_typed(members, size, <float*>e.decoded, <double*>e.mean)
    if e.model_single:
        return group_end_typed(members, size, <double*>e.decoded, <float*>e.mean)
    return group_end_typed(members, size, <double*>e.decoded, <double*>e.mean)


cdef int exchange_step(void* context, void* x, const void* grad, double eta, int64_t step,
                       double* seconds) noexcept nogil:
    """The capsule's function (mpitrain._native.sgd_steps: step_exchange_t)."""
    cdef ExchangeData* e = <ExchangeData*>context
    if e.wire_single:
        if e.model_single:
            return feedback_step(e, <float*>e.compensated, <const float*>grad, <float*>x, eta, step, seconds)
        return feedback_step(e, <float*>e.compensated, <const double*>grad, <double*>x, eta, step, seconds)
    if e.model_single:
        return feedback_step(e, <double*>e.compensated, <const float*>grad, <float*>x, eta, step, seconds)
    return feedback_step(e, <double*>e.compensated, <const double*>grad, <double*>x, eta, step, seconds)


cdef void* array_address(object array, object dtype, Py_ssize_t length, str what, bint writable) except NULL:
    """The data of a C-contiguous 1-D array of ``dtype`` and ``length`` entries."""
    if type(array) is not np.ndarray or array.dtype != dtype or array.ndim != 1 \
            or not array.flags.c_contiguous or array.shape[0] != length:
        raise ValueError(f"{what} must be a C-contiguous 1-D {np.dtype(dtype).name} NumPy array of {length} entries")
    if writable and not array.flags.writeable:
        raise ValueError(f"{what} must be writable")
    return <void*><uintptr_t>array.__array_interface__["data"][0]


cdef class FeedbackExchange:
    """One rank's compressed exchange for Top-k with a feedback rule (module doc), a step hook of
    ``SGDSteps.exchange_steps`` (``capsule``, named "mpitrain.StepExchange").

    d, k, bits: Top-k's sizes (1 <= k <= min(d, MAX_K), d <= MAX_D, 2^bits >= d: the payload of
    mpitrain.compress.TopK); wire_dtype, model_dtype: float32 or float64; error: the rule's (d,)
    wire-dtype memory, updated in place (e_k for ``ef``, h_k for ``ef21``; None for ``none``);
    mean: (d,) model-dtype array that receives each step's sum_k w_k C(p_k); weights: w_k of every
    rank, in rank order (one entry: one rank, no MPI call); comm: the mpi4py communicator of those
    ranks (None for one rank); feedback: "none", "ef" or "ef21"; average: ``ef21``'s (d,)
    model-dtype h, updated in place (None for the others). ``bind_memory`` points at other arrays.
    dithering: None for Top-k alone, or (levels, bucket_size, natural, p, scale) of the dithering that
    follows Top-k in a ``Composition`` (its unbiased part's, and the composition's 1/(1 + omega)),
    with seed_base (the sender's base seed) and rank for its per-step seeds.
    grouped: the exchange of one rank of K in this process (mpitrain.comm.inprocess), with no comm
    and K weights: its steps are taken by ``mpitrain._native.sgd_steps.SGDStepsGroup``, which runs
    every member's sender half, then the gather, the mean (once) and every member's descent
    (``group_capsule``). Holds every array and comm. An MPI error raises mpi4py's MPI.Exception from ``SGDSteps.run``, a
    gathered payload that is not a Top-k payload for this d (ranks that disagree on d or k)
    RuntimeError.
    """

    cdef ExchangeData e
    cdef readonly Py_ssize_t d, k, payload_nbytes, size
    cdef readonly object wire_dtype, model_dtype, feedback
    cdef readonly object capsule  # PyCapsule "mpitrain.StepExchange"
    cdef readonly object group_capsule  # PyCapsule "mpitrain.StepExchangeGroupEnd" (grouped)
    cdef readonly bint grouped  # a member of an in-process group (SGDStepsGroup)
    cdef readonly object comm
    cdef readonly object bound_error, bound_average  # the arrays updated as the rule's memory
    cdef readonly object payload  # this rank's last payload
    cdef object mean, compensated, decoded, gathered, weights, summed
    cdef object allreduce  # a summable exchange's InPlaceAllreduce (MPI), else None
    cdef object range_check  # Rand-k's or natural compression's check_range (its refusal, in its words)
    cdef readonly object kind  # a key of KINDS
    cdef readonly Py_ssize_t wire_nbytes  # bytes an exchange puts on the wire (a summable one: its values)

    def __init__(self, Py_ssize_t d, Py_ssize_t k, int bits, wire_dtype, model_dtype, error, mean,
                 weights, comm=None, feedback="ef", average=None, dithering=None, seed_base=0, rank=0,
                 bint grouped=False, kind="top_k", double randk_scale=1.0, contractive_scale=None, natural=None,
                 range_check=None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        self.kind = kind
        self.e.kind = KINDS[kind]
        if feedback not in RULES:
            raise ValueError(f"feedback must be one of {sorted(RULES)}, got {feedback!r}")
        self.feedback = feedback
        self.e.rule = RULES[feedback]
        self.wire_dtype, self.model_dtype = np.dtype(wire_dtype), np.dtype(model_dtype)
        for name, dtype in (("wire_dtype", self.wire_dtype), ("model_dtype", self.model_dtype)):
            if dtype not in (np.float32, np.float64):
                raise ValueError(f"{name} must be float32 or float64, got {dtype}")
        if not 1 <= d <= MAX_D:
            raise ValueError(f"d must be in [1, {MAX_D}], got {d}")
        if kind == "top_k":
            if not 1 <= k <= min(d, MAX_K):
                raise ValueError(f"k must be in [1, {min(d, MAX_K)}], got {k}")
            if not 0 <= bits <= 32 or (1 << bits) < d:
                raise ValueError(f"bits = {bits} cannot hold an index below d = {d}")
        elif not 1 <= k <= d or (kind != "rand_k" and k != d):
            raise ValueError(f"k must be {'in [1, d]' if kind == 'rand_k' else 'd'} = {d} for {kind}, got {k}")
        if (dithering is not None) != (kind == "dithering") and kind != "top_k":
            raise ValueError("dithering goes with kind 'dithering' or after Top-k only")
        if (natural is not None) != (kind == "natural") and kind != "top_k" or (dithering and natural):
            raise ValueError("natural goes with kind 'natural' or after Top-k only, and not with dithering")
        self.weights = np.array(weights, dtype=np.float64).ravel()
        self.size = self.weights.shape[0]
        if self.size < 1:
            raise ValueError("weights must hold one weight a rank")
        self.d, self.k = d, k
        self.e.wire_single = self.wire_dtype == np.float32
        self.e.model_single = self.model_dtype == np.float32
        width = self.wire_dtype.itemsize
        self.payload_nbytes = k * width + (k * bits + 7) // 8
        self.e.composed = (dithering is not None or natural is not None) and kind == "top_k"
        if dithering is not None or natural is not None:  # the quantiser's payload, then Top-k's indices (if any)
            self.payload_nbytes = self._quantiser(dithering, natural, seed_base, rank) + (k * bits + 7) // 8
        self.e.summable = kind in ("identity", "rand_k")
        if kind == "scaled_sign":  # the scale, then d sign bits
            self.payload_nbytes = width + (d + 7) // 8
            self._headed("sign")
        elif kind == "ternary":  # ||p||_inf, then d 2-bit codes
            self.payload_nbytes = width + (2 * d + 7) // 8
            self._headed("ternary")
        self.e.values_offset, self.e.nvalues = (8 if kind == "rand_k" else 0), k
        if self.e.summable:
            self.payload_nbytes = self.e.values_offset + k * width
        # bytes one exchange puts on the wire: the payload, or a summable payload's values (its Allreduce)
        self.wire_nbytes = k * width if self.e.summable else self.payload_nbytes
        self.e.randk_scale = float(self.wire_dtype.type(randk_scale))
        self.e.randk_checked = kind == "rand_k" and self.e.randk_scale != 1.0
        if self.e.randk_checked:
            if range_check is None:
                raise ValueError("rand_k scaled by d/k needs range_check (RandK.check_range: its refusal)")
            self.range_check = range_check
        self.e.seed_base = <uint64_t>(int(seed_base) & 0xFFFFFFFFFFFFFFFF)
        self.e.post_scaled = contractive_scale is not None
        self.e.post_scale = 1.0 if contractive_scale is None else float(self.wire_dtype.type(contractive_scale))
        self.e.d, self.e.k, self.e.bits, self.e.nbytes, self.e.size = d, k, bits, self.payload_nbytes, self.size
        self.mean = mean
        self.e.mean = array_address(mean, self.model_dtype, d, "mean", True)
        self.compensated = np.zeros(d, dtype=self.wire_dtype)
        self.decoded = np.zeros(d, dtype=self.wire_dtype)
        self.summed = np.zeros(d, dtype=self.wire_dtype)
        self.e.summed = array_address(self.summed, self.wire_dtype, d, "summed", True)
        self.bind_memory(error, average)
        self.payload = np.zeros(self.payload_nbytes, dtype=np.uint8)
        self.gathered = np.zeros(self.size * self.payload_nbytes, dtype=np.uint8)
        self.e.compensated = array_address(self.compensated, self.wire_dtype, d, "compensated", True)
        self.e.decoded = array_address(self.decoded, self.wire_dtype, d, "decoded", True)
        self.e.payload = <uint8_t*>array_address(self.payload, np.uint8, self.payload_nbytes, "payload", True)
        self.e.gathered = <uint8_t*>array_address(self.gathered, np.uint8, self.size * self.payload_nbytes,
                                                  "gathered", True)
        self.e.weights = <const double*>array_address(self.weights, np.float64, self.size, "weights", False)
        self.e.allgather = NULL
        self.comm = comm
        self.grouped = self.e.grouped = grouped
        self.e.pending_x, self.e.pending_eta = NULL, 0.0
        self.e.rank, self.allreduce = rank, None
        if not 0 <= rank < self.size:
            raise ValueError(f"rank must be in [0, {self.size}), got {rank}")
        self.e.sum_in_place, self.e.sum_context = NULL, NULL
        if grouped:
            if comm is not None or self.size < 2:
                raise ValueError("a grouped exchange takes no comm and one weight for each of its >= 2 ranks")
        elif self.size > 1:
            self._connect(comm)
        elif comm is not None and comm.Get_size() != 1:
            raise ValueError(f"one weight for a communicator of {comm.Get_size()} ranks")
        self.capsule = PyCapsule_New(<void*>exchange_step, b"mpitrain.StepExchange", NULL)
        PyCapsule_SetContext(self.capsule, &self.e)
        self.group_capsule = PyCapsule_New(<void*>group_step_end, b"mpitrain.StepExchangeGroupEnd", NULL)

    cdef void* _kernel(self, str name) except NULL:
        """compress_round's C kernel ``name`` ("sign_pack", ...) for the wire dtype (its C_KERNELS)."""
        from .compress_round import C_KERNELS

        name += "32" if self.e.wire_single else "64"
        return PyCapsule_GetPointer(C_KERNELS[name], f"mpitrain.{name}".encode())

    def _headed(self, name):
        """Scaled sign's or ternary's pack and unpack (a scale in the header, then codes)."""
        self.e.head_pack, self.e.head_unpack = self._kernel(name + "_pack"), self._kernel(name + "_unpack")

    def _quantiser(self, dithering, natural, seed_base, rank):
        """Set up the unbiased quantiser, of the k values after Top-k or of all d (k = d): a dithering
        (levels, bucket, natural, p, scale) or natural compression (deterministic, top, tiny, scale,
        check_range); returns its payload bytes (norms, then codes; or codes)."""
        cdef Quantiser* c = &self.e.quantiser
        c.base, c.rank = <uint64_t>(int(seed_base) & 0xFFFFFFFFFFFFFFFF), <uint64_t>int(rank)
        if natural is not None:
            deterministic, top, tiny, scale, self.range_check = natural
            c.kind, c.deterministic, c.top, c.tiny = Q_NATURAL, bool(deterministic), float(top), float(tiny)
            c.scale = float(self.wire_dtype.type(scale))
            c.head = (self.k * (1 + (8 if self.e.wire_single else 11)) + 7) // 8
            c.pack, c.unpack = self._kernel("natural_pack"), self._kernel("natural_unpack")
            return c.head
        levels, bucket, natural_levels, p, scale = dithering
        if not 1 <= levels <= 255 or not 1 <= bucket:
            raise ValueError(f"dithering needs 1 <= levels <= 255 and bucket >= 1, got {levels} and {bucket}")
        c.kind = Q_DITHER
        c.levels, c.bucket, c.natural, c.p = levels, min(bucket, self.k), bool(natural_levels), float(p)
        c.scale = float(self.wire_dtype.type(scale))
        c.buckets = (self.k + c.bucket - 1) // c.bucket  # (C division here: cdivision)
        c.head = c.buckets * self.wire_dtype.itemsize + (self.k * (1 + int(levels).bit_length()) + 7) // 8
        c.pack, c.unpack = self._kernel("dither_pack"), self._kernel("dither_unpack")
        return c.head

    def _connect(self, comm):
        """MPI_Allgather of the payloads over ``comm`` (a communicator of ``size`` ranks), or for a
        summable exchange an in-place MPI_Allreduce of the weighted values."""
        from mpi4py import MPI

        from .inplace_allreduce import InPlaceAllreduce

        if not isinstance(comm, MPI.Comm) or comm == MPI.COMM_NULL:
            raise ValueError(f"comm must be an mpi4py communicator, got {comm!r}")
        if comm.Get_size() != self.size:
            raise ValueError(f"{self.size} weights for a communicator of {comm.Get_size()} ranks")
        if self.size * self.payload_nbytes > INT_MAX:
            raise ValueError("the gathered payloads exceed MPI's int counts")
        if self.e.summable:
            self.allreduce = InPlaceAllreduce(comm, self.wire_dtype)
            self.e.sum_in_place = PyCapsule_GetPointer(self.allreduce.capsule, b"mpitrain.InPlaceSum")
            self.e.sum_context = PyCapsule_GetContext(self.allreduce.capsule)
            return
        read_handles(&self.e.h, MPI, comm, MPI.BYTE, None)
        self.e.allgather = <void*><uintptr_t>mpi_function_address(MPI, "MPI_Allgather")

    def bind_memory(self, error, average=None):
        """Update ``error`` (the rule's (d,) wire-dtype memory; None for ``none``) and ``average``
        (``ef21``'s (d,) model-dtype h; None for the others) in place from the next step on: the
        rule's arrays after it replaced them (a checkpoint loaded). Returns None."""
        memory = error
        if self.e.rule == RULE_NONE:
            if error is not None:
                raise ValueError("feedback 'none' keeps no memory: error must be None")
            memory = self.decoded  # never read nor written
        if (average is not None) != (self.e.rule == RULE_EF21):
            raise ValueError("average (h) is ef21's, and ef21 needs it")
        self.e.error = array_address(memory, self.wire_dtype, self.d, "error", True)
        self.e.average = NULL if average is None else array_address(average, self.model_dtype, self.d,
                                                                     "average", True)
        self.bound_error, self.bound_average = error, average

    def failure(self, int code):
        """The exception for the exchange's negative return ``code`` (SGDSteps.run raises it)."""
        if code == -1:
            return RuntimeError("a Top-k payload gathered from another rank holds an index >= d = "
                                f"{self.d}: the ranks disagree on d or k")
        if code == RANGE_REFUSED:  # RandK.check_range's refusal: its own, on the kept values
            try:
                self.range_check(self.payload[8:].view(self.wire_dtype))
            except ValueError as exc:
                return exc
        if code == NATURAL_REFUSED:  # NaturalCompression.check_range's refusal: its own words
            try:
                self.range_check(self.e.refused_max, bool(self.e.refused_subnormal))
            except ValueError as exc:
                return exc
        if code == -2:  # Dithering._check_norms' refusal, in its words
            c = &self.e.quantiser
            name = "NaturalDithering" if c.natural else "StandardDithering"
            wire = self.wire_dtype.name
            return ValueError(f"{name} ({wire}): the {c.p:g}-norm of bucket {self.e.refused_bucket} "
                              f"(max|x_i| = {self.e.refused_max:g}) exceeds the largest {wire} "
                              f"{float(np.finfo(self.wire_dtype).max):g}, so the header cannot hold it; scale x "
                              "down by a power of two 2^k and the result back up, or use float64")
        return RuntimeError(f"compressed exchange failed (code {code})")

