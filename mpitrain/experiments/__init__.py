"""Paper experiments: ``python -m mpitrain experiment <name> [--quick]``.

Each entry maps a name to ``"module:function"``; the function takes ``argv`` and returns an
exit code. Modules are imported only when their experiment runs.
"""
EXPERIMENTS = {
    "async-stragglers": "mpitrain.experiments.async_stragglers:main",
    "compression-bits": "mpitrain.experiments.compression_bits:main",
    "local-sgd-speedup": "mpitrain.experiments.local_sgd_speedup:main",
}
