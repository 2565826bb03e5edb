"""Command line: ``python -m mpitrain <command> ...``.

    train       run a configured job (under mpiexec / srun)
    plot        draw metrics files as PNG
    bench       micro-benchmarks (see mpitrain.bench)
    experiment  the papers' experiments (see mpitrain.experiments)
"""
from __future__ import annotations

import argparse
import importlib
import sys


def _load_entry(spec: str):
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def cmd_train(args) -> int:
    from .config import ConfigError, load_config
    from .runtime import JobError, agree, world
    from .train import train

    comm = world()
    try:
        config = agree(comm, lambda: load_config(args.config, args.set), what="invalid configuration")
        digests = comm.allgather(config.canonical_json())
        differing = [rank for rank, digest in enumerate(digests) if digest != digests[0]]
        if differing:
            raise JobError(f"invalid configuration: the config on rank(s) {', '.join(map(str, differing))} "
                           "differs from rank 0's (same file and --set on every rank?)")
        train(config, comm)
    except (JobError, ConfigError) as exc:
        if comm.Get_rank() == 0:
            print(f"mpitrain: error: {exc}", file=sys.stderr, flush=True)
        return getattr(exc, "code", 2)
    return 0


def cmd_plot(args) -> int:
    from .plot import plot_metrics

    plot_metrics(args.metrics, args.output)
    print(f"wrote {args.output}")
    return 0


def _registry_command(registry: dict, kind: str, args) -> int:
    if args.name not in registry:
        known = ", ".join(sorted(registry)) or "none"
        print(f"mpitrain: error: unknown {kind} {args.name!r}; known: {known}", file=sys.stderr)
        return 2
    return int(_load_entry(registry[args.name])(args.rest) or 0)


def cmd_bench(args) -> int:
    from .bench import BENCHMARKS

    return _registry_command(BENCHMARKS, "benchmark", args)


def cmd_experiment(args) -> int:
    from .experiments import EXPERIMENTS

    return _registry_command(EXPERIMENTS, "experiment", args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mpitrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="run a configured training job (start it with mpiexec)")
    p.add_argument("--config", help="TOML file (defaults apply to what it leaves out)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config value; may be repeated")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("plot", help="plot loss and suboptimality from metrics JSONL files")
    p.add_argument("metrics", nargs="+", help="metrics.jsonl files")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.set_defaults(func=cmd_plot)

    for name, func, what in (("bench", cmd_bench, "a benchmark"), ("experiment", cmd_experiment, "an experiment")):
        p = sub.add_parser(name, help=f"run {what}; see mpitrain.{name}")
        p.add_argument("name")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
