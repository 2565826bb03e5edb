"""The outer training loop: set-up, timing, evaluation, metrics, summary. No algorithm math.

Timing: ``time`` in the metrics is training wall time, evaluation excluded (evaluations are
full passes over the data and would otherwise dominate short runs).

The loop runs ``step(t)`` until the algorithm says it is ``done(t)``. A synchronous
algorithm is evaluated (collectively) every ``run.log_every`` steps and after the last; an
asynchronous one (``evaluates_in_loop = False``) is evaluated at the start, before any
update, and after ``finish()`` at the points of its ``trajectory()``.

Checkpoints (mpitrain.checkpoint): every ``run.checkpoint_every`` steps, and when any rank got
SIGTERM / SIGUSR1 (then the run stops after writing one). A resumed run restores parameters,
algorithm state, samplers, CommStats and ``train_seconds``, keeps the metrics records up to the
checkpoint's step and appends to them, so it continues the interrupted trajectory.

Divergence (mpitrain.divergence): every evaluation checks that the loss and gradient are
finite, and every checkpoint first checks that all ranks' algorithm state is finite, so a run
whose iterates turn NaN stops with exit code 3, names the step, and keeps its last good
checkpoint.

Stragglers (mpitrain.monitor): at every evaluation of a lock-step algorithm the ranks compare
their busy time (training time less communication time); rank 0 warns about a rank 10x slower
than the others. An injected fault (mpitrain.faults) fires inside the timed part of a step.

The summary adds each run's peak memory: ``peak_rss_mb_max`` and ``peak_rss_mb_median``, the
largest and the median over ranks of the process's peak resident set size (getrusage
``ru_maxrss``) in MB of 2^20 bytes.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import checkpoint
from .algorithms import ALGORITHMS
from .algorithms.base import Worker
from .comm.accounting import CommStats
from .divergence import DivergenceGuard
from .evaluation import Evaluator, is_finite_record
from .faults import fault_from_environment
from .memory import peak_rss_mb
from .metrics import MetricsWriter, ProgressLine, format_summary, write_json_atomic
from .monitor import StragglerMonitor
from .problem import build_problem
from .runtime import JobError, agree
from .sampling import BatchSampler
from .schedules import make_schedule


def output_dir(config, size: int) -> Path:
    template = config.run.output_dir
    dataset = Path(config.data.dataset).name
    try:
        return Path(template.format(algorithm=config.train.algorithm, dataset=dataset, size=size,
                                    seed=config.train.seed))
    except (KeyError, IndexError) as exc:
        raise JobError(f"config field 'run.output_dir': unknown placeholder {exc} in {template!r}")


class Trainer:
    """Runs one configured job on ``comm``; rank 0 writes ``out_dir``."""

    def __init__(self, config, comm, resume=None):
        self.config = config
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.out_dir = output_dir(config, self.size)
        self.problem = build_problem(config, comm)
        p = self.problem
        self.stats = CommStats()
        sampler = BatchSampler(p.dataset.n_samples, config.train.batch_size, config.train.seed, self.rank)
        self.worker = Worker(
            comm=comm, objective=p.objective, n_global=p.n_global, weight=p.weight, sampler=sampler,
            step_size=make_schedule(config.step_size, p.objective.l2), stats=self.stats, config=config,
            x0=p.x0,
        )
        self.algorithm = ALGORITHMS[config.train.algorithm](self.worker)
        self.evaluator = Evaluator(comm, p.objective, p.n_global, p.f_star)
        self.start_step = 0
        self.train_seconds = 0.0
        self.fault = agree(comm, fault_from_environment, what="MPITRAIN_FAULT")
        self.checkpoints = checkpoint.CheckpointStore(self.out_dir / "checkpoints", comm)
        self.guard = DivergenceGuard(comm, self.checkpoints.root)
        self.monitor = StragglerMonitor(comm) if self.algorithm.evaluates_in_loop else None
        if resume == "auto":  # continue from this run's own checkpoints when there are any (rank 0 looks)
            found = checkpoint.has_checkpoint(self.checkpoints.root) if self.rank == 0 else None
            resume = self.checkpoints.root if comm.bcast(found, root=0) else None
        self.resume = resume
        if not self.algorithm.evaluates_in_loop and (resume is not None or config.run.checkpoint_every):
            raise JobError(f"config field 'run.checkpoint_every': {config.train.algorithm} does not write or "
                           "resume checkpoints (its workers are not in lock step)")

    def evaluate(self, step: int, x=None, seconds=None, extras: bool = True) -> dict:
        """Evaluate (collectively) ``x`` (default: the algorithm's evaluation point) as the
        record of ``step`` at training time ``seconds`` (default: now)."""
        seconds = self.train_seconds if seconds is None else seconds
        record = {"step": step, "time": seconds}
        record.update(self.evaluator.evaluate(self.algorithm.evaluation_point() if x is None else x))
        record.update(self.stats.as_dict())
        record["steps_per_second"] = step / seconds if seconds > 0 else 0.0  # over the whole run, resumes included
        if extras:
            record.update(self.algorithm.metrics())
        if not is_finite_record(record):
            raise self.guard.error(f"loss or gradient is not finite at step {step} (loss {record['loss']}, "
                                   f"|grad| {record['grad_norm']})")
        self.guard.passed(step)
        return record

    def run(self) -> dict:
        cfg = self.config
        speaker = self.rank == 0
        if self.resume is not None:
            self.start_step = checkpoint.load(self, self.resume)
            self.guard.kept(self.start_step, checkpoint.resolve(self.resume))
        if self.monitor is not None:
            self.monitor.start(self.start_step, self.train_seconds, self.stats.comm_seconds)
        if speaker:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.out_dir / "config.json", {"ranks": self.size, **cfg.to_dict()})
            if self.resume is not None:
                checkpoint.truncate_metrics(self.out_dir / "metrics.jsonl", self.start_step)
        writer = MetricsWriter(self.out_dir / "metrics.jsonl", enabled=speaker, append=self.resume is not None)
        algorithm = self.algorithm
        progress = ProgressLine(algorithm.planned_steps(), enabled=speaker and cfg.run.progress)
        log_every = cfg.run.log_every
        stop = checkpoint.StopRequest(self.comm).install()
        try:
            # NaN / Inf: the divergence guard reports it once, from rank 0, not numpy on every rank
            with np.errstate(over="ignore", invalid="ignore"):
                record = self.evaluate(self.start_step)
                if self.resume is None:  # a resumed run's metrics already hold this record
                    writer.write(record)
                progress.update(record)
                t = self.start_step
                while not algorithm.done(t):
                    started = time.perf_counter()
                    if self.fault is not None:  # inside the timed part: a slowed rank shows as busy
                        self.fault.maybe_fire(self.rank, t, algorithm)
                    algorithm.step(t)
                    self.train_seconds += time.perf_counter() - started
                    t += 1
                    if algorithm.evaluates_in_loop and (t % log_every == 0 or algorithm.done(t)):
                        record = self.evaluate(t)
                        writer.write(record)
                        progress.update(record)
                        if self.monitor is not None:
                            self.monitor.check(t, self.train_seconds, self.stats.comm_seconds)
                    if algorithm.evaluates_in_loop:  # lock-step algorithms: every rank is at step t
                        self.maybe_checkpoint(t, stop)
                algorithm.finish()
                points = algorithm.trajectory()
                for i, point in enumerate(points):
                    record = self.evaluate(point["step"], point["x"], point["time"], extras=i + 1 == len(points))
                    writer.write(record)
                    progress.update(record)
        finally:
            stop.restore()
            progress.close()
            writer.close()
        return self.finish(record)

    def maybe_checkpoint(self, step: int, stop) -> None:
        """At a step boundary: write a checkpoint when due or asked for; stop if asked (collective)."""
        signum = stop.agreed(step)
        every = self.config.run.checkpoint_every
        if not signum and not (every and step % every == 0):
            return
        state = self.algorithm.state_dict()
        self.guard.check_state(state, step)  # never write a NaN checkpoint
        folder = self.checkpoints.save(self, step, state)
        self.guard.kept(step, folder)
        if signum and step < self.config.train.steps:
            raise checkpoint.Stopped(
                f"stopped by {checkpoint.signal_name(signum)} after step {step} of {self.config.train.steps}; "
                f"checkpoint written to {folder}; continue with --resume {self.checkpoints.root}")

    def finish(self, last: dict) -> dict:
        p = self.problem
        x_final = self.algorithm.evaluation_point()  # collective for some algorithms
        summary = {
            "algorithm": self.config.train.algorithm,
            "dataset": self.config.data.dataset,
            "ranks": self.size,
            "steps": last["step"],
            "n_samples": p.n_global,
            "n_features": p.objective.n_features,
            "final_loss": last["loss"],
            "final_suboptimality": last["suboptimality"],
            "final_grad_norm": last["grad_norm"],
            "f_star": p.f_star,
            "train_seconds": self.train_seconds,
            "steps_per_second": last["steps_per_second"],
            **self.stats.as_dict(),
            **peak_memory(self.comm),
            "output_dir": str(self.out_dir),
        }
        if self.rank == 0:
            write_json_atomic(self.out_dir / "summary.json", summary)
            if self.config.run.save_parameters:
                np.save(self.out_dir / "parameters.npy", x_final)
            self.algorithm.write_outputs(self.out_dir)
        return summary


def peak_memory(comm) -> dict:
    """{'peak_rss_mb_max', 'peak_rss_mb_median'} over the ranks of ``comm`` (collective)."""
    peaks = comm.allgather(peak_rss_mb())
    return {"peak_rss_mb_max": float(max(peaks)), "peak_rss_mb_median": float(np.median(peaks))}


def train(config, comm, resume=None) -> dict:
    trainer = Trainer(config, comm, resume=resume)
    summary = trainer.run()
    if comm.Get_rank() == 0:
        print(format_summary(summary), flush=True)
    return summary
