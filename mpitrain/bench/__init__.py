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
    "model": "mpitrain.bench.model:main",
    "bridge": "mpitrain.bench.bridge:main",
}
#: one line each, for ``--help`` and ``python -m mpitrain list benches``
DESCRIPTIONS = {
    "compress": "encode/decode GB/s of every compressor beside its NumPy formulation and a copy",
    "allreduce": "an averaging round against a bare in-place Allreduce of the same buffer (run under mpiexec)",
    "parse": "the LIBSVM reader against scikit-learn's load_svmlight_file",
    "rma": "pulls and pushes of the RMA parameter store (run under mpiexec)",
    "scale": "64 ranks on one node, memory at d = 1e7, steady memory over many steps",
    "steps": "steps/s of every lock-step method beside a plain C loop and a bare Allreduce",
    "model": "SGD steps/s of the MLP kernels beside the same model in PyTorch, one thread each",
    "bridge": "per-step time of the PyTorch bridge's methods beside plain PyTorch and DDP/gloo (1e4 to 1e7 params)",
}
