"""Build the Cython kernels of mpitrain.

Every ``pyx/<name>.pyx`` becomes the extension ``mpitrain._native.<name>``.
Kernels use fused ``floating`` types (float32 and float64 from one source) and
release the GIL in their loops; they are compiled with -O3 and -ffp-contract=off (no
fused multiply-add: the SIMD versions of a kernel round exactly like the scalar one).
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def extensions():
    # C headers included from the .pyx files (``cdef extern from``): an edit to one rebuilds
    # every module, as Cython tracks only .pyx/.pxd/.pxi dependencies itself
    headers = sorted(glob.glob(os.path.join("pyx", "*.h")))
    modules = []
    for source in sorted(glob.glob(os.path.join("pyx", "*.pyx"))):
        name = os.path.splitext(os.path.basename(source))[0]
        modules.append(
            Extension(
                f"mpitrain._native.{name}",
                [source],
                depends=headers,
                include_dirs=[numpy.get_include(), "pyx"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=["-O3", "-fno-math-errno", "-ffp-contract=off"],
            )
        )
    return cythonize(
        modules,
        language_level=3,
        include_path=["pyx"],
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )


setup(ext_modules=extensions())
