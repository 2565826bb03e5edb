"""Slurm batch scripts from the templates in ``jobs/*.sbatch``: render, and submit with sbatch.

A template is a bash script with ``@@NAME@@`` placeholders, a syntax bash never uses, so the
script's own ``${SLURM_NTASKS}`` and ``$(...)`` pass through untouched. Every value is checked
and shell-quoted before it is put in; a placeholder alone on its line whose value is empty
removes the line. Templates:

    single_node   one node, ``mpirun -n $SLURM_NTASKS`` (one rank per core), the mpirun
                  beside ``--python``
    multi_node    several nodes, ``srun`` with ``--ntasks-per-node``
    gpu           GPU nodes, one rank per GPU (``--gpus-per-task=1``)
    sweep         a job array: one array task per ``--config`` given, each in its own folder

Each runs ``python -m mpitrain train --config ... --resume auto``: asked to stop by Slurm's
signal before the time limit, the run writes a checkpoint and exits 75; submitted again (or
requeued with ``--requeue``) it continues from that checkpoint, its log appended to the same
``%x-%j.out``. The srun templates pass ``--srun-mpi`` to ``srun --mpi``; ``auto`` (the default)
is decided in the job, on the compute node, by ``python -m mpitrain.slurm srun-mpi``: there the
job's modules are loaded and ``--python`` is the interpreter the ranks run, which need not be
true where the script is rendered (a login node, a laptop). ``job submit`` asks
``sbatch --test-only`` first, so a request the cluster can never satisfy is refused at once,
then prints the job id alone on stdout.
"""
from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PLACEHOLDER = re.compile(r"@@([A-Z][A-Z0-9_]*)@@")
TIME = re.compile(r"^(?:(\d+)-)?(\d+):([0-5]\d):([0-5]\d)$")
SLURM_NAME = re.compile(r"^[A-Za-z0-9_.,+-]+$")
MODULE_NAME = re.compile(r"^[A-Za-z0-9_./+-]+$")
SRUN_MPI_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a plugin name of `srun --mpi=list`
#: ``--srun-mpi`` values that are not a plugin: decide in the job / leave srun's default
SRUN_MPI_CHOICES = {"auto": "auto", "default": "''"}
#: the templates of jobs/, one line each (``job render --help`` lists them)
TEMPLATES = {
    "single_node": "one node: mpirun starts one rank per task (--signal=B:USR1 to the batch shell)",
    "multi_node": "several nodes: srun starts --ntasks-per-node ranks on each (srun's PMI: --srun-mpi)",
    "gpu": "GPU nodes: srun starts one rank per GPU (--gpus-per-node)",
    "sweep": "a job array: array task i trains the i-th --config on its own allocation",
}


class JobSpecError(ValueError):
    """A bad argument to ``job render`` / ``job submit``; names the option."""


def template_folders() -> list[Path]:
    """Where templates are looked for: ./jobs, then the jobs/ of this source checkout."""
    here = Path.cwd() / "jobs"
    source = Path(__file__).resolve().parents[1] / "jobs"
    return [here] if here.resolve() == source.resolve() else [here, source]


def find_template(name: str) -> Path:
    """A template by name (``multi_node``) or by path (``jobs/multi_node.sbatch``)."""
    as_path = Path(name)
    if as_path.suffix == ".sbatch" and as_path.is_file():
        return as_path
    for folder in template_folders():
        candidate = folder / f"{name}.sbatch"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for folder in template_folders() for p in folder.glob("*.sbatch")})
    raise JobSpecError(f"unknown job template {name!r}; known: {', '.join(known) or 'none (no jobs/ folder here)'}")


