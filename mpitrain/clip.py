"""Gradient clipping as small pure functions (Erickson and Johansson 2026, docs/papers.md s.3).

    clip_lambda(g) = min(1, lambda / ||g||_2) g

Asynchronous SGD applies clip_lambda to every stale gradient before the server step
x <- x - gamma clip_lambda(g); the clipping removes tau_max from the complexity.
Arrays are 1-D float32 or float64 (C-contiguous), NumPy or CuPy (``backend.kernels_for``
picks the Cython or the CuPy kernels); norms are accumulated in double.
"""
import math

import numpy as np

from mpitrain import backend

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_vector(g, what):
    if not hasattr(g, "ndim") or g.ndim != 1 or g.dtype not in DTYPES:
        raise ValueError(f"{what} must be a 1-D float32 or float64 array")
    if not g.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous")


def global_norm(g):
    """||g||_2 of a 1-D float32/float64 array, accumulated in double (no overflow for float64); a float."""
    _check_vector(g, "g")
    return backend.kernels_for(g, "clip").l2_norm(g)


def clip_by_norm(g, max_norm, out=None):
    """(clip_lambda(g), ||g||_2) with lambda = max_norm: clip_lambda(g) = min(1, max_norm / ||g||_2) g.

    Erickson and Johansson 2026 (docs/papers.md s.3). A g inside the ball
    (||g||_2 <= max_norm, including g = 0) is returned unchanged (copied into out,
    or the same values when out is g). When g is scaled, the result's norm (in double)
    is guaranteed <= max_norm: the factor is nudged down by a few ulps if rounding to
    the array's dtype would cross the bound. out: None (a new array), g itself (in
    place), or an array of g's shape and dtype. A non-finite ||g|| raises ValueError.
    """
    _check_vector(g, "g")
    max_norm = float(max_norm)
    if not max_norm > 0 or math.isinf(max_norm):
        raise ValueError(f"max_norm must be a finite number > 0, got {max_norm!r}")
    kernels = backend.kernels_for(g, "clip")
    if out is None:
        out = backend.array_module(g).empty_like(g)
    elif out is not g:
        _check_vector(out, "out")
        if out.shape != g.shape or out.dtype != g.dtype:
            raise ValueError(f"out must have g's shape {g.shape} and dtype {g.dtype}")
    norm = kernels.clip_into(g, max_norm, out)  # one statement of the clip: pyx/clip_math.pxi (host)
    if not math.isfinite(norm):
        raise ValueError(f"||g||_2 is {norm}: cannot clip a non-finite gradient")
    return out, norm
