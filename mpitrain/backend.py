"""The one place that imports CuPy: array module, device arrays, stream synchronisation.

Everything else asks this module. ``array_module(x)`` is NumPy for host arrays and CuPy
for device arrays (the xp idiom of CuPy's own code), so a function written once with
``xp = array_module(x)`` runs on either; ``kernels_for(x)`` picks the Cython module or its
CuPy twin module (same function names and arguments) for an array. CuPy is optional: without
it (or without a visible GPU) every array is a host array and ``gpu_unavailable_reason()``
says why the GPU path cannot run.

Tests only: a *stand-in device* (``use_stand_in()``, or ``MPITRAIN_TEST_STAND_IN_DEVICE=1`` in
the environment of a process, read once at import: the hook of the mpiexec tests) makes
``StandInArray``, a NumPy subclass in host memory, the device array type. The device code path
of the training loop (allocation through the array module, staging at the MPI boundary, stream
synchronisation, host copies for evaluation and checkpoints) then runs on a CPU machine; the
objective keeps its host features and its Cython kernels (the CuPy kernels are the one part a
stand-in cannot run), and ``stand_in_counts`` counts synchronisations and copies. Never set in
production: a run under it computes on the CPU while reporting the GPU path.
"""
from __future__ import annotations

import importlib
import os
import types

import numpy as np

_CUPY = None  # the cupy module once imported; False when the import failed
_CUPY_ERROR = ""  # why the import failed


STAND_IN_VARIABLE = "MPITRAIN_TEST_STAND_IN_DEVICE"  # tests only: "1" turns the stand-in device on


class StandInArray(np.ndarray):
    """Tests only: host memory the backend treats as device memory (see the module doc)."""


class _StandInModule(types.ModuleType):
    """NumPy whose allocating functions return StandInArray: the stand-in device's ``xp``."""

    ALLOCATING = frozenset({"zeros", "empty", "zeros_like", "empty_like", "asarray", "ascontiguousarray"})

    def __getattr__(self, name):
        function = getattr(np, name)
        if name not in self.ALLOCATING:
            return function
        return lambda *args, **kwargs: function(*args, **kwargs).view(StandInArray)


_STAND_IN = [None]  # the stand-in's array module while it is on, else None
stand_in_counts = {"synchronize": 0, "to_host": 0, "to_device": 0}  # stand-in device only


def use_stand_in(on: bool = True) -> None:
    """Tests only: turn the stand-in device on (or off); resets ``stand_in_counts``."""
    _STAND_IN[0] = _StandInModule("numpy_standing_in_for_cupy") if on else None
    for key in stand_in_counts:
        stand_in_counts[key] = 0


def stand_in_active() -> bool:
    return _STAND_IN[0] is not None


def cupy_module():
    """The cupy module, or None when CuPy is not installed (or fails to import)."""
    global _CUPY, _CUPY_ERROR
    if _CUPY is None:
        try:
            _CUPY = importlib.import_module("cupy")
        except Exception as exc:  # ImportError, or a CUDA library that fails to load
            _CUPY, _CUPY_ERROR = False, f"{type(exc).__name__}: {exc}"
    return _CUPY or None


def gpu_count() -> int:
    """GPUs this process sees (0 without CuPy or without a driver; 1 with the stand-in)."""
    if stand_in_active():
        return 1
    cp = cupy_module()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def gpu_unavailable_reason() -> str | None:
    """None when the GPU path can run here, else a sentence saying why not."""
    if stand_in_active():
        return None
    if cupy_module() is None:
        return ("CuPy is not installed (pip install cupy-cuda13x or cupy-cuda12x, matching the "
                f"CUDA driver): {_CUPY_ERROR}")
    if gpu_count() == 0:
        return "CuPy is installed but sees no GPU (check CUDA_VISIBLE_DEVICES and the driver)"
    return None


