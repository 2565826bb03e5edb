"""MPI on arrays that may live on a GPU: CUDA-aware MPI, or staging through pinned host memory.

An MPI library built with CUDA support reads and writes device memory itself; any other
library must be handed host memory. ``MPIBuffers`` hides the difference from the
communication code::

    with buffers.inplace(buf) as mpi_buf:      # buf: NumPy or CuPy array
        comm.Allreduce(MPI.IN_PLACE, mpi_buf, op=MPI.SUM)

Host arrays pass through untouched (no copy, no synchronisation). For a device array the
current stream is synchronised before the MPI call in both modes (MPI does not know the
stream: a kernel still writing the buffer would race the transfer); with staging the array
is copied into a page-locked host buffer first (reused across calls of the same size and
dtype) and, for buffers MPI writes, copied back after the call.

CUDA-aware detection (``cuda_aware_mpi("auto")``): explicit environment switches of the
common libraries first (MPICH ``MPIR_CVAR_ENABLE_GPU``, Cray ``MPICH_GPU_SUPPORT_ENABLED``,
Open MPI ``OMPI_MCA_opal_cuda_support``, MVAPICH2 ``MV2_USE_CUDA``), then the library's own
answer ``MPIX_Query_cuda_support()`` when it exports that symbol (Open MPI, MVAPICH2,
MPICH >= 4), else False: staging is always safe, a wrong True crashes.
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

import numpy as np

from .. import backend

SETTINGS = ("auto", True, False)  # values of the config field train.cuda_aware_mpi
ENVIRONMENT_SWITCHES = (  # (variable, library)
    ("MPIR_CVAR_ENABLE_GPU", "MPICH"),
    ("MPICH_GPU_SUPPORT_ENABLED", "Cray MPICH"),
    ("OMPI_MCA_opal_cuda_support", "Open MPI"),
    ("MV2_USE_CUDA", "MVAPICH2"),
)
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def environment_answer(environ=None):
    """(True/False, why) from the first switch set in the environment, or (None, why)."""
    environ = os.environ if environ is None else environ
    for name, library in ENVIRONMENT_SWITCHES:
        value = environ.get(name, "").strip().lower()
        if value in TRUE_WORDS:
            return True, f"{name}={environ[name]} ({library})"
        if value in FALSE_WORDS:
            return False, f"{name}={environ[name]} ({library})"
    return None, "no CUDA switch of a known MPI library is set"


def library_answer():
    """(True/False, why) from MPIX_Query_cuda_support() of the loaded MPI library, or (None, why)."""
    try:
        from mpi4py import MPI  # noqa: F401  (loads the library; the symbol is then global)

        query = ctypes.CDLL(None).MPIX_Query_cuda_support
    except (AttributeError, OSError, ImportError):
        return None, "the MPI library has no MPIX_Query_cuda_support"
    query.restype = ctypes.c_int
    value = int(query())
    return value == 1, f"MPIX_Query_cuda_support() = {value}"


def cuda_aware_mpi(setting="auto", environ=None, query=library_answer):
    """(aware, why): whether MPI may be handed device pointers, and the reason.

    ``setting``: True or False (the config decides), or "auto" (detect, see module doc)."""
    if setting is True or setting is False:
        return setting, "set in the config (train.cuda_aware_mpi)"
    if setting != "auto":
        raise ValueError(f"cuda_aware_mpi must be 'auto', true or false, got {setting!r}")
    answer, why = environment_answer(environ)
    if answer is not None:
        return answer, why
    answer, why_query = query()
    if answer is not None:
        return answer, why_query
    return False, f"{why}; {why_query}: staging through pinned host memory"


class CupyMemory:
    """Device operations of ``MPIBuffers``, through mpitrain.backend (CuPy, or the tests'
    stand-in device; unit tests also substitute a logging stand-in of their own)."""

    def is_device(self, x):
        return backend.is_device_array(x)

    def synchronize(self):
        backend.synchronize()

    def pinned_empty(self, shape, dtype):
        return backend.pinned_empty(shape, dtype)

    def to_host(self, x, out):
        backend.copy_to_host(x, out)

    def to_device(self, host, x):
        backend.copy_to_device(host, x)


class MPIBuffers:
    """Buffers MPI can use for host or device arrays; see the module docstring."""

    def __init__(self, cuda_aware: bool, memory=None):
        self.cuda_aware = bool(cuda_aware)
        self.memory = memory if memory is not None else CupyMemory()
        self._staging = {}  # (role, size, dtype) -> page-locked host array, reused
        self.copies = 0  # host <-> device copies made (for tests and accounting)

    def _host_buffer(self, x, role):
        key = (role, x.size, np.dtype(x.dtype).str)  # send and receive never share one
        if key not in self._staging:
            self._staging[key] = self.memory.pinned_empty(x.shape, x.dtype)
        return self._staging[key].reshape(x.shape)

    def _prepare(self, x, read: bool, role: str):
        """What to hand MPI for x (read: MPI reads x's current values)."""
        if not self.memory.is_device(x):
            return x
        self.memory.synchronize()
        if self.cuda_aware:
            return x
        host = self._host_buffer(x, role)
        if read:
            self.memory.to_host(x, host)
            self.copies += 1
        return host

    def send(self, x, role="send"):
        """A buffer holding x's values for an MPI call that only reads it. ``role``: a name of
        its own for a buffer that stays in use past the call (a nonblocking send)."""
        return self._prepare(x, read=True, role=role)

    def open_receive(self, x, role="receive"):
        """For a nonblocking call: a buffer MPI writes; ``close_receive(x, buf)`` once it has
        completed puts its values into x. ``role`` keeps it apart from blocking calls' buffers."""
        return self._prepare(x, read=False, role=role)

    def close_receive(self, x, buf) -> None:
        self._finish(x, buf)

    @contextmanager
    def inplace(self, x):
        """A buffer MPI may read and write; x holds what MPI wrote after the block."""
        buf = self._prepare(x, read=True, role="receive")
        yield buf
        self._finish(x, buf)

    @contextmanager
    def receive(self, x):
        """A buffer MPI only writes (its old values are not copied); x gets them after."""
        buf = self._prepare(x, read=False, role="receive")
        yield buf
        self._finish(x, buf)

    def _finish(self, x, buf):
        if buf is not x:
            self.memory.to_device(buf, x)
            self.copies += 1


_DEFAULT = {}
_SETTING = ["auto"]  # the process's train.cuda_aware_mpi (set by mpitrain.device.select_device)


def configure(setting) -> None:
    """Use ``setting`` ("auto", True, False) for the buffers the communication code uses."""
    if setting not in SETTINGS:
        raise ValueError(f"cuda_aware_mpi must be 'auto', true or false, got {setting!r}")
    _SETTING[0] = setting


def default_buffers(setting=None) -> MPIBuffers:
    """One shared MPIBuffers per setting (detection runs once per process, on first use)."""
    setting = _SETTING[0] if setting is None else setting
    if setting not in _DEFAULT:
        _DEFAULT[setting] = MPIBuffers(cuda_aware_mpi(setting)[0])
    return _DEFAULT[setting]
