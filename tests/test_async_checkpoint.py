"""Asynchronous SGD survives time limits: a 4-rank run stopped by SIGTERM (or SIGUSR1 sent to one
rank only) exits 75 within seconds although a straggler sleeps 30 s a step, having written the
records so far and a checkpoint of one store version; ``--resume`` finishes the budget of updates
with the version counter, delay records and per-worker counts carried on, and ends where
uninterrupted runs end. A resume whose budget is already spent is refused in one line.

Tolerance of the final loss: the step size decays (c / (a + version)), so at the end of the budget
the iterates sit close to the minimiser, but where depends on how the updates were shared among
the workers (each holds its own rows), which the scheduler decides: on an Intel Xeon guest five
seeds of uninterrupted runs spanned 0.31951..0.32016; on an AMD EPYC guest (2026-12-02) eighteen
uninterrupted runs spanned 0.3192..0.3233 and resumed runs 0.3194..0.3269 (the highest in a run of
the whole suite, the others under 0.3237), failing the former band (the three seeds' spread plus
0.001 on each side) in 4 of 26 runs of this test there (one of them in a run of the whole suite),
and in 1 of 22 with the code of the day before (this test runs no compression, which is what that
day's changes were about). So the band is
the three seeds' min..max widened by their spread plus 0.01 (about three times the suboptimality
of an uninterrupted run, 0.0035), a bound that the scheduling cannot break; x restored is held
more tightly by the first record after the checkpoint, which must not be above the last one
before it by more than 0.005.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mpi_run import ROOT, mpi_env, mpiexec_path, run_mpi
from mpitrain import stopping
from mpitrain.algorithms.async_rule import UpdateRule
from mpitrain.algorithms.noise import SubWeibullNoise
from mpitrain.algorithms.stragglers import Pareto, load_rng_state, rng_state, sleep
from mpitrain.checkpoint.rule import steps_refusal
from mpitrain.config import load_config

RANKS = 4
STEPS = 5000  # train.steps: the budget is steps x ranks updates (async_sgd.max_updates unset)
BUDGET = STEPS * RANKS
CONFIG = [
    "train.algorithm=\"async_sgd\"", "data.n_samples=2000", "data.n_features=50", "train.batch_size=8",
    "step_size.schedule=\"inverse_time\"", "step_size.c=500", "step_size.a=1000", f"train.steps={STEPS}",
    "run.log_every=100", "run.reference=false", "run.progress=true",
    # rank 3 sleeps 30 s a step: a stop must wake it, and the end of the budget too
    "async_sgd.straggler_ranks=[3]", "async_sgd.slowdown=\"fixed\"", "async_sgd.slowdown_seconds=30",
]
#: a stop (signal to exit) must take far less than the straggler's 30 s sleep; generous for a loaded machine
STOP_SECONDS = 8.0
PROGRESS = re.compile(r"step\s+(\d+)/\d+\s+\(running")


def train_args(out, *overrides):
    return ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}",
            *[arg for o in (*CONFIG, *overrides) for arg in ("--set", o)]]


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def checkpoint_version(out) -> int:
    return json.loads((out / "checkpoints" / "latest").read_text())["step"]


class Background:
    """``mpiexec -n 4 python -m mpitrain train ...`` running; rank 0's progress lines (the version
    reached) read as they come, stderr kept in a file."""

    def __init__(self, args, folder: Path):
        self.err = folder / "stderr.txt"
        folder.mkdir(parents=True, exist_ok=True)
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen([mpiexec_path(), "-n", str(RANKS), sys.executable, *args], env=mpi_env(),
                                         cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                                         start_new_session=True)
        self.version = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            found = PROGRESS.search(line)
            if found:
                self.version = int(found.group(1))

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def wait_for_version(self, version: int, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while self.version < version:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"the run never reached version {version} (last seen {self.version})\n"
                                     f"{self.err.read_text()[-3000:]}")
            time.sleep(0.005)

    def wait(self, timeout: float = 60) -> float:
        """Seconds until mpiexec exits (killed and failed after ``timeout``)."""
        started = time.monotonic()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the run did not exit within {timeout}s\n{self.err.read_text()[-3000:]}")
        finally:
            self.reader.join(timeout=10)
        return time.monotonic() - started

    @property
    def stderr(self) -> str:
        return self.err.read_text()


def rank_pid(mpiexec_pid: int, rank: int) -> int:
    """The pid of ``rank`` under hydra's ``mpiexec`` (its proxies' children, by PMI_RANK)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    for proxy in children.get(mpiexec_pid, []):
        for pid in children.get(proxy, []):
            try:
                if f"PMI_RANK={rank}".encode() in (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0"):
                    return pid
            except OSError:
                continue
    raise AssertionError(f"rank {rank} of mpiexec {mpiexec_pid} not found in /proc")


def stop_mid_run(out, send) -> tuple:
    """Start a run, wait until it is a tenth of the way, ``send(proc)`` a signal; (process, seconds to exit)."""
    run = Background(train_args(out), out.parent / f"{out.name}-log")
    try:
        run.wait_for_version(BUDGET // 10)
        send(run.proc)
        return run, run.wait()
    finally:
        run.kill()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Final losses of three uninterrupted runs, seeds 1..3."""
    losses = []
    for seed in (1, 2, 3):
        out = tmp_path_factory.mktemp(f"seed{seed}") / "out"
        result = run_mpi(RANKS, train_args(out, f"train.seed={seed}"), timeout=120)
        assert result.returncode == 0, result.output
        losses.append(json.loads((out / "summary.json").read_text())["final_loss"])
    return losses


def test_sigterm_checkpoints_within_seconds_and_resume_finishes_the_budget(tmp_path, uninterrupted):
    out = tmp_path / "run"
    run, seconds = stop_mid_run(out, lambda proc: proc.send_signal(signal.SIGTERM))  # mpiexec passes it on
    assert run.proc.returncode == stopping.EXIT_CHECKPOINTED, run.stderr
    assert "mpitrain: stopped by SIGTERM after step" in run.stderr and "--resume" in run.stderr
    assert seconds < STOP_SECONDS, f"{seconds:.1f} s from SIGTERM to exit (the straggler sleeps 30 s)"
    version = checkpoint_version(out)
    assert BUDGET // 10 <= version < BUDGET
    before = records(out)
    assert not (out / "summary.json").exists()
    assert before[0]["step"] == 0 and all(r["step"] <= version for r in before)

    resumed = run_mpi(RANKS, train_args(out) + ["--resume", str(out / "checkpoints")], timeout=120)
    assert resumed.returncode == 0, resumed.output
    recs = records(out)
    steps = [r["step"] for r in recs]
    assert all(a < b for a, b in zip(steps, steps[1:])), steps  # no duplicate, the version counter continues
    assert recs[:len(before)] == before
    first_after = recs[len(before)]
    assert first_after["step"] > version
    assert first_after["loss"] < before[-1]["loss"] + 0.005, (before[-1], first_after)  # x was restored
    last = recs[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == last["step"] == last["updates"] == sum(last["updates_per_worker"])
    assert last["updates"] == BUDGET  # the budget counts both attempts, exactly (pushes are claimed first)
    assert last["updates_per_worker"][3] == 0  # the straggler's gradients were dropped at the stop and the end
    delays = np.load(out / "delays.npz")
    assert [len(delays[f"worker{r}"]) for r in range(RANKS)] == last["updates_per_worker"]  # delays carried on
    lo, hi = min(uninterrupted), max(uninterrupted)
    margin = (hi - lo) + 0.01  # see the module doc: how the updates are shared moves the end point
    assert lo - margin <= summary["final_loss"] <= hi + margin, (summary["final_loss"], uninterrupted)


@pytest.fixture(scope="module")
def stopped_by_sigusr1(tmp_path_factory):
    out = tmp_path_factory.mktemp("usr1") / "run"
    run, seconds = stop_mid_run(out, lambda proc: os.kill(rank_pid(proc.pid, 1), signal.SIGUSR1))
    return out, run, seconds


def test_sigusr1_to_one_rank_stops_every_rank_with_a_checkpoint(stopped_by_sigusr1):
    """Only rank 1 gets the signal: the flag beside the version counter reaches the others, the
    sleeping straggler included."""
    out, run, seconds = stopped_by_sigusr1
    assert run.proc.returncode == stopping.EXIT_CHECKPOINTED, run.stderr
    assert "mpitrain: stopped by SIGUSR1 after step" in run.stderr
    assert seconds < STOP_SECONDS, f"{seconds:.1f} s from SIGUSR1 to exit (the straggler sleeps 30 s)"
    assert BUDGET // 10 <= checkpoint_version(out) < BUDGET


def test_resuming_past_the_budget_is_refused_in_one_line(stopped_by_sigusr1):
    out, _, _ = stopped_by_sigusr1
    version = checkpoint_version(out)
    short = run_mpi(RANKS, train_args(out, "train.steps=100") + ["--resume", str(out / "checkpoints")], timeout=60)
    assert short.returncode == 2, short.output
    lines = [line for line in short.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, short.stderr
    assert (f"cannot continue with this train.steps: it is at update {version}, after the end of this run "
            f"(a budget of 400 updates") in lines[0]


def test_periodic_checkpoints_pause_at_multiples_of_the_version_and_resume(tmp_path):
    """``run.checkpoint_every`` counts versions: the workers pause at each multiple (a pulled
    version that passed it, so at most K - 1 pushes in flight beyond), write the records so far and
    a checkpoint, and push on; resuming the first checkpoint replays the rest."""
    out, ranks, every = tmp_path / "run", 2, 3000
    periodic = ("async_sgd.straggler_ranks=[1]", "async_sgd.slowdown_seconds=0.005", "run.progress=false",
                f"run.checkpoint_every={every}", "run.keep_checkpoints=5")
    result = run_mpi(ranks, train_args(out, *periodic), timeout=120)
    assert result.returncode == 0, result.output
    versions = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*"))
    budget = STEPS * ranks
    assert [v // every for v in versions] == list(range(1, budget // every + 1)), versions
    assert all(v % every < ranks for v in versions), versions
    steps = [r["step"] for r in records(out)]
    assert all(a < b for a, b in zip(steps, steps[1:])) and steps[-1] == budget

    first = out / "checkpoints" / f"step-{versions[0]:08d}"
    again = run_mpi(ranks, train_args(out, *periodic) + ["--resume", str(first)], timeout=120)
    assert again.returncode == 0, again.output
    recs = records(out)
    steps = [r["step"] for r in recs]
    assert all(a < b for a, b in zip(steps, steps[1:])) and steps[-1] == budget
    assert recs[-1]["updates"] == sum(recs[-1]["updates_per_worker"]) == steps[-1]


# --- the parts, without MPI ---------------------------------------------------------------

def test_a_stop_cuts_a_sleep_short_and_ticks_keep_coming():
    started = time.perf_counter()
    ticks = []
    assert not sleep(30, stop=lambda: time.perf_counter() > started + 0.1, tick=lambda: ticks.append(1))
    assert time.perf_counter() - started < 1.0 and len(ticks) > 10
    started = time.perf_counter()
    assert sleep(0.06)
    assert time.perf_counter() - started >= 0.06


def test_update_rule_counts_round_trip():
    rule = UpdateRule(clip=0.1, max_delay=2, workers=4)
    out = np.empty(3)
    for tau in (0, 1, 5):
        rule.delta(np.array([1.0, 2.0, 2.0]), 0.5, tau, out)
    again = UpdateRule(clip=0.1, max_delay=2, workers=4)
    again.load_state_dict(json.loads(json.dumps(rule.state_dict())))  # as a checkpoint's JSON holds it
    assert again.counts() == rule.counts()
    assert rule.counts() == {"applied": 2, "dropped": 1, "clipped": 2, "max_norm_sent": pytest.approx(0.1)}


def test_noise_and_slowdown_streams_round_trip():
    noise = SubWeibullNoise(1.0, 0.5, seed=3, rank=1)
    slow = Pareto(1.0, 1.5, np.random.default_rng(4))
    saved = (json.loads(json.dumps(noise.state())), json.loads(json.dumps(rng_state(slow))))
    first = (noise.draw(5), slow.extra(0.0))
    noise.load(saved[0])
    load_rng_state(slow, saved[1])
    np.testing.assert_array_equal(noise.draw(5), first[0])
    assert slow.extra(0.0) == first[1]


def test_the_budget_is_what_a_resume_is_checked_against():
    manifest = {"step": 7000, "ranks": 4, "config": {"train": {"steps": STEPS}}}
    assert steps_refusal(manifest, load_config(None, CONFIG)) is None  # version 7000 > train.steps: fine
    assert "a budget of 4000 updates" in steps_refusal(manifest, load_config(None, [*CONFIG, "train.steps=1000"]))
    assert steps_refusal(manifest, load_config(None, [*CONFIG, "async_sgd.max_updates=9000"])) is None
