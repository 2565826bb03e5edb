"""The outer training loop: set-up, timing, evaluation, metrics, summary. No algorithm math.

Timing: ``time`` in the metrics is training wall time, evaluation excluded (evaluations are
full passes over the data and would otherwise dominate short runs).

The loop runs ``step(t)`` until the algorithm says it is ``done(t)``. A synchronous
algorithm is evaluated (collectively) every ``run.log_every`` steps and after the last; an
asynchronous one (``evaluates_in_loop = False``) is evaluated at the start, before any
update, and after ``finish()`` at the points of its ``trajectory()``.

Steps in blocks: a lock-step algorithm is handed all the steps up to the next boundary where
the loop has something to do (an evaluation, a checkpoint, a stop-signal check, the end) in
one ``run_steps(t, count)`` call, which may fuse them (Local SGD runs its local steps in C);
the metrics are those of one step per call. An injected fault that fires once (``raise``,
``kill``, ``nan``) ends a block at its step and fires before the next, so failures are tested on
the path runs take. One step per call remains for asynchronous algorithms, under an injected
straggler (``sleep`` fires every step), and with ``MPITRAIN_BLOCKS=0`` (for tests and benchmarks
that compare the two).

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

The run's folder (mpitrain.rundir) is claimed before any long work: created, locked, and
refused when it holds another run's results; rank 0's output is kept in its ``train.log``
(mpitrain.runlog). A write that fails (full disk, quota) stops every rank with one line naming
the file and what was kept. The summary records provenance (mpitrain.provenance) and where the
wall time went: set-up (data, f*), training, evaluation.

Stopping: SIGTERM / SIGUSR1 / SIGINT (mpitrain.stopping) make every algorithm write a
checkpoint and stop. An asynchronous one (async_sgd) has no common step: its workers pause
together (``settle``) when any rank got a signal, at a multiple of ``run.checkpoint_every``
versions, or at the end of its budget; at a pause that is not the end the loop evaluates and
writes the points recorded so far, then checkpoints the agreed version (the design is in
mpitrain.algorithms.async_sgd).

The summary adds each run's peak memory: ``peak_rss_mb_max`` and ``peak_rss_mb_median``, the
largest and the median over ranks of the process's peak resident set size (getrusage
``ru_maxrss``) in MB of 2^20 bytes.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from . import backend, checkpoint, stopping
from .algorithms import ALGORITHMS
from .algorithms.base import Worker
from .algorithms.local_sgd import LocalModelAlgorithm
from .comm.accounting import CommStats
from .divergence import DivergenceGuard
from .evaluation import Evaluator, is_finite_record
from .faults import fault_from_environment
from .memory import peak_rss_mb
from .atomic import replacing, write_json
from .metrics import MetricsWriter, ProgressLine, format_summary
from .monitor import StragglerMonitor
from .problem import build_problem
from .provenance import provenance
from .rundir import LOG, RunFolder, folder_name, now_text, write_run_record
from .runlog import RunLog
from .runtime import JobError, agree
from .sampling import BatchSampler
from .watchdog import StallWatchdog
from .schedules import make_schedule


def claim_run_folder(config, comm, *, resume: bool, overwrite: bool):
    """Rank 0 creates, locks and checks the run's folder before any long work (collective);
    returns (absolute path on every rank, the RunFolder on rank 0 or None)."""
    folder, error = None, None
    if comm.Get_rank() == 0:
        try:
            folder = RunFolder.claim(folder_name(config, comm.Get_size()), config, resume=resume, overwrite=overwrite)
        except JobError as exc:
            error = str(exc)
    path, error = comm.bcast((folder.path if folder is not None else None, error), root=0)
    if error is not None:
        raise JobError(error)
    return path, folder


class Trainer:
    """Runs one configured job on ``comm``; rank 0 writes ``out_dir`` (claimed by the caller,
    see :func:`claim_run_folder`; ``log``: rank 0's RunLog, checked after every write)."""

    def __init__(self, config, comm, out_dir=None, resume=None, log=None, stop=None, problem=None):
        self.config = config
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        # out_dir None: the configured folder, unclaimed (for tests and tools that build a trainer)
        self.out_dir = Path(out_dir) if out_dir is not None else folder_name(config, self.size)
        self.log = log
        self.stop = stop  # a StopRequest installed early by the caller, or None
        self.started_at = now_text()
        self.wall_started = time.perf_counter()
        # problem: a prebuilt mpitrain.problem.Problem (mpitrain.torch.train's objective), else built from config
        self.problem = build_problem(config, comm) if problem is None else problem
        p = self.problem
        self.stats = CommStats()
        sampler = BatchSampler(p.dataset.n_samples, config.train.batch_size, config.train.seed, self.rank)
        self.worker = Worker(
            comm=comm, objective=p.objective, n_global=p.n_global, weight=p.weight, sampler=sampler,
            step_size=make_schedule(config.step_size, p.objective.l2), stats=self.stats, x0=p.x0,
            steps=config.train.steps, seed=config.train.seed, batch_size=config.train.batch_size,
            eval_every=config.run.log_every,
        )
        self.algorithm = build_algorithm(config, self.worker)
        self.evaluator = Evaluator(comm, p.objective, p.n_global, p.f_star)
        self.start_step = 0
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.setup_seconds = 0.0
        self.last_written_step = None  # the last metrics record on disk (for error messages)
        self.fault = agree(comm, fault_from_environment, what="MPITRAIN_FAULT")
        self.blocks = os.environ.get("MPITRAIN_BLOCKS", "1") != "0"  # 0: one step per call (tests, benches)
        self.checkpoints = checkpoint.CheckpointStore(self.out_dir / "checkpoints", comm)
        self.guard = DivergenceGuard(comm, self.checkpoints.root)
        self.monitor = StragglerMonitor(comm) if self.algorithm.evaluates_in_loop else None
        if resume == "auto":  # continue from this run's own checkpoints when there are any (rank 0 looks)
            found = checkpoint.has_checkpoint(self.checkpoints.root) if self.rank == 0 else None
            resume = self.checkpoints.root if comm.bcast(found, root=0) else None
            if resume is None:
                agree(comm, self.restart_without_checkpoint, what="--resume auto")
        self.resume = resume

    def state_dict(self, algorithm_state=None) -> dict:
        """What a checkpoint holds of this rank (nested dicts, arrays inside): the algorithm's
        state (``algorithm_state`` when already taken), the sampler, the accounting and the
        training time so far."""
        return {
            "train_seconds": self.train_seconds,
            "stats": self.stats.as_dict(),
            "sampler": self.worker.sampler.state(),
            "algorithm": self.algorithm.state_dict() if algorithm_state is None else algorithm_state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.algorithm.load_state_dict(state["algorithm"])
        self.worker.sampler.load(state["sampler"])
        self.stats.load(state["stats"])
        self.train_seconds = float(state["train_seconds"])

    def restart_without_checkpoint(self) -> None:
        """``--resume auto`` found no checkpoint: start afresh, unless the folder holds a finished
        run (its results would be lost); partial results of an attempt that never
        checkpointed are removed (rank 0)."""
        if self.rank != 0:
            return
        if (self.out_dir / "summary.json").exists():
            raise JobError(f"{self.out_dir} holds a finished run and no checkpoint to continue it from; "
                           "pass --overwrite to run it again, or choose another run.output_dir")
        for name in ("metrics.jsonl", "parameters.npy"):
            (self.out_dir / name).unlink(missing_ok=True)

    def evaluate(self, step: int, x=None, seconds=None, extras: bool = True) -> dict:
        """Evaluate (collectively) ``x`` (default: the algorithm's evaluation point) as the
        record of ``step`` at training time ``seconds`` (default: now)."""
        started = time.perf_counter()
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
        self.eval_seconds += time.perf_counter() - started
        return record

    def kept(self) -> str:
        """What a run stopped by a write error leaves behind, in words."""
        parts = [f"metrics up to step {self.last_written_step}" if self.last_written_step is not None
                 else "no metrics"]
        if self.guard.checkpoint is not None:
            step, folder = self.guard.checkpoint
            parts.append(f"the checkpoint of step {step} ({folder})")
        return "kept: " + " and ".join(parts)

    def write(self, path, action) -> None:
        """Run rank 0's write ``action`` of ``path``; on an OSError (or a failed log write) stop
        every rank with one line naming the file and what was kept (collective)."""
        def guarded():
            if self.rank != 0:
                return
            try:
                action()
            except OSError as exc:
                raise JobError(f"cannot write {path}: {exc.strerror or exc}; {self.kept()}") from None
            if self.log is not None and self.log.error is not None:
                raise JobError(f"{self.log.error}; {self.kept()}")

        agree(self.comm, guarded, what="writing results")

    def write_record(self, writer, record: dict) -> None:
        self.write(writer.path, lambda: writer.write(record))
        self.last_written_step = record["step"]

    def run(self) -> dict:
        cfg = self.config
        speaker = self.rank == 0
        if self.resume is not None:
            self.start_step, folder = checkpoint.resume_from(self, self.resume)
            self.guard.kept(self.start_step, folder)
        if self.monitor is not None:
            self.monitor.start(self.start_step, self.train_seconds, self.stats.comm_seconds)
        metrics_path = self.out_dir / "metrics.jsonl"

        def write_records():
            self.out_dir.mkdir(parents=True, exist_ok=True)  # claimed already, unless built directly
            write_run_record(self.out_dir, cfg, checkpoint.config_digest(cfg), self.started_at,
                             resumed=self.resume is not None)
            write_json(self.out_dir / "config.json", {"ranks": self.size, **cfg.to_dict()})
            if self.resume is not None:
                source = self.resumed_metrics()
                if source is not None and not metrics_path.exists():
                    shutil.copyfile(source, metrics_path)  # the records before the checkpoint
                checkpoint.truncate_metrics(metrics_path, self.start_step)

        self.write(self.out_dir / "run.json", write_records)
        self.setup_seconds = time.perf_counter() - self.wall_started
        writer = MetricsWriter(metrics_path, enabled=False)

        def open_metrics():  # rank 0 only
            nonlocal writer
            writer = MetricsWriter(metrics_path, append=self.resume is not None)

        self.write(metrics_path, open_metrics)
        algorithm = self.algorithm
        progress = ProgressLine(algorithm.planned_steps(), enabled=speaker and cfg.run.progress,
                                start_step=self.start_step)
        if speaker and cfg.run.progress and hasattr(algorithm, "on_snapshot"):
            algorithm.on_snapshot = progress.running  # an asynchronous run reports while it runs
        log_every = cfg.run.log_every
        stop = (self.stop or stopping.StopRequest(self.comm)).install()
        if not algorithm.evaluates_in_loop:  # asynchronous: its workers check for a stop between steps
            algorithm.watch(stop, cfg.run.checkpoint_every)
        watchdog = StallWatchdog(self.comm, cfg.run.stall_timeout if algorithm.evaluates_in_loop else 0)
        try:
            # NaN / Inf: the divergence guard reports it once, from rank 0, not numpy on every rank
            with np.errstate(over="ignore", invalid="ignore"):
                record = self.evaluate(self.start_step)
                if self.resume is None:  # a resumed run's metrics already hold this record
                    self.write_record(writer, record)
                else:
                    self.last_written_step = self.start_step
                progress.update(record)
                t = self.start_step
                watchdog.start(t)
                blocks = self.blocks and algorithm.evaluates_in_loop and not (self.fault and self.fault.every_step)
                solo_steps = 1  # one rank: steps between stop checks (see block_end)
                # an asynchronous run that pauses for a checkpoint (and does not stop) steps on
                while not algorithm.done(t) or self.pause_async(writer, progress):
                    started = time.perf_counter()
                    if self.fault is not None:  # inside the timed part: a slowed rank shows as busy
                        self.fault.maybe_fire(self.rank, t, algorithm)
                    if blocks:
                        taken = algorithm.run_steps(t, self.block_end(t, stop, solo_steps) - t)
                    else:
                        algorithm.step(t)
                        taken = 1
                    seconds = time.perf_counter() - started
                    self.train_seconds += seconds
                    t += taken
                    watchdog.step = t
                    if blocks and self.size == 1:  # blocks of about stop.period seconds, grown as StopRequest does
                        solo_steps = max(1, min(2 * solo_steps, int(stop.period * taken / max(seconds, 1e-9)),
                                                stop.max_interval))
                    if algorithm.evaluates_in_loop and (t % log_every == 0 or algorithm.done(t)):
                        record = self.evaluate(t)
                        self.write_record(writer, record)
                        progress.update(record)
                        if self.monitor is not None:
                            self.monitor.check(t, self.train_seconds, self.stats.comm_seconds)
                    if algorithm.evaluates_in_loop:  # lock-step algorithms: every rank is at step t
                        self.maybe_checkpoint(t, stop)
                watchdog.close()
                algorithm.finish()
                record = self.write_points(writer, progress, algorithm.trajectory()) or record
        finally:
            watchdog.close()
            if self.stop is None:  # the command line's handlers stay: a late signal must not kill
                stop.restore()     # the ranks while they write the results
            progress.close()
            writer.close()
        return self.finish(record)

    def write_points(self, writer, progress, points, extras: bool = True):
        """Evaluate and write an asynchronous run's recorded ``points`` (collective); the
        algorithm's numbers go into the last record when ``extras``. Returns that record."""
        record = None
        progress.replaying = True
        for i, point in enumerate(points):
            record = self.evaluate(point["step"], point["x"], point["time"], extras=extras and i + 1 == len(points))
            self.write_record(writer, record)
            progress.update(record)
        progress.replaying = False
        return record

    def pause_async(self, writer, progress) -> bool:
        """An asynchronous algorithm's workers have all left its loop (collective): False when
        its budget is spent; otherwise write the points recorded so far and a checkpoint of the
        agreed version, then stop on a signal or return True to push on."""
        if self.algorithm.evaluates_in_loop:
            return False
        pause = self.algorithm.settle()
        if pause.over:
            return False
        try:
            self.write_points(writer, progress, self.algorithm.take_points(), extras=False)
            self.checkpoint(pause.version, pause.signum, self.algorithm.planned_steps())
        except JobError:  # raised on every rank alike (agree): free the store before the job ends
            self.algorithm.close()
            raise
        self.algorithm.resume()
        return True

    def block_end(self, t: int, stop, solo_steps: int) -> int:
        """The first step boundary after ``t`` where the loop must act: the next evaluation
        (a multiple of run.log_every), checkpoint (of run.checkpoint_every), stop-signal check,
        or the end of the run, and an injected fault's step. With several ranks a stop check
        communicates only at ``stop.next_check``; with one rank it is free at every boundary, so
        the block ends ``solo_steps`` after t (the loop keeps that to about ``stop.period`` seconds)."""
        run = self.config.run
        ends = [(t // run.log_every + 1) * run.log_every, self.worker.steps,
                stop.next_check if self.size > 1 else t + solo_steps]
        if run.checkpoint_every:
            ends.append((t // run.checkpoint_every + 1) * run.checkpoint_every)
        if self.fault is not None and t < self.fault.step:  # it fires at the start of that step
            ends.append(self.fault.step)
        return max(min(ends), t + 1)

    def resumed_metrics(self):
        """The metrics file of the run a checkpoint came from, when it is not this folder's
        (a checkpoint used from elsewhere): its records up to the step continue here."""
        folder = Path(self.resume).absolute()
        for candidate in (folder.parent / "metrics.jsonl", folder.parent.parent / "metrics.jsonl"):
            if candidate.parent.name != "checkpoints" and candidate.is_file():
                return None if candidate.parent == self.out_dir else candidate
        return None

    def maybe_checkpoint(self, step: int, stop) -> None:
        """At a step boundary: write a checkpoint when due or asked for; stop if asked (collective)."""
        signum = stop.agreed(step)
        every = self.config.run.checkpoint_every
        if not signum and not (every and step % every == 0):
            return
        self.checkpoint(step, signum, self.config.train.steps)

    def checkpoint(self, step: int, signum: int, last: int) -> None:
        """Write a checkpoint of ``step`` (collective); on a signal, stop unless ``step`` is the
        ``last`` step."""
        state = backend.host_tree(self.algorithm.state_dict())  # device arrays copied to the host
        self.guard.check_state(state, step)  # never write a NaN checkpoint
        try:
            folder = self.checkpoints.save(self, step, state)
        except JobError as exc:  # the previous checkpoint is intact: say so
            raise JobError(f"{exc}; {self.kept()}") from None
        self.guard.kept(step, folder)
        if signum and step < last:
            raise stopping.Stopped(
                f"stopped by {stopping.signal_name(signum)} after step {step} of {last}; "
                f"checkpoint written to {folder}; continue with --resume {self.checkpoints.root}", signum)

    def finish(self, last: dict) -> dict:
        p = self.problem
        x_final = backend.to_host(self.algorithm.evaluation_point())  # collective for some algorithms
        summary = {
            "algorithm": self.config.train.algorithm,
            "dataset": self.config.data.dataset,
            "ranks": self.size,
            "steps": last["step"],
            "n_samples": p.n_global,
            "n_features": p.objective.n_features,
            "n_params": p.objective.n_params,
            "final_loss": last["loss"],
            "final_suboptimality": last["suboptimality"],
            "final_accuracy": last.get("accuracy"),
            "final_grad_norm": last["grad_norm"],
            "f_star": p.f_star,
            "f_star_converged": p.f_star_converged,
            "f_star_grad_norm": p.f_star_grad_norm,
            "train_seconds": self.train_seconds,
            "steps_per_second": last["steps_per_second"],
            **self.stats.as_dict(),
            **peak_memory(self.comm),
            "output_dir": str(self.out_dir),
            **provenance(self.comm),
            "started": self.started_at,
            "ended": now_text(),
            "wall_seconds": time.perf_counter() - self.wall_started,
            "setup_seconds": self.setup_seconds,
            "eval_seconds": self.eval_seconds,
        }

        def write_outputs():
            if self.config.run.save_parameters:
                with replacing(self.out_dir / "parameters.npy", "wb") as handle:
                    np.save(handle, x_final)
            self.algorithm.write_outputs(self.out_dir)
            write_json(self.out_dir / "summary.json", summary)  # last: a summary means complete

        self.write(self.out_dir / "summary.json", write_outputs)
        return summary


def build_algorithm(config, worker):
    """The configured algorithm, built from ``worker`` and its option section."""
    cls = ALGORITHMS[config.train.algorithm]
    options = config.section(cls.name) if cls.options is not None else None
    if issubclass(cls, LocalModelAlgorithm):
        return cls(worker, options, step_size_shift=config.step_size.a)
    return cls(worker, options)


def peak_memory(comm) -> dict:
    """{'peak_rss_mb_max', 'peak_rss_mb_median'} over the ranks of ``comm`` (collective)."""
    peaks = comm.allgather(peak_rss_mb())
    return {"peak_rss_mb_max": float(max(peaks)), "peak_rss_mb_median": float(np.median(peaks))}


def train(config, comm, resume=None, overwrite=False, stop=None, problem=None) -> dict:
    """Claim the folder, run the job, release the folder (collective). Errors are JobErrors;
    rank 0's output, the final error line included, is kept in the folder's ``train.log``.
    ``problem``: a prebuilt Problem to train instead of the config's (see Trainer)."""
    out_dir, folder = claim_run_folder(config, comm, resume=resume is not None, overwrite=overwrite)
    log = None
    try:
        if folder is not None:
            log = RunLog(out_dir / LOG, append=resume is not None).start()
            for note in folder.notes:
                print(note, file=sys.stderr, flush=True)
        trainer = Trainer(config, comm, out_dir, resume=resume, log=log, stop=stop, problem=problem)
        summary = trainer.run()
        if comm.Get_rank() == 0:
            print(format_summary(summary), flush=True)
        return summary
    except JobError as exc:
        if log is not None:
            log.write_text(error_line(exc) + "\n")
        raise
    finally:
        if log is not None:
            log.close()
        if folder is not None:
            folder.release()


def error_line(exc: JobError) -> str:
    """The one line that reports ``exc`` (a stop is not an error)."""
    kind = "" if isinstance(exc, stopping.Stopped) else "error: "
    return f"mpitrain: {kind}{exc}"
