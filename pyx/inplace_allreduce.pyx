"""An in-place sum over the ranks, ``MPI_Allreduce(MPI_IN_PLACE, buf, count, type, MPI_SUM, comm)``,
that a Cython kernel calls in C without the GIL (synchronous SGD's gradient average, many steps per
call: ``mpitrain._native.objectives.SGDSteps.average_gradients``).

The kernels are built without mpi.h: :class:`InPlaceAllreduce` finds the library's
``MPI_Allreduce`` and reads the handles of the communicator, the datatype (MPI_FLOAT or MPI_DOUBLE),
MPI_SUM and MPI_IN_PLACE from mpi4py (pyx/mpi_handles.pxi). Kernels get the call as a PyCapsule named
``"mpitrain.InPlaceSum"``: its pointer is ``int sum(void* context, void* buf, Py_ssize_t count)
noexcept nogil`` (0 on success, else the MPI error code), its context the call's handles.

It is the call mpi4py makes for ``comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)`` (mpi4py calls the
large-count twin ``MPI_Allreduce_c``, which MPICH and Open MPI run through the same reduction), so
the sums are bit for bit those of mpitrain.comm.averaging.Averager (tests/test_sync_steps_fused.py).
"""
from cpython.pycapsule cimport PyCapsule_New, PyCapsule_SetContext
from libc.limits cimport INT_MAX
from libc.stdint cimport uintptr_t

import numpy as np

include "mpi_handles.pxi"

# MPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm) with int handles (MPICH's ABI) and with
# pointer handles (Open MPI, the MPI 5 ABI)
ctypedef int (*allreduce_int_handles)(const void*, void*, int, int, int, int) noexcept nogil
ctypedef int (*allreduce_pointer_handles)(const void*, void*, int, void*, void*, void*) noexcept nogil

ctypedef struct AllreduceCall:
    void* function  # the library's MPI_Allreduce
    MPIHandles h  # the communicator, the datatype and MPI_SUM
    const void* in_place  # MPI_IN_PLACE


cdef int sum_in_place(void* context, void* buf, Py_ssize_t count) noexcept nogil:
    """buf[:count] <- its sum over the ranks (the capsule's function; count <= INT_MAX)."""
    cdef AllreduceCall* call = <AllreduceCall*>context
    if call.h.int_handles:
        return (<allreduce_int_handles>call.function)(call.in_place, buf, <int>count, call.h.datatype_int,
                                                      call.h.op_int, call.h.comm_int)
    return (<allreduce_pointer_handles>call.function)(call.in_place, buf, <int>count, call.h.datatype_pointer,
                                                      call.h.op_pointer, call.h.comm_pointer)


cdef class InPlaceAllreduce:
    """``buf <- sum over the ranks of comm of buf``, in place, for 1-D C-contiguous arrays of ``dtype``
    (float32 or float64), callable from C without the GIL (see the module doc; ``capsule``) and from
    Python (``allreduce(buf)``). Holds ``comm``: its handle stays valid while this object lives,
    unless the communicator is freed.
    """

    cdef AllreduceCall call
    cdef readonly object comm  # the mpi4py communicator
    cdef readonly object dtype  # numpy dtype of the buffers: float32 or float64
    cdef readonly object capsule  # PyCapsule "mpitrain.InPlaceSum" (module doc)

    def __init__(self, comm, dtype):
        from mpi4py import MPI

        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if not isinstance(comm, MPI.Comm) or comm == MPI.COMM_NULL:
            raise ValueError(f"comm must be an mpi4py communicator, got {comm!r}")
        datatype = MPI.FLOAT if self.dtype == np.float32 else MPI.DOUBLE
        read_handles(&self.call.h, MPI, comm, datatype, MPI.SUM)
        self.call.in_place = mpi_in_place(MPI)
        self.call.function = <void*><uintptr_t>mpi_function_address(MPI, "MPI_Allreduce")
        self.comm = comm
        self.capsule = PyCapsule_New(<void*>sum_in_place, b"mpitrain.InPlaceSum", NULL)
        PyCapsule_SetContext(self.capsule, &self.call)

    def __call__(self, buf):
        """Sum ``buf`` (1-D, C-contiguous, writable, of ``dtype``) over the ranks in place; returns None.
        An MPI error raises mpi4py's MPI.Exception."""
        cdef float[::1] f
        cdef double[::1] g
        cdef void* data
        cdef Py_ssize_t count
        cdef int code
        if getattr(buf, "dtype", None) != self.dtype:
            raise ValueError(f"buf must be a {self.dtype} array")
        if self.dtype == np.float32:
            f = buf
            count, data = f.shape[0], <void*>&f[0] if f.shape[0] else NULL
        else:
            g = buf
            count, data = g.shape[0], <void*>&g[0] if g.shape[0] else NULL
        if count > INT_MAX:
            raise ValueError(f"buf has {count} entries; MPI_Allreduce takes at most {INT_MAX}")
        with nogil:
            code = sum_in_place(&self.call, data, count)
        if code != 0:
            from mpi4py import MPI
            raise MPI.Exception(code)
