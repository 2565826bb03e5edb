"""Benchmarks: ``python -m mpitrain bench <name> [...]``.

Each entry maps a name to ``"module:function"``; the function takes ``argv`` (a list of
strings) and returns an exit code. Modules are imported only when their benchmark runs.
"""
BENCHMARKS = {
    "parse": "mpitrain.bench.parse:main",
    "rma": "mpitrain.bench.rma:main",
}
