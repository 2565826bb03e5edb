# MPI calls made from C without mpi.h (included, not a module): the handles a call needs, read off
# mpi4py's objects, and the address of a function of the MPI library mpi4py loaded.
#
# The kernels are built without mpi.h and mpi4py loads the MPI library privately (RTLD_LOCAL), so a
# kernel cannot call an MPI function by name: ``mpi_function_address`` finds it through mpi4py's
# extension module (``dlsym`` on that module searches the libraries it depends on). Handles are ints
# in MPICH's ABI and pointers in Open MPI's and the MPI 5 standard ABI (``MPI._sizeof`` says which);
# ``read_handles`` reads a communicator, a datatype and (optionally) an operation in either form.
# Included by inplace_allreduce.pyx (MPI_Allreduce) and compressed_steps.pyx (MPI_Allgather).
from libc.stdint cimport uint32_t, uintptr_t

ctypedef struct MPIHandles:
    bint int_handles  # handles are int (else pointers)
    int comm_int, datatype_int, op_int
    void* comm_pointer
    void* datatype_pointer
    void* op_pointer


cdef int read_handles(MPIHandles* handles, object MPI, object comm, object datatype, object op) except -1:
    """The handles of ``comm``, ``datatype`` and ``op`` (None: no operation) into ``handles``;
    RuntimeError for an ABI whose handles are neither ints nor pointers."""
    objects = [comm, datatype] + ([] if op is None else [op])
    sizes = {MPI._sizeof(o) for o in objects}
    mask = (1 << (8 * <object>sizeof(void*))) - 1  # a handle or address as an unsigned word
    if sizes == {sizeof(int)}:
        handles.int_handles = True
        handles.comm_int = <int><uint32_t>(MPI._handleof(comm) & 0xFFFFFFFF)
        handles.datatype_int = <int><uint32_t>(MPI._handleof(datatype) & 0xFFFFFFFF)
        handles.op_int = 0 if op is None else <int><uint32_t>(MPI._handleof(op) & 0xFFFFFFFF)
    elif sizes == {sizeof(void*)}:
        handles.int_handles = False
        handles.comm_pointer = <void*><uintptr_t>(MPI._handleof(comm) & mask)
        handles.datatype_pointer = <void*><uintptr_t>(MPI._handleof(datatype) & mask)
        handles.op_pointer = NULL if op is None else <void*><uintptr_t>(MPI._handleof(op) & mask)
    else:
        raise RuntimeError(f"unsupported MPI ABI: handles of {sorted(sizes)} bytes")
    return 0


cdef object mpi_function_address(object MPI, str name):
    """The address of the MPI library's function ``name`` (e.g. "MPI_Allreduce"), the library
    mpi4py uses; RuntimeError when it cannot be found."""
    import ctypes
    import os

    try:
        library = ctypes.CDLL(MPI.__file__, mode=os.RTLD_LAZY | getattr(os, "RTLD_NOLOAD", 0))
        return ctypes.cast(getattr(library, name), ctypes.c_void_p).value
    except (OSError, AttributeError) as exc:
        raise RuntimeError(f"cannot find {name} through mpi4py ({MPI.__file__}): {exc}") from None


cdef const void* mpi_in_place(object MPI):
    """MPI_IN_PLACE, the constant as mpi4py holds it."""
    mask = (1 << (8 * <object>sizeof(void*))) - 1
    return <const void*><uintptr_t>(int(MPI.IN_PLACE) & mask)
