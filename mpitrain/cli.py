"""Command line: ``python -m mpitrain <command> ...``.

    train       run a configured job (under mpiexec / srun)
    plot        draw metrics files as PNG
    compare     plot runs against steps, time and bits sent; print a table
    job         render a Slurm batch script from jobs/*.sbatch, or submit it
    list        what there is: algorithms, compressors, datasets, objectives, benches, experiments, fields
    bench       micro-benchmarks (python -m mpitrain bench --help lists them)
    experiment  the papers' experiments (python -m mpitrain experiment --help lists them)
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from . import __version__
from .argparsing import ArgumentParser, user_error


def _load_entry(spec: str):
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def config_differences(mine: dict, reference: dict) -> list:
    """``section.field`` names whose values differ between two config dicts, sorted."""
    names = []
    for section in sorted(set(mine) | set(reference)):
        ours, theirs = mine.get(section, {}), reference.get(section, {})
        names += [f"{section}.{name}" for name in sorted(set(ours) | set(theirs)) if ours.get(name) != theirs.get(name)]
    return names


def check_same_config(comm, config) -> None:
    """JobError on every rank when any rank's config differs from rank 0's, naming the ranks,
    the fields and the values (collective: one allgather of a digest, more only on a mismatch)."""
    import hashlib

    from .runtime import JobError

    digests = comm.allgather(hashlib.sha256(config.canonical_json().encode()).hexdigest())
    if all(digest == digests[0] for digest in digests):
        return
    trees = comm.allgather(config.to_dict())
    parts = []
    for rank, tree in enumerate(trees):
        for name in config_differences(tree, trees[0])[:3]:
            section, field = name.split(".")
            parts.append(f"{name} is {tree.get(section, {}).get(field)!r} on rank {rank} "
                         f"but {trees[0].get(section, {}).get(field)!r} on rank 0")
    raise JobError("invalid configuration: the ranks were given different configurations: "
                   + "; ".join(parts) + " (start every rank with the same --config and --set)")


def cmd_train(args) -> int:
    from .config import ConfigError, load_config
    from .runtime import RANK0_SPEAKS_SECONDS, JobError, agree, world
    from .slurm import check_world_size
    from .stopping import EXIT_INTERRUPTED, StopRequest
    from .train import error_line, train

    comm = world()
    stop = StopRequest(comm).install_for_set_up(RANK0_SPEAKS_SECONDS)  # Slurm's SIGUSR1 may come early
    overrides = list(args.set)
    if args.checkpoint_every is not None:
        overrides.append(f"run.checkpoint_every={args.checkpoint_every}")
    if args.resume is not None and args.overwrite:
        if comm.Get_rank() == 0:
            print("mpitrain: error: --resume and --overwrite exclude each other", file=sys.stderr, flush=True)
        return 2
    try:
        check_world_size(comm)
        config = agree(comm, lambda: load_config(args.config, overrides), what="invalid configuration")
        check_same_config(comm, config)
        if args.print_config:
            if comm.Get_rank() == 0:
                print_config(config)
            return 0
        if comm.Get_rank() == 0:
            for name in config.unused_sections():
                print(f"mpitrain: warning: [{name}] is given but train.algorithm = {config.train.algorithm!r} "
                      "does not read it", file=sys.stderr, flush=True)
        if args.dry_run:
            dry_run(config, comm)
            return 0
        train(config, comm, resume=args.resume, overwrite=args.overwrite, stop=stop)
    except (JobError, ConfigError) as exc:
        if comm.Get_rank() == 0:
            print(error_line(exc) if isinstance(exc, JobError) else f"mpitrain: error: {exc}",
                  file=sys.stderr, flush=True)
        return getattr(exc, "code", 2)
    except KeyboardInterrupt:  # Ctrl-C before training started, seen by rank 0 only: nothing to save
        print("mpitrain: interrupted (SIGINT) before training started; nothing new was written",
              file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)  # the ranks may be in different collectives: no MPI_Finalize
    return 0


def cmd_list(args) -> int:
    from .catalogue import config_reference, format_listing, listing

    if args.markdown:
        if args.kind != "fields":
            return user_error("--markdown is for `list fields` (the config reference)")
        print(config_reference(), end="")
        return 0
    print(format_listing(listing(args.kind)))
    return 0


def print_config(config) -> None:
    """The resolved config as TOML, every default shown (unset optional fields as comments)."""
    print(config_toml(config), end="")


def config_toml(config) -> str:
    lines = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        for name, value in values.items():
            lines.append(f"# {name} = (unset)" if value is None else f"{name} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def dry_run(config, comm) -> None:
    """Validate, load the data, build the problem and the algorithm, report sizes; write nothing."""
    import dataclasses

    import numpy as np

    from .memory import peak_rss_mb
    from .rundir import folder_name
    from .train import Trainer

    quick = dataclasses.replace(config, run=dataclasses.replace(config.run, reference=False))
    trainer = Trainer(quick, comm)  # builds data, objective and algorithm; claims no folder
    p = trainer.problem
    rows = comm.gather(p.dataset.n_samples, root=0)
    peaks = comm.gather(peak_rss_mb(), root=0)
    if comm.Get_rank() == 0:
        d = p.objective.n_params
        itemsize = np.dtype(p.objective.dtype).itemsize
        print(f"dry run: {config.train.algorithm} on {config.data.dataset} with {comm.Get_size()} ranks")
        print(f"  data: {p.n_global} samples x {p.objective.n_features} features ({config.data.dtype}), "
              f"rows per rank {min(rows)}..{max(rows)}")
        print(f"  model: {p.objective!r}" if config.objective.name == "mlp" else f"  model: {config.objective.name}")
        print(f"  parameters: d = {d} ({d * itemsize / 2**20:.3f} MB per copy)")
        print(f"  memory after set-up: {max(peaks):.0f} MB peak per rank (largest), {sum(peaks):.0f} MB in all")
        print(f"  output folder: {folder_name(config, comm.Get_size())} (not created)")
        print("  f*: not solved in a dry run" if config.run.reference else "  f*: off (run.reference = false)")


def cmd_plot(args) -> int:
    from .plot import plot_metrics

    try:
        plot_metrics(args.metrics, args.output)
    except (OSError, ValueError) as exc:
        return user_error(describe_os_error(exc))
    print(f"wrote {args.output}")
    return 0


def cmd_compare(args) -> int:
    from .compare import compare_runs

    try:
        print(compare_runs(args.metrics, args.output, args.csv))
    except (OSError, ValueError) as exc:
        return user_error(describe_os_error(exc))
    for path in (args.output, args.csv):
        if path is not None:
            print(f"wrote {path}")
    return 0


def describe_os_error(exc: Exception) -> str:
    """``cannot read x.jsonl: No such file or directory`` rather than ``[Errno 2] ...``."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