def is_device_array(x) -> bool:
    """Whether x is a CuPy array or a cupyx.scipy.sparse matrix (False without CuPy)."""
    if stand_in_active():
        return isinstance(x, StandInArray)
    cp = cupy_module()
    if cp is None:
        return False
    if isinstance(x, cp.ndarray):
        return True
    sparse = importlib.import_module("cupyx.scipy.sparse")
    return bool(sparse.issparse(x))


def array_module(x):
    """numpy for host arrays, cupy for device arrays."""
    if not is_device_array(x):
        return np
    return _STAND_IN[0] if stand_in_active() else cupy_module()


def to_host(x):
    """A NumPy copy (or x itself when it is already on the host)."""
    if not is_device_array(x):
        return x
    if stand_in_active():
        stand_in_counts["to_host"] += 1
        return np.array(x, subok=False)
    return x.get()


def host_tree(tree):
    """``tree`` (nested dicts, lists, tuples) with every device array replaced by its host copy."""
    if isinstance(tree, dict):
        return {key: host_tree(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(host_tree(value) for value in tree)
    return to_host(tree)


def assign(out, values) -> None:
    """out[...] = values, where out may be a device array and values a host one (a resume)."""
    if is_device_array(out) and not is_device_array(values):
        values = array_module(out).asarray(values)
    out[...] = values


def to_device(x):
    """x on the current GPU (CuPy array, or cupyx CSR matrix for a SciPy sparse matrix)."""
    if stand_in_active():
        stand_in_counts["to_device"] += 1
        return np.array(x).view(StandInArray)  # a copy, as a transfer makes
    cp = cupy_module()
    if cp is None:
        raise RuntimeError(gpu_unavailable_reason())
    import scipy.sparse

    if scipy.sparse.issparse(x):
        return importlib.import_module("cupyx.scipy.sparse").csr_matrix(x.tocsr())
    return cp.asarray(x)


def synchronize(x=None) -> None:
    """Wait for the current stream when x is a device array (or when x is None and CuPy is
    loaded): MPI reads device memory only after the kernels that write it have finished."""
    if x is not None and not is_device_array(x):
        return
    if stand_in_active():
        stand_in_counts["synchronize"] += 1
        return
    cp = cupy_module()
    if cp is not None:
        cp.cuda.get_current_stream().synchronize()


def activate(index: int) -> None:
    """Make GPU ``index`` this process's current device (nothing to do for the stand-in)."""
    if not stand_in_active():
        cupy_module().cuda.Device(index).use()


def device_objective(objective):
    """``objective`` with its features on the current GPU (``objective.to_device()``); the
    stand-in device keeps the host objective (its kernels are the Cython ones)."""
    return objective if stand_in_active() else objective.to_device()


def pinned_empty(shape, dtype):
    """A page-locked host array (staging buffers of mpitrain.comm.device_buffers)."""
    if stand_in_active():
        return np.empty(shape, dtype=dtype)
    return importlib.import_module("cupyx").empty_pinned(shape, dtype=dtype)


def copy_to_host(x, out) -> None:
    """out (host) <- x (device), one transfer."""
    if stand_in_active():
        stand_in_counts["to_host"] += 1
        out[...] = x
    else:
        x.get(out=out)


def copy_to_device(host, x) -> None:
    """x (device) <- host, one transfer."""
    if stand_in_active():
        stand_in_counts["to_device"] += 1
        x[...] = host
    else:
        x.set(host)


def kernels_for(x, name: str):
    """The kernel module ``name`` for arrays like x: ``mpitrain._native.<name>`` (Cython) for
    host arrays, ``mpitrain.gpu.<name>`` (CuPy, same functions) for device arrays (the Cython
    one for the stand-in device's)."""
    device = is_device_array(x) and not stand_in_active()
    key = ("mpitrain.gpu" if device else "mpitrain._native", name)
    module = _KERNELS.get(key)
    if module is None:  # imported once: this runs on every compressor call
        module = _KERNELS[key] = importlib.import_module(f"{key[0]}.{name}")
    return module


_KERNELS = {}  # (package, name) -> kernel module


if os.environ.get(STAND_IN_VARIABLE, "") == "1":  # tests only (see the module doc)
    use_stand_in(True)
