"""CuPy kernels: the GPU twins of the Cython modules in ``mpitrain._native``.

``mpitrain.gpu.<name>`` has the functions of ``mpitrain._native.<name>`` with the same
arguments, on CuPy arrays; ``mpitrain.backend.kernels_for(x, name)`` picks one of the two
for an array, so callers never import CuPy. Raw CUDA sources live in ``cuda/`` (shipped as
package data); ``raw_module(name)`` compiles one once per process with NVRTC (CuPy caches
the binary on disk), without FMA contraction so that float rounding matches the CPU.
Importing any submodule needs CuPy, except ``network``: written against an array module given to it,
so NumPy stands in for CuPy in the tests that run on machines without a GPU.
"""
from __future__ import annotations

import functools
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parent / "cuda"
HEADER = "mpt_common.cuh"
NVRTC_OPTIONS = ("--std=c++17", "--fmad=false")
BLOCK = 256  # threads per block of every launch


def source(name: str) -> str:
    """The CUDA source ``cuda/<name>.cu`` with the shared header inlined (NVRTC has no -I
    for the package folder once installed elsewhere)."""
    text = (CUDA_DIR / f"{name}.cu").read_text()
    header = (CUDA_DIR / HEADER).read_text().replace("#pragma once", "")
    return text.replace(f'#include "{HEADER}"', header)


def sources() -> list:
    """Paths of every .cu file (the compile test builds each with nvcc)."""
    return sorted(CUDA_DIR.glob("*.cu"))


@functools.lru_cache(maxsize=None)
def raw_module(name: str):
    """cupy.RawModule of ``cuda/<name>.cu``, built once per process."""
    import cupy

    return cupy.RawModule(code=source(name), options=NVRTC_OPTIONS)


@functools.lru_cache(maxsize=None)
def _multiprocessors() -> int:
    import cupy

    return int(cupy.cuda.Device().attributes["MultiProcessorCount"])


def launch(kernel, work: int, args) -> None:
    """Run ``kernel`` over ``work`` items (grid-stride loops: any grid size is correct)."""
    if work <= 0:
        return
    blocks = max(1, min(-(-work // BLOCK), 32 * _multiprocessors()))
    kernel((blocks,), (BLOCK,), args)
