"""Test markers, given from what a test does rather than by hand:

- ``mpi``: the test (or one of its fixtures) starts ``mpiexec`` or a benchmark that does
  (tests/mpi_run.py's helpers, ``mpiexec_path``, a bench's own launcher);
- ``gpu``: the test needs CuPy and a GPU (tests/test_gpu_*.py; they skip without one);
- ``slow``: the test takes more than a few seconds on its own (the modules in ``SLOW``);
- ``torch``: the test compares with PyTorch (modules named ``test_*torch*.py``); they skip where
  torch is not installed, as in .venv; ``make test-torch`` runs them in a venv that has it.

``make test-fast`` runs ``-m "not mpi and not gpu and not slow"``: the unit tests, in well under a
minute; ``make test`` runs everything.
"""
import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: what a test calls when it starts mpiexec (directly or through a helper that does)
LAUNCHERS = ("run_mpi", "run_mpi_script", "mpiexec_path", "start(", "run_bench(", "run_steps_bench", "sbatch")
#: modules whose tests are slow even without mpiexec
SLOW = ("test_compress_ranges.py", "test_gpu_host_rules.py", "test_objectives_reference.py", "test_bench_steps.py")


def pytest_configure(config):
    config.addinivalue_line("markers", "mpi: starts mpiexec (or a benchmark that does)")
    config.addinivalue_line("markers", "gpu: needs CuPy and a GPU (skips without one)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "torch: compares with PyTorch (skips without it; make test-torch)")


def _source(function) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


_LAUNCHING = {}  # module name -> names of its functions that (transitively) start mpiexec


def _launching_helpers(module) -> set:
    """The module's own functions that start mpiexec, directly or through each other."""
    if module.__name__ not in _LAUNCHING:
        functions = {name: _source(obj) for name, obj in vars(module).items()
                     if inspect.isfunction(obj) and obj.__module__ == module.__name__}
        found = {name for name, text in functions.items() if any(word in text for word in LAUNCHERS)}
        while True:
            more = {name for name, text in functions.items() if name not in found
                    and any(f"{helper}(" in text for helper in found)}
            if not more:
                break
            found |= more
        _LAUNCHING[module.__name__] = found
    return _LAUNCHING[module.__name__]


def _launches_mpiexec(item) -> bool:
    functions = [getattr(item, "function", None)]
    if hasattr(item, "_fixtureinfo"):
        functions += [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
    helpers = _launching_helpers(item.module) if getattr(item, "module", None) else set()
    for text in map(_source, functions):
        if any(word in text for word in LAUNCHERS) or any(f"{name}(" in text for name in helpers):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = Path(str(item.fspath)).name
        if name.startswith("test_gpu_"):
            item.add_marker(pytest.mark.gpu)
        if name in SLOW:
            item.add_marker(pytest.mark.slow)
        if "torch" in name:
            item.add_marker(pytest.mark.torch)
        if _launches_mpiexec(item):
            item.add_marker(pytest.mark.mpi)
