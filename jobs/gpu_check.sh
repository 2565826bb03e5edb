#!/usr/bin/env bash
# The GPU checks of mpitrain's CuPy path, on a machine with an NVIDIA GPU, from the repo root:
#
#     bash jobs/gpu_check.sh OUTDIR
#
# 1. Build: when $PYTHON (default python3) already imports cupy, numpy, scipy, Cython and
#    mpi4py (a GPU image, possibly offline), the Cython kernels are built in place for it;
#    otherwise `make build` makes .venv and $CUPY_PACKAGE (default cupy-cuda13x; use
#    cupy-cuda12x for CUDA 12 drivers) is pip-installed into it.
# 2. Tests: the CuPy cases (tests/test_gpu_*.py, which skip nothing when a GPU is seen) and the
#    CPU tests of every file the dispatch touches. Set FULL=1 to run the whole suite as well.
# 3. Benchmark: `python -m mpitrain bench compress --device gpu --json` (GPU name, GB/s of every
#    encoder/decoder vs a device-to-device copy and vs cupy/torch Top-k, end-to-end steps/s
#    GPU vs CPU on dense least squares with d = 1e6).
# Everything lands in OUTDIR: build.log, env.txt, pytest.txt, bench_compress_gpu.json/.txt,
# summary.txt. Exit status: 0 when tests and benchmark both succeeded. Takes ~3-5 minutes.
set -uo pipefail
out=${1:?usage: bash jobs/gpu_check.sh OUTDIR}
mkdir -p "$out"
PYTHON=${PYTHON:-python3}
CUPY_PACKAGE=${CUPY_PACKAGE:-cupy-cuda13x}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
export MPITRAIN_DATA=${MPITRAIN_DATA:-$PWD/../shared/data}
start=$SECONDS

if "$PYTHON" -c "import cupy, numpy, scipy, Cython, mpi4py" >/dev/null 2>&1; then
    echo "build: in place for $("$PYTHON" --version 2>&1) (it has CuPy)" | tee "$out/build.log"
    if ! "$PYTHON" setup.py build_ext --inplace -j 8 >>"$out/build.log" 2>&1; then
        tail -30 "$out/build.log"; echo "build failed"; exit 1
    fi
    PY=$PYTHON
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    echo "build: make build, then pip install $CUPY_PACKAGE" | tee "$out/build.log"
    if ! make build PYTHON="$PYTHON" >>"$out/build.log" 2>&1 \
        || ! .venv/bin/python -m pip install --quiet "$CUPY_PACKAGE" >>"$out/build.log" 2>&1; then
        tail -30 "$out/build.log"; echo "build failed"; exit 1
    fi
    PY=.venv/bin/python
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$PY" - <<'PY'
import cupy, numpy, sys
from mpitrain import backend
from mpitrain.comm.device_buffers import cuda_aware_mpi
print("python", sys.version.split()[0], "numpy", numpy.__version__, "cupy", cupy.__version__)
print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
print("gpus seen", backend.gpu_count(), "unavailable reason:", backend.gpu_unavailable_reason())
print("cuda-aware MPI (auto):", cuda_aware_mpi("auto"))
PY
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

timeout 330 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_gpu_kernels.py \
    tests/test_gpu_host_rules.py tests/test_gpu_sources.py tests/test_gpu_device.py \
    tests/test_bench_compress_gpu.py tests/test_compress_kernels.py tests/test_compress_wire.py \
    tests/test_compress_properties.py tests/test_compressed_units.py tests/test_clip.py \
    tests/test_objectives.py 2>&1 | tee "$out/pytest.txt"
tests_rc=${PIPESTATUS[0]}

timeout 240 "$PY" -m mpitrain bench compress --device gpu --json \
    >"$out/bench_compress_gpu.json" 2>"$out/bench_compress_gpu.err"
bench_rc=$?
if [ "$bench_rc" -eq 0 ]; then
    "$PY" -c "import json, sys; from mpitrain.bench.compress_gpu import format_table; \
print(format_table(json.load(open(sys.argv[1]))))" "$out/bench_compress_gpu.json" \
        | tee "$out/bench_compress_gpu.txt"
else
    cat "$out/bench_compress_gpu.err"
fi

full_rc=skipped
if [ "${FULL:-0}" = 1 ]; then
    timeout 900 "$PY" -m pytest -q -p no:cacheprovider 2>&1 | tee "$out/pytest_full.txt"
    full_rc=${PIPESTATUS[0]}
fi

{ echo "tests exit status: $tests_rc"
  echo "benchmark exit status: $bench_rc"
  echo "full suite exit status: $full_rc"
  echo "command: python -m mpitrain bench compress --device gpu --json"
  echo "seconds: $((SECONDS - start))"
} | tee "$out/summary.txt"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