def cmd_job(args) -> int:
    from .jobs import JobSpecError, job_command

    try:
        return job_command(args)
    except JobSpecError as exc:
        print(f"mpitrain: error: {exc}", file=sys.stderr)
        return 2


def _registry_command(registry: dict, kind: str, args) -> int:
    """Run a benchmark or an experiment; a data set it cannot open or a bad field is one line
    (rank 0 under MPI) and exit code 2, not a traceback; Ctrl-C is one line and exit code 130."""
    from .argparsing import speaks, user_error
    from .data.errors import DataError
    from .fields import ConfigError
    from .stopping import EXIT_INTERRUPTED

    if args.name not in registry:
        known = ", ".join(sorted(registry)) or "none"
        print(f"mpitrain: error: unknown {kind} {args.name!r}; known: {known}", file=sys.stderr)
        return 2
    try:
        return int(_load_entry(registry[args.name])(args.rest) or 0)
    except (DataError, ConfigError) as exc:
        return user_error(f"{kind} {args.name}: {exc}")
    except KeyboardInterrupt:
        if speaks():  # rank 0 under mpiexec (a bench), which passes SIGINT to every rank
            print(f"mpitrain: {kind} {args.name}: interrupted (SIGINT); the result files it had written are "
                  "whole (each is written atomically), the others were not written", file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)  # under MPI the ranks may be in different collectives: no MPI_Finalize


