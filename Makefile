# Two commands do everything on a fresh machine (Python >= 3.10 and a C compiler):
#   make demo   set up .venv (mpich + mpi4py from PyPI), build the kernels, train with 4 MPI ranks
#   make test   the same set-up, then the test suite (MPI tests start mpiexec themselves)
#   make test-fast  the unit tests only (pytest markers: mpi, gpu, slow; see tests/conftest.py)
#   make test-slurm the job templates on a real Slurm: starts a one-node one here first
#               (scripts/slurm-local.sh; as root it installs Debian's packages when missing;
#               `bash scripts/slurm-local.sh stop` stops it), then tests/test_slurm_real.py
#   make test-torch the tests that compare with PyTorch (marker torch), in a second venv,
#               .venv-torch, with the CPU build of torch (TORCH_SPEC); the core package and
#               .venv never import or hold it
# Both reuse .venv when run again; kernels are rebuilt when a file in pyx/ changes.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MPIEXEC := $(VENV)/bin/mpiexec
NP ?= 4
PYTEST_ARGS ?=
DEMO_OUT ?= runs/demo

export OMP_NUM_THREADS ?= 1
export MPITRAIN_DATA ?= $(abspath ../shared/data)

SLURM_DIR ?= /tmp/mpitrain-slurm
TORCH_VENV ?= .venv-torch
TORCH_SPEC ?= torch==2.13.0

.PHONY: all venv build demo test test-fast test-slurm test-torch clean

all: build

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "setuptools>=64" wheel "cython>=3.0" "numpy>=1.26" \
	    "scipy>=1.10" "matplotlib>=3.7" "greenlet>=3.0" "mpich" "mpi4py>=4.0" "pytest>=7"
	touch $@

venv: $(VENV)/.deps

$(VENV)/.built: $(VENV)/.deps setup.py $(wildcard pyx/*.pyx pyx/*.pxd pyx/*.pxi pyx/*.h)
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

build: $(VENV)/.built

demo: build
	$(MPIEXEC) -n $(NP) $(PY) -m mpitrain train --config jobs/configs/demo.toml --set run.output_dir=$(DEMO_OUT) --overwrite
	$(PY) -m mpitrain plot $(DEMO_OUT)/metrics.jsonl -o $(DEMO_OUT)/metrics.png

test: build
	$(PY) -m pytest -q $(PYTEST_ARGS)

# the unit tests alone (no mpiexec, no GPU, nothing slow): well under a minute
test-fast: build
	$(PY) -m pytest -q -m "not mpi and not gpu and not slow" $(PYTEST_ARGS)

test-slurm: build
	bash scripts/slurm-local.sh start $(SLURM_DIR)
	status=0; SLURM_CONF=$(SLURM_DIR)/etc/slurm.conf MPITRAIN_SLURM_TESTS=1 \
	    $(PY) -m pytest -q -rs $(PYTEST_ARGS) tests/test_slurm_real.py || status=$$?; \
	    bash scripts/slurm-local.sh stop $(SLURM_DIR); exit $$status

# PyTorch beside the package (not installed into it): the kernels built in place by `build`
# are found through PYTHONPATH, so one build serves both venvs (the same Python)
$(TORCH_VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)" "numpy>=1.26" "scipy>=1.10" \
	    "matplotlib>=3.7" "greenlet>=3.0" "mpich" "mpi4py>=4.0" "pytest>=7"
	touch $@

test-torch: build $(TORCH_VENV)/.deps
	PYTHONPATH=$(CURDIR) $(TORCH_VENV)/bin/python -m pytest -q -m torch $(PYTEST_ARGS)

clean:
	rm -rf build dist *.egg-info mpitrain/_native/*.so mpitrain/_native/*.c pyx/*.c $(VENV) $(TORCH_VENV)
