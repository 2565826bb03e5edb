"""What rank 0 writes and prints: JSONL metrics, a progress line, the run summary.

Other ranks construct the same objects with ``enabled=False`` and stay silent.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


class MetricsWriter:
    """Append one JSON object per line to ``path``.

    Each record goes to the file descriptor in one ``write`` (no Python buffer: a record is in
    the file when :meth:`write` returns). A write that fails (full disk, quota, file size
    limit) raises OSError after cutting the file back to its last complete record, so the file
    stays valid JSONL with every record written before the failure.
    """

    def __init__(self, path, enabled: bool = True, append: bool = False):
        self.enabled = enabled
        self.path = Path(path)
        self._fd = -1
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
            self._fd = os.open(self.path, flags, 0o644)

    def write(self, record: dict):
        if self._fd < 0:
            return
        data = (json.dumps(record) + "\n").encode()
        good = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            done = 0
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError:
            try:
                os.ftruncate(self._fd, good)  # no half record
            except OSError:
                pass
            raise

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ProgressLine:
    """One progress line on rank 0: rewritten in place on a terminal, one line per update otherwise.

    Besides the record's numbers it shows the wall time since the line was made and an estimate
    of the time left, from the steps done so far at the pace so far (evaluations included)."""

    def __init__(self, total_steps: int, enabled: bool = True, stream=None, start_step: int = 0):
        self.total = total_steps
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.interactive = enabled and self.stream.isatty()
        self._width = len(str(total_steps))
        self._started = time.monotonic()
        self._start_step = start_step
        self.replaying = False  # after an asynchronous run: its recorded points, evaluated now

    def update(self, record: dict):
        if not self.enabled:
            return
        sub = record.get("suboptimality")
        parts = [
            f"step {record['step']:>{self._width}}/{self.total}",
            f"loss {record['loss']:.6f}",
            f"subopt {sub:.3e}" if sub is not None else "subopt n/a",
            f"|grad| {record['grad_norm']:.2e}",
            *([f"acc {record['accuracy']:.4f}"] if record.get("accuracy") is not None else []),
            f"{record['steps_per_second']:.0f} steps/s",
            self.timing(record["step"]),
        ]
        line = "  ".join(parts)
        if self.interactive:
            self.stream.write("\r" + line + "\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def running(self, step: int, seconds: float) -> None:
        """A line while an asynchronous run is under way (its records are evaluated after the
        run): the version reached, its rate and the times; loss and gradient come later."""
        if not self.enabled:
            return
        rate = step / seconds if seconds > 0 else 0.0
        line = f"step {step:>{self._width}}/{self.total}  (running: evaluated after the run)  {rate:.0f} steps/s  " \
               + self.timing(step)
        self.stream.write(("\r" + line + "\033[K") if self.interactive else line + "\n")
        self.stream.flush()

    def timing(self, step: int) -> str:
        """``elapsed 12 s, ETA 30 s`` (no ETA before the first step or after the last; nothing
        while an asynchronous run's points are evaluated after it)."""
        if self.replaying:
            return "(evaluated after the run)"
        elapsed = time.monotonic() - self._started
        done, left = step - self._start_step, self.total - step
        if done <= 0 or left <= 0:
            return f"elapsed {format_seconds(elapsed)}"
        return f"elapsed {format_seconds(elapsed)}, ETA {format_seconds(elapsed / done * left)}"

    def close(self):
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def format_seconds(seconds: float) -> str:
    """``4.2 s``, ``73 s``, ``12 min``, ``3.1 h``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_summary(summary: dict) -> str:
    sub = summary.get("final_suboptimality")
    lines = [
        f"mpitrain: {summary['algorithm']} on {summary['dataset']} with {summary['ranks']} ranks, "
        f"{summary['steps']} steps in {summary['train_seconds']:.2f} s ({summary['steps_per_second']:.0f} steps/s)"
        + (f"; wall {summary['wall_seconds']:.2f} s: set-up {summary['setup_seconds']:.2f} s, "
           f"evaluation {summary['eval_seconds']:.2f} s" if "wall_seconds" in summary else ""),
        f"  final loss {summary['final_loss']:.8f}"
        + (f", suboptimality {sub:.3e} (f* = {summary['f_star']:.10f}"
           + (", approximate" if summary.get("f_star_converged") is False else "") + ")" if sub is not None else "")
        + (f", training accuracy {summary['final_accuracy']:.4f}" if summary.get("final_accuracy") is not None else ""),
        f"  per rank: {summary['bytes_sent'] / 1e6:.3f} MB sent in {summary['comm_rounds']} rounds; "
        f"compute {summary['compute_seconds']:.2f} s, communication {summary['comm_seconds']:.2f} s",
        f"  written: {summary['output_dir']}/metrics.jsonl, summary.json, train.log",
    ]
    return "\n".join(lines)