def cmd_bench(args) -> int:
    from .bench import BENCHMARKS

    return _registry_command(BENCHMARKS, "benchmark", args)


def cmd_experiment(args) -> int:
    from .experiments import EXPERIMENTS, RUN_POOL

    if args.name not in RUN_POOL:
        return _registry_command(EXPERIMENTS, "experiment", args)
    from .experiments import parallel

    # the pool's first child imports the experiment while this process does (and loads the data)
    parallel.start_ahead(EXPERIMENTS[args.name].split(":")[0])
    try:
        return _registry_command(EXPERIMENTS, "experiment", args)
    finally:
        parallel.discard_ahead()  # unless the experiment's pool took the child over


def train_choices() -> str:
    """The names ``train`` takes, one line each (``train --help``'s epilog)."""
    from . import catalogue

    blocks = []
    for field, rows in (("train.algorithm", catalogue.algorithms()), ("objective.name", catalogue.objectives()),
                        ("data.dataset", catalogue.datasets()), ("<method>.compressor", catalogue.compressors())):
        width = max(map(len, rows))
        blocks.append(f"{field}:\n" + "\n".join(f"  {name:<{width}}  {text}" for name, text in rows.items()))
    return "\n\n".join(blocks) + "\n\nevery config field: python -m mpitrain list fields (or docs/config.md)"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m mpitrain", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mpitrain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="run a configured training job (start it with mpiexec)",
                       epilog=train_choices, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML file (defaults apply to what it leaves out)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config value; may be repeated")
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="write a checkpoint every N steps (run.checkpoint_every); SIGTERM/SIGUSR1 always write one")
    p.add_argument("--resume", metavar="PATH",
                   help="continue from a checkpoint: a checkpoints folder, one of its step-* folders, or 'auto' "
                        "(this run's own checkpoints if there are any, else start afresh)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier run in run.output_dir (without it such a folder is "
                        "refused)")
    p.add_argument("--print-config", action="store_true",
                   help="print the full resolved config as TOML (every default shown) and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, load the data, build the problem, report sizes and memory, and exit (writes nothing)")
    p.set_defaults(func=cmd_train)

    from .catalogue import KINDS

    p = sub.add_parser("list", help="list what mpitrain offers: " + ", ".join(KINDS))
    p.add_argument("kind", choices=KINDS, help="what to list")
    p.add_argument("--markdown", action="store_true", help="fields: the config reference as Markdown (docs/config.md)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("plot", help="plot loss, suboptimality, gradient norm and accuracy from metrics JSONL files")
    p.add_argument("metrics", nargs="+", help="metrics.jsonl files")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("compare", help="compare runs: a table, and suboptimality against gradients, wall time "
                                       "and bits sent")
    p.add_argument("metrics", nargs="+", help="metrics.jsonl files")
    p.add_argument("-o", "--output", help="PNG file to draw the runs into (without it: the table only)")
    p.add_argument("--csv", help="also write the table to this CSV file")
    p.set_defaults(func=cmd_compare)

    from .jobs import add_job_parser

    add_job_parser(sub)
    p = sub.choices["job"]
    p.set_defaults(func=cmd_job)

    from .bench import DESCRIPTIONS as BENCHES
    from .experiments import DESCRIPTIONS as EXPERIMENTS

    for name, func, what, choices in (("bench", cmd_bench, "a benchmark", BENCHES),
                                      ("experiment", cmd_experiment, "an experiment", EXPERIMENTS)):
        width = max(map(len, choices))
        epilog = "choices:\n" + "\n".join(f"  {key:<{width}}  {text}" for key, text in sorted(choices.items()))
        epilog += f"\n\n`python -m mpitrain {name} NAME --help` describes one"
        p = sub.add_parser(name, help=f"run {what}: {', '.join(sorted(choices))}", epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("name", metavar="NAME", help=f"{what[2:] if what.startswith('a ') else what[3:]} to run")
        p.add_argument("rest", nargs=argparse.REMAINDER, help="its own options")
        p.set_defaults(func=func)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
