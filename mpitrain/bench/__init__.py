"""Benchmarks: ``python -m mpitrain bench <name> [...]``.

Each entry maps a name to ``"module:function"``; the function takes ``argv`` (a list of
strings) and returns an exit code. Modules are imported only when their benchmark runs.
"""
BENCHMARKS = {
    "compress": "mpitrain.bench.compress:main",
    "allreduce": "mpitrain.bench.allreduce:main",
    "parse": "mpitrain.bench.parse:main",
    "rma": "mpitrain.bench.rma:main",
    "scale": "mpitrain.bench.scale:main",
    "steps": "mpitrain.bench.steps:main",
}
