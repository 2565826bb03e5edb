# Top-k payloads in C (included, not a module): the selection of the best k entries of a small
# vector, the payload written from it (k values, then the k ascending indices packed at b bits) and
# read back. Included by compress_select.pyx (mpitrain.compress.top_k's host kernels) and by
# compressed_steps.pyx (compressed SGD's fused exchange), so both write and read the same bytes
# from one statement of the code. Needs compress_common.pxi (the bit writer and reader) first.
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

cdef enum:
    SMALL_K = 64  # k up to which a small x (d <= SMALL_D) takes topk_small, not a sort

ctypedef fused key_t:
    uint32_t
    uint64_t


ctypedef fused real_t:
    float
    double


cdef enum:
    # topk_small keeps a heap of the best k so far up to this k; above, it selects by quickselect.
    # Measured (d = 300, float32): the heap costs 0.3-0.6 us at k = 1-4 against 0.9-1.3 us, both
    # about 1.3 us at k = 13, and at k = 30 on the vectors compressed SGD with EF compresses
    # (w8a) 2.5-3.0 us against 1.6-1.9 us: each replacement of its root mispredicts branches
    HEAP_K = 12
    SMALL_D = 1024  # the largest d of topk_small's callers (compress_select.SORT_MAX_D): its scratch


cdef inline void sift_down_keys(key_t *a, Py_ssize_t root, Py_ssize_t n) noexcept nogil:
    """Sift a[root] down the max-heap a[0:n]."""
    cdef Py_ssize_t child
    cdef key_t t
    while True:
        child = 2 * root + 1
        if child >= n:
            return
        if child + 1 < n and a[child + 1] > a[child]:
            child += 1
        if a[root] >= a[child]:
            return
        t = a[root]
        a[root] = a[child]
        a[child] = t
        root = child


