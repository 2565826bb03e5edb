"""The one place that imports CuPy: array module, device arrays, stream synchronisation.

Everything else asks this module. ``array_module(x)`` is NumPy for host arrays and CuPy
for device arrays (the xp idiom of CuPy's own code), so a function written once with
``xp = array_module(x)`` runs on either; ``kernels_for(x)`` picks the Cython module or its
CuPy twin module (same function names and arguments) for an array. CuPy is optional: without
it (or without a visible GPU) every array is a host array and ``gpu_unavailable_reason()``
says why the GPU path cannot run.
"""
from __future__ import annotations

import importlib

import numpy as np

_CUPY = None  # the cupy module once imported; False when the import failed
_CUPY_ERROR = ""  # why the import failed


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
    """GPUs this process sees (0 without CuPy or without a driver)."""
    cp = cupy_module()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def gpu_unavailable_reason() -> str | None:
    """None when the GPU path can run here, else a sentence saying why not."""
    if cupy_module() is None:
        return ("CuPy is not installed (pip install cupy-cuda13x or cupy-cuda12x, matching the "
                f"CUDA driver): {_CUPY_ERROR}")
    if gpu_count() == 0:
        return "CuPy is installed but sees no GPU (check CUDA_VISIBLE_DEVICES and the driver)"
    return None


def is_device_array(x) -> bool:
    """Whether x is a CuPy array or a cupyx.scipy.sparse matrix (False without CuPy)."""
    cp = cupy_module()
    if cp is None:
        return False
    if isinstance(x, cp.ndarray):
        return True
    sparse = importlib.import_module("cupyx.scipy.sparse")
    return bool(sparse.issparse(x))


def array_module(x):
    """numpy for host arrays, cupy for device arrays."""
    return cupy_module() if is_device_array(x) else np


def to_host(x):
    """A NumPy copy (or x itself when it is already on the host)."""
    return x.get() if is_device_array(x) else x


def to_device(x):
    """x on the current GPU (CuPy array, or cupyx CSR matrix for a SciPy sparse matrix)."""
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
    cp = cupy_module()
    if cp is not None:
        cp.cuda.get_current_stream().synchronize()


def kernels_for(x, name: str):
    """The kernel module ``name`` for arrays like x: ``mpitrain._native.<name>`` (Cython) for
    host arrays, ``mpitrain.gpu.<name>`` (CuPy, same functions) for device arrays."""
    key = ("mpitrain.gpu" if is_device_array(x) else "mpitrain._native", name)
    module = _KERNELS.get(key)
    if module is None:  # imported once: this runs on every compressor call
        module = _KERNELS[key] = importlib.import_module(f"{key[0]}.{name}")
    return module


_KERNELS = {}  # (package, name) -> kernel module
