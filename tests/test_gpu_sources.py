"""Every raw CUDA source of mpitrain/gpu/cuda compiles with nvcc (skips where nvcc is absent).

Built the way CuPy builds them at run time: C++17, no FMA contraction, to PTX."""
import shutil
import subprocess

import pytest

from mpitrain.gpu import CUDA_DIR, NVRTC_OPTIONS, sources

NVCC = shutil.which("nvcc")


def test_sources_are_found():
    assert {p.name for p in sources()} >= {"compress_round.cu", "compress_pack.cu", "objectives.cu"}


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("path", sources(), ids=lambda p: p.name)
def test_source_compiles_with_nvcc(path, tmp_path):
    options = [opt.replace("--std=", "-std=") for opt in NVRTC_OPTIONS]
    result = subprocess.run([NVCC, *options, "--ptx", "-I", str(CUDA_DIR), str(path),
                             "-o", str(tmp_path / (path.stem + ".ptx"))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_inlined_source_has_no_include():
    from mpitrain.gpu import source

    for path in sources():
        assert '#include "mpt_common.cuh"' not in source(path.stem)
