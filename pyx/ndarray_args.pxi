# Arrays taken as plain NumPy arrays, not typed memoryviews (included by kernels called every step).
#
# A typed memoryview argument costs its call about 150 to 200 ns per array to acquire, and a
# fused-type function adds the pick of its specialisation (a signature looked up in a dict from
# the arguments' types): add_weighted on two 300-entry arrays took 0.77 us through two fused
# memoryviews and 0.13 us through these checks (2026-12-01, docs/performance.md). A kernel that
# runs several times a step (a compressed exchange) tests its arguments with ``vector_type``
# and takes the data pointer itself; anything else (another buffer type, a strided view) goes
# to the memoryview version, which accepts what it accepted before and raises what it raised.

cimport numpy as cnp

cnp.import_array()


cdef inline int vector_type(object a, Py_ssize_t* n, bint writable) noexcept:
    """NPY_FLOAT or NPY_DOUBLE when ``a`` is a C-contiguous, aligned 1-D float32 / float64 ndarray
    in this machine's byte order (and writeable, if asked); its length then in n[0]. -1 for
    anything else (a byte-swapped array has the same type number: its order is checked too)."""
    cdef cnp.ndarray array
    cdef int kind
    if not cnp.PyArray_CheckExact(a):
        return -1
    array = <cnp.ndarray>a
    kind = cnp.PyArray_TYPE(array)
    if (kind != cnp.NPY_FLOAT and kind != cnp.NPY_DOUBLE) or cnp.PyArray_NDIM(array) != 1 \
            or not cnp.PyArray_IS_C_CONTIGUOUS(array) or not cnp.PyArray_ISALIGNED(array) \
            or not cnp.PyArray_ISNOTSWAPPED(array) or (writable and not cnp.PyArray_ISWRITEABLE(array)):
        return -1
    n[0] = cnp.PyArray_DIM(array, 0)
    return kind


cdef inline void* vector_data(object a) noexcept:
    """The data pointer of an ndarray ``vector_type`` accepted."""
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline unsigned char* byte_data(object a, Py_ssize_t* n, bint writable) noexcept:
    """The data of a C-contiguous 1-D uint8 ndarray (and writeable, if asked), its length in
    n[0]; NULL for anything else."""
    cdef cnp.ndarray array
    if not cnp.PyArray_CheckExact(a):
        return NULL
    array = <cnp.ndarray>a
    if cnp.PyArray_TYPE(array) != cnp.NPY_UBYTE or cnp.PyArray_NDIM(array) != 1 \
            or not cnp.PyArray_IS_C_CONTIGUOUS(array) or (writable and not cnp.PyArray_ISWRITEABLE(array)):
        return NULL
    n[0] = cnp.PyArray_DIM(array, 0)
    return <unsigned char*>cnp.PyArray_DATA(array)