def parse_time(text: str) -> str:
    """Check a Slurm time limit ``[D-]HH:MM:SS``; returns it unchanged."""
    match = TIME.match(text.strip())
    if not match:
        raise JobSpecError(f"--time: expected [D-]HH:MM:SS (e.g. 02:00:00 or 1-12:00:00), got {text!r}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    if days * 86400 + hours * 3600 + minutes * 60 + seconds == 0:
        raise JobSpecError(f"--time: must be longer than zero, got {text!r}")
    return text.strip()


def seconds_of(time_limit: str) -> int:
    days, hours, minutes, seconds = (int(g or 0) for g in TIME.match(time_limit).groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


@dataclass
class JobSpec:
    """What ``job render`` puts in a template (see ``add_job_parser`` for the meaning)."""

    template: str
    time: str
    configs: list
    nodes: int = 1
    ntasks_per_node: int | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int = 1
    job_name: str = "mpitrain"
    partition: str | None = None
    account: str | None = None
    python: str = "python"
    modules: list = field(default_factory=list)
    overrides: list = field(default_factory=list)
    signal_seconds: int = 120
    requeue: bool = False
    srun_mpi: str | None = None  # None: "auto" for the srun templates

    def validate(self) -> None:
        for name in ("nodes", "cpus_per_task"):
            if getattr(self, name) < 1:
                raise JobSpecError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        for name in ("ntasks_per_node", "gpus_per_node"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise JobSpecError(f"--{name.replace('_', '-')}: must be >= 1, got {value}")
        self.time = parse_time(self.time)
        if not 0 < self.signal_seconds < seconds_of(self.time):
            raise JobSpecError(f"--signal-seconds: must be > 0 and shorter than --time, got {self.signal_seconds}")
        for name in ("job_name", "partition", "account"):
            value = getattr(self, name)
            if value is not None and not SLURM_NAME.match(value):
                raise JobSpecError(f"--{name.replace('_', '-')}: letters, digits and _.,+- only, got {value!r}")
        for module in self.modules:
            if not MODULE_NAME.match(module):
                raise JobSpecError(f"--module: not a module name: {module!r}")
        if self.srun_mpi is not None:
            if self.template == "single_node":
                raise JobSpecError("--srun-mpi: the single_node template starts the ranks with mpirun, not srun")
            if self.srun_mpi not in SRUN_MPI_CHOICES and not SRUN_MPI_NAME.match(self.srun_mpi):
                raise JobSpecError(f"--srun-mpi: auto, default or a plugin of `srun --mpi=list` "
                                   f"(pmi2, pmix, ...), got {self.srun_mpi!r}")
        if self.template == "sweep":
            for override in self.overrides:
                if override.split("=", 1)[0].strip() == "run.output_dir":
                    raise JobSpecError(f"--set {override}: the sweep writes each config's run to "
                                       "runs/<job name>/<config name>; drop it (--job-name names the folder)")
        if self.template == "single_node" and self.nodes != 1:
            raise JobSpecError(f"--nodes: the single_node template runs on 1 node, got {self.nodes} "
                               "(use multi_node)")
        if self.template == "gpu":
            if self.gpus_per_node is None:
                raise JobSpecError("--gpus-per-node: required by the gpu template (one rank per GPU)")
            if self.ntasks_per_node is None:
                self.ntasks_per_node = self.gpus_per_node
            if self.ntasks_per_node != self.gpus_per_node:
                raise JobSpecError(f"--ntasks-per-node: the gpu template runs one rank per GPU, so it must equal "
                                   f"--gpus-per-node ({self.gpus_per_node}), got {self.ntasks_per_node}")
        elif self.gpus_per_node is not None:
            raise JobSpecError(f"--gpus-per-node: only the gpu template takes it, not {self.template}")
        if self.ntasks_per_node is None:
            raise JobSpecError("--ntasks-per-node: required (ranks per node)")
        if not self.configs:
            raise JobSpecError("--config: required")
        if len(self.configs) > 1 and self.template != "sweep":
            raise JobSpecError(f"--config: the {self.template} template takes one config; "
                               "give several to the sweep template")
        stems = [Path(c).stem for c in self.configs]
        if len(set(stems)) != len(stems):
            raise JobSpecError(f"--config: the sweep names each run's folder by its config's file name; "
                               f"these repeat: {', '.join(sorted({s for s in stems if stems.count(s) > 1}))}")
        self.check_configs()

    def check_configs(self) -> None:
        """Load every config with the overrides now, not after the job waited in the queue."""
        from .config import ConfigError, load_config

        for path in self.configs:
            if not Path(path).is_file():
                raise JobSpecError(f"--config: no such file: {path}")
            try:
                load_config(path, self.overrides)
            except ConfigError as exc:
                raise JobSpecError(f"--config {path}: {exc}") from None

    def values(self) -> dict:
        q = shlex.quote
        extra = []
        if self.partition:
            extra.append(f"#SBATCH --partition={self.partition}")
        if self.account:
            extra.append(f"#SBATCH --account={self.account}")
        if self.requeue:
            extra.append("#SBATCH --requeue")
        train_args = " ".join(f"--set {q(o)}" for o in self.overrides)
        srun_mpi = self.srun_mpi or "auto"
        return {
            "JOB_NAME": self.job_name,
            "NODES": str(self.nodes),
            "NTASKS_PER_NODE": str(self.ntasks_per_node),
            "CPUS_PER_TASK": str(self.cpus_per_task),
            "GPUS_PER_NODE": str(self.gpus_per_node or 0),
            "TIME": self.time,
            "SIGNAL_SECONDS": str(self.signal_seconds),
            "SBATCH_EXTRA": "\n".join(extra),
            "MODULES": f"module load {' '.join(self.modules)}" if self.modules else "",
            "PYTHON": q(self.python),
            "CONFIG": q(self.configs[0]),
            "CONFIGS": " ".join(q(c) for c in self.configs),
            "LAST_TASK": str(len(self.configs) - 1),
            "TRAIN_ARGS": train_args,
            "SRUN_MPI": SRUN_MPI_CHOICES.get(srun_mpi) or q(srun_mpi),
            "REQUEUE": 'scontrol requeue "${SLURM_JOB_ID}"' if self.requeue else "",
        }


def fill(template_text: str, values: dict, origin: str = "template") -> str:
    """Replace every ``@@NAME@@``; a placeholder alone on a line with an empty value drops the line."""
    unknown = sorted(set(PLACEHOLDER.findall(template_text)) - set(values))
    if unknown:
        raise JobSpecError(f"{origin}: unknown placeholder(s) {', '.join('@@%s@@' % u for u in unknown)}")
    lines = []
    for line in template_text.splitlines(keepends=True):
        alone = PLACEHOLDER.fullmatch(line.strip())
        if alone and values[alone.group(1)] == "":
            continue
        indent = line[: len(line) - len(line.lstrip())] if alone else ""
        if alone and "\n" in values[alone.group(1)]:  # multi-line value: indent every line alike
            value = values[alone.group(1)].replace("\n", "\n" + indent)
            lines.append(indent + value + "\n")
            continue
        lines.append(PLACEHOLDER.sub(lambda m: values[m.group(1)], line))
    return "".join(lines)


def render(spec: JobSpec) -> str:
    """The batch script of ``spec`` (checked: raises JobSpecError)."""
    path = find_template(spec.template)
    spec.template = path.stem
    spec.validate()
    return fill(path.read_text(), spec.values(), origin=str(path))


def spec_from_args(args) -> JobSpec:
    return JobSpec(
        template=args.template, time=args.time, configs=args.config, nodes=args.nodes,
        ntasks_per_node=args.ntasks_per_node, gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task, job_name=args.job_name, partition=args.partition,
        account=args.account, python=args.python, modules=args.module, overrides=args.set,
        signal_seconds=args.signal_seconds, requeue=args.requeue, srun_mpi=args.srun_mpi,
    )


def write_script(text: str, output) -> Path:
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def submit(script: Path, sbatch: str | None = None) -> str:
    """Hand ``script`` to sbatch; returns the job id. First ``sbatch --test-only``: a request the
    cluster can never run (more tasks than the partition has) is a JobSpecError with Slurm's
    reason now, instead of a job that pends for ever."""
    sbatch = sbatch or shutil.which("sbatch")
    if sbatch is None:
        raise JobSpecError(f"sbatch not found on PATH: this is not a Slurm login node. The script is "
                           f"ready at {script}; run `sbatch {script}` where Slurm is")
    test = subprocess.run([sbatch, "--test-only", str(script)], capture_output=True, text=True)
    if test.returncode != 0:
        raise JobSpecError(f"sbatch --test-only refused {script}: {last_line(test.stderr + test.stdout)}")
    done = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True)
    job_id = done.stdout.strip().split(";")[0]  # --parsable: "id" or "id;cluster"
    if done.returncode != 0 or not job_id.isdigit():
        raise JobSpecError(f"sbatch did not submit {script} (exit {done.returncode}): "
                           f"{last_line(done.stderr + done.stdout)}")
    sys.stderr.write(done.stderr)  # warnings, if any
    return job_id


def job_command(args) -> int:
    spec = spec_from_args(args)
    text = render(spec)
    if args.job_action == "render":
        if args.output is None:
            sys.stdout.write(text)
        else:
            print(f"wrote {write_script(text, args.output)}", file=sys.stderr)
        return 0
    script = write_script(text, args.output or Path("runs") / "jobs" / f"{spec.job_name}-{spec.template}.sbatch")
    print(f"wrote {script}", file=sys.stderr)
    print(submit(script), flush=True)  # the job id alone, for a script: id=$(mpitrain job submit ...)
    return 0


def add_job_parser(sub) -> None:
    job = sub.add_parser("job", help="render a Slurm batch script from a template, or submit it")
    actions = job.add_subparsers(dest="job_action", required=True)
    for action, help_text in (("render", "write the batch script (to stdout, or -o FILE)"),
                              ("submit", "write the batch script and hand it to sbatch")):
        width = max(map(len, TEMPLATES))
        epilog = "templates:\n" + "\n".join(f"  {name:<{width}}  {text}" for name, text in TEMPLATES.items())
        p = actions.add_parser(action, help=help_text, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("template", help=f"template name ({', '.join(TEMPLATES)}) or a path to a .sbatch file")
        p.add_argument("--config", action="append", required=True, metavar="FILE",
                       help="mpitrain config (jobs/configs/<algorithm>*.toml); the sweep takes several")
        p.add_argument("--time", required=True, help="time limit [D-]HH:MM:SS")
        p.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
        p.add_argument("--ntasks-per-node", type=int, help="MPI ranks per node")
        p.add_argument("--gpus-per-node", type=int, help="GPUs per node (gpu template: one rank each)")
        p.add_argument("--cpus-per-task", type=int, default=1, help="cores per rank (OMP_NUM_THREADS); default 1")
        p.add_argument("--job-name", default="mpitrain")
        p.add_argument("--partition")
        p.add_argument("--account")
        p.add_argument("--python", default="python",
                       help="Python of the environment with mpitrain on the compute nodes (default: python)")
        p.add_argument("--module", action="append", default=[], help="environment module to load; may be repeated")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="config override passed to train; may be repeated")
        p.add_argument("--signal-seconds", type=int, default=120,
                       help="Slurm sends SIGUSR1 this long before the time limit (default 120)")
        p.add_argument("--requeue", action="store_true",
                       help="requeue the job after a checkpoint at the time limit (it resumes by itself)")
        p.add_argument("--srun-mpi", metavar="PLUGIN",
                       help="srun --mpi=PLUGIN for the srun templates: pmi2 (MPICH, the mpich wheel), pmix "
                            "(Open MPI), another plugin of `srun --mpi=list`, default (srun's own), or auto "
                            "(the default: pmi2/pmix/default from the MPI mpi4py loads, decided in the job)")
        p.add_argument("-o", "--output", help="where to write the script")
