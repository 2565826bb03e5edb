"""Paper experiments: ``python -m mpitrain experiment <name> [--quick]``.

Each entry maps a name to ``"module:function"``; the function takes ``argv`` and returns an
exit code. Modules are imported only when their experiment runs.
"""
EXPERIMENTS = {
    "async-stragglers": "mpitrain.experiments.async_stragglers:main",
    "async-stragglers-mlp": "mpitrain.experiments.async_stragglers_mlp:main",
    "compression-bits": "mpitrain.experiments.compression_bits:main",
    "local-sgd-speedup": "mpitrain.experiments.local_sgd_speedup:main",
}
#: one line each, for ``--help`` and ``python -m mpitrain list experiments``
DESCRIPTIONS = {
    "async-stragglers": "asynchronous SGD with and without clipping, one slow worker (Erickson and Johansson)",
    "async-stragglers-mlp": "async SGD on an MLP, sub-Weibull noise, steps tuned per method (Erickson and Johansson)",
    "compression-bits": "bits to a target for every compressor, with and without error feedback (Beznosikov et al.)",
    "local-sgd-speedup": "steps to a target against workers K and period H (Stich)",
}
#: experiments whose runs go to a RunPool (mpitrain.experiments.parallel): the command line
#: spawns the pool's first child before it imports them (parallel.start_ahead)
RUN_POOL = {"compression-bits"}
