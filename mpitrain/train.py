"""The outer training loop: set-up, timing, evaluation, metrics, summary. No algorithm math.

Timing: ``time`` in the metrics is training wall time, evaluation excluded (evaluations are
full passes over the data and would otherwise dominate short runs).

The loop runs ``step(t)`` until the algorithm says it is ``done(t)``. A synchronous
algorithm is evaluated (collectively) every ``run.log_every`` steps and after the last; an
asynchronous one (``evaluates_in_loop = False``) is evaluated at the start, before any
update, and after ``finish()`` at the points of its ``trajectory()``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .algorithms import ALGORITHMS
from .algorithms.base import Worker
from .comm.accounting import CommStats
from .evaluation import Evaluator, is_finite_record
from .faults import fault_from_environment
from .metrics import MetricsWriter, ProgressLine, format_summary, write_json_atomic
from .problem import build_problem
from .runtime import JobError
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

    def __init__(self, config, comm):
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
        self.fault = fault_from_environment()

    def evaluate(self, step: int, x=None, seconds=None, extras: bool = True) -> dict:
        """Evaluate (collectively) ``x`` (default: the algorithm's evaluation point) as the
        record of ``step`` at training time ``seconds`` (default: now)."""
        seconds = self.train_seconds if seconds is None else seconds
        record = {"step": step, "time": seconds}
        record.update(self.evaluator.evaluate(self.algorithm.evaluation_point() if x is None else x))
        record.update(self.stats.as_dict())
        record["steps_per_second"] = (step - self.start_step) / seconds if seconds > 0 else 0.0
        if extras:
            record.update(self.algorithm.metrics())
        if not is_finite_record(record):
            raise JobError(f"training diverged: loss or gradient is not finite at step {step} "
                           f"(loss {record['loss']}, |grad| {record['grad_norm']}); lower the step size", code=3)
        return record

    def run(self) -> dict:
        cfg = self.config
        speaker = self.rank == 0
        if speaker:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.out_dir / "config.json", {"ranks": self.size, **cfg.to_dict()})
        writer = MetricsWriter(self.out_dir / "metrics.jsonl", enabled=speaker)
        algorithm = self.algorithm
        progress = ProgressLine(algorithm.planned_steps(), enabled=speaker and cfg.run.progress)
        log_every = cfg.run.log_every
        try:
            record = self.evaluate(self.start_step)
            writer.write(record)
            progress.update(record)
            t = self.start_step
            while not algorithm.done(t):
                if self.fault is not None:
                    self.fault.maybe_fire(self.rank, t, algorithm)
                started = time.perf_counter()
                algorithm.step(t)
                self.train_seconds += time.perf_counter() - started
                t += 1
                if algorithm.evaluates_in_loop and (t % log_every == 0 or algorithm.done(t)):
                    record = self.evaluate(t)
                    writer.write(record)
                    progress.update(record)
            algorithm.finish()
            points = algorithm.trajectory()
            for i, point in enumerate(points):
                record = self.evaluate(point["step"], point["x"], point["time"], extras=i + 1 == len(points))
                writer.write(record)
                progress.update(record)
        finally:
            progress.close()
            writer.close()
        return self.finish(record)

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
            "output_dir": str(self.out_dir),
        }
        if self.rank == 0:
            write_json_atomic(self.out_dir / "summary.json", summary)
            if self.config.run.save_parameters:
                np.save(self.out_dir / "parameters.npy", x_final)
            self.algorithm.write_outputs(self.out_dir)
        return summary


def train(config, comm) -> dict:
    trainer = Trainer(config, comm)
    summary = trainer.run()
    if comm.Get_rank() == 0:
        print(format_summary(summary), flush=True)
    return summary