cdef void heapsort_keys(key_t *a, Py_ssize_t n) noexcept nogil:
    """a[0:n] sorted ascending in place, O(n log n) whatever the input."""
    cdef Py_ssize_t i
    cdef key_t t
    for i in range(n // 2 - 1, -1, -1):
        sift_down_keys(a, i, n)
    for i in range(n - 1, 0, -1):
        t = a[0]
        a[0] = a[i]
        a[i] = t
        sift_down_keys(a, 0, i)


cdef key_t kth_smallest(const key_t *v, uint64_t mask, Py_ssize_t n, Py_ssize_t target, key_t *a,
                        key_t *b) noexcept nogil:
    """What the key at rank ``target`` (0-based, ascending; 0 <= target < n) of the n keys
    v_i & mask is; v is not written, a and b are scratch of n keys each.

    Quickselect by copies. The pivot p is a key of an evenly spaced sample of 15 keys, the one
    ranked a fifteenth below the target's rank, so that most rounds leave only the keys above it
    (for Top-k's target, the k-th largest of n with k << n: about k + n / 15 keys). A round
    counts the keys below and equal to p and copies those above p into the other scratch buffer
    (the keys below p instead, in a second pass, when the target is among them); when the target
    is among the keys equal to p, p is the answer, so every round makes progress. The passes have
    no data-dependent branches: each key is stored, and a counter advances on the comparison (a
    branch on it mispredicts about half the time on such keys; a heap of the best k so far, the
    former method, or an in-place partition, whose swaps chain through memory, were 1.5 to 3x
    slower at n = 300, k = 30). Inputs built against the sampling could still make it quadratic:
    after 2 log2(n) + 4 rounds the range left is heap-sorted instead, O(n log n) at worst.
    """
    cdef const key_t *src = v
    cdef key_t *dst = a
    cdef key_t *spare = b
    cdef Py_ssize_t m = n, i, j, rounds = 0, limit = 4, above, equal, below
    cdef key_t p, t
    cdef key_t sample[15]
    while m > 1:
        limit += 2
        m >>= 1
    m = n
    while m > 32 and rounds < limit:
        rounds += 1
        for i in range(15):  # sorted sample: insertion sort of 15 keys
            t = <key_t>(src[(2 * i + 1) * m // 30] & mask)
            j = i
            while j > 0 and sample[j - 1] > t:
                sample[j] = sample[j - 1]
                j -= 1
            sample[j] = t
        i = target * 15 // m - 1
        p = sample[i if i > 0 else 0]
        above = equal = 0
        for i in range(m):  # dst[:above]: the keys > p
            t = <key_t>(src[i] & mask)
            dst[above] = t
            above += t > p
            equal += t == p
        below = m - above - equal
        if target >= below + equal:
            target -= below + equal
            m = above
        elif target >= below:
            return p
        else:
            below = 0
            for i in range(m):  # dst[:below]: the keys < p
                t = <key_t>(src[i] & mask)
                dst[below] = t
                below += t < p
            m = below
        src, dst, spare = dst, spare, dst
        mask = <uint64_t>-1
    for i in range(m):  # the keys left, sorted (insertion sort when few, else heapsort)
        dst[i] = <key_t>(src[i] & mask)
    if m > 32:
        heapsort_keys(dst, m)
        return dst[target]
    for i in range(1, m):
        t = dst[i]
        j = i
        while j > 0 and dst[j - 1] > t:
            dst[j] = dst[j - 1]
            j -= 1
        dst[j] = t
    return dst[target]


cdef inline bint worse(uint64_t key_a, int64_t index_a, uint64_t key_b, int64_t index_b) noexcept nogil:
    """Whether entry a ranks below entry b: a smaller key, or an equal key at a larger index."""
    return key_a < key_b or (key_a == key_b and index_a > index_b)


cdef void topk_heap(const key_t *v, Py_ssize_t d, Py_ssize_t k, uint64_t absmask, int64_t *out,
                    uint64_t *heap) noexcept nogil:
    """out[:k] = the top k of d keys (v_i & absmask), ascending, with ties to the smaller
    index (the selection of ``_topk_sorted``). One pass keeps the best k so far in a heap
    whose root is the worst of them (``heap`` the keys, ``out`` the indices); a later entry
    replaces the root only with a strictly larger key, since on a tie the root's smaller
    index wins. O(d log k), whatever the order of the keys: ``topk_small`` for k <= HEAP_K."""
    cdef Py_ssize_t i, j, child
    cdef uint64_t key
    cdef int64_t index
    for i in range(d):
        key = (<uint64_t>v[i]) & absmask
        if i < k:  # sift the new entry up
            j = i
            while j > 0 and worse(key, i, heap[(j - 1) // 2], out[(j - 1) // 2]):
                heap[j] = heap[(j - 1) // 2]
                out[j] = out[(j - 1) // 2]
                j = (j - 1) // 2
        elif key > heap[0]:  # replace the root and sift down
            j = 0
            while True:
                child = 2 * j + 1
                if child >= k:
                    break
                if child + 1 < k and worse(heap[child + 1], out[child + 1], heap[child], out[child]):
                    child += 1
                if not worse(heap[child], out[child], key, i):
                    break
                heap[j] = heap[child]
                out[j] = out[child]
                j = child
        else:
            continue
        heap[j] = key
        out[j] = i
    for i in range(1, k):  # indices ascending (insertion sort: k <= SMALL_K)
        index = out[i]
        j = i
        while j > 0 and out[j - 1] > index:
            out[j] = out[j - 1]
            j -= 1
        out[j] = index


cdef void topk_small(const key_t *v, Py_ssize_t d, Py_ssize_t k, uint64_t absmask, int64_t *out,
                     key_t *keys) noexcept nogil:
    """out[:k] = the top k of d keys (v_i & absmask), ascending, with ties to the smaller
    index (the selection of ``_topk_sorted``; 1 <= k <= d); ``out`` holds k + 1 entries (the
    collecting pass stores one past the last index it keeps); ``keys``: scratch of 2 d keys
    (and at least k uint64). Up to k = HEAP_K, ``topk_heap``; above, the k-th largest key T comes
    from ``kth_smallest``; the selection is every key above T
    and, of the keys equal to T, those at the smallest indices, as many as are missing. One
    counting pass, then one collecting pass without data-dependent branches: every index is
    stored and the count advances when the key is kept (when T occurs more often than it is
    needed, the pass also counts the ties it keeps)."""
    cdef Py_ssize_t i, n = 0, greater = 0, equal = 0, ties
    cdef uint64_t key, threshold
    cdef bint take
    if k <= HEAP_K:
        topk_heap(v, d, k, absmask, out, <uint64_t *>keys)
        return
    threshold = <uint64_t>kth_smallest(v, absmask, d, d - k, keys, keys + d)
    for i in range(d):
        key = (<uint64_t>v[i]) & absmask
        greater += key > threshold
        equal += key == threshold
    ties = k - greater  # >= 1: T itself is among the top k
    if ties == equal:  # every key equal to T is kept (always, when T occurs once)
        for i in range(d):
            out[n] = i
            n += ((<uint64_t>v[i]) & absmask) >= threshold
        return
    for i in range(d):
        key = (<uint64_t>v[i]) & absmask
        take = (key > threshold) | ((key == threshold) & (ties > 0))
        out[n] = i
        n += take
        ties -= take & (key == threshold)


cdef void pack_indices(const int64_t *idx, Py_ssize_t k, int b, uint8_t *out) noexcept nogil:
    """idx[0..k) packed at b bits into out (LSB first): Top-k's support section."""
    cdef Py_ssize_t i
    cdef mpt_writer w
    mpt_writer_init(&w, out)
    for i in range(k):
        mpt_put(&w, <uint64_t>idx[i], b)
    mpt_flush(&w)


cdef int gather_pack(const real_t *x, const int64_t *idx, Py_ssize_t k, int b, uint8_t *out) noexcept nogil:
    """out = x[idx[0]], ..., x[idx[k-1]] (the dtype's bytes) then idx packed at b bits."""
    cdef Py_ssize_t i
    for i in range(k):
        memcpy(out + i * sizeof(real_t), &x[idx[i]], sizeof(real_t))
    pack_indices(idx, k, b, out + k * sizeof(real_t))
    return 0


cdef void topk_encode_into(const real_t *x, Py_ssize_t d, Py_ssize_t k, int b, const int64_t *idx,
                           uint8_t *out) noexcept nogil:
    """``gather_pack`` of the indices ``idx``, or, when it is NULL, of ``topk_small``'s
    selection (d <= SMALL_D, k <= SMALL_K)."""
    cdef uint64_t keys[2 * SMALL_D]
    cdef int64_t small[SMALL_K + 1]  # topk_small stores one past the last kept index
    if idx == NULL:
        if real_t is float:
            topk_small(<const uint32_t *>x, d, k, 0x7FFFFFFFULL, small, <uint32_t *>keys)
        else:
            topk_small(<const uint64_t *>x, d, k, 0x7FFFFFFFFFFFFFFFULL, small, keys)
        idx = small
    gather_pack(x, idx, k, b, out)


cdef Py_ssize_t topk_scatter(const uint8_t *payload, Py_ssize_t nbytes, Py_ssize_t k, int b,
                             real_t *out, Py_ssize_t d) noexcept nogil:
    """out = zeros but value_i at index_i of a Top-k payload; -1, or the first index >= d."""
    cdef Py_ssize_t i, cut = k * <Py_ssize_t>sizeof(real_t)
    cdef uint64_t index
    cdef mpt_reader r
    memset(out, 0, d * sizeof(real_t))
    mpt_reader_init(&r, payload + cut, nbytes - cut)
    for i in range(k):
        index = mpt_get(&r, b)
        if index >= <uint64_t>d:
            return <Py_ssize_t>index
        memcpy(&out[index], payload + i * sizeof(real_t), sizeof(real_t))
    return -1
