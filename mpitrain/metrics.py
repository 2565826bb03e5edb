"""What rank 0 writes and prints: JSONL metrics, a progress line, the run summary.

Other ranks construct the same objects with ``enabled=False`` and stay silent.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


class MetricsWriter:
    """Append one JSON object per line to ``path``; flushed after every record."""

    def __init__(self, path, enabled: bool = True, append: bool = False):
        self.enabled = enabled
        self.path = Path(path)
        self._file = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a" if append else "w")

    def write(self, record: dict):
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class ProgressLine:
    """One progress line on rank 0: rewritten in place on a terminal, one line per update otherwise."""

    def __init__(self, total_steps: int, enabled: bool = True, stream=None):
        self.total = total_steps
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.interactive = enabled and self.stream.isatty()
        self._width = len(str(total_steps))

    def update(self, record: dict):
        if not self.enabled:
            return
        sub = record.get("suboptimality")
        parts = [
            f"step {record['step']:>{self._width}}/{self.total}",
            f"loss {record['loss']:.6f}",
            f"subopt {sub:.3e}" if sub is not None else "subopt n/a",
            f"|grad| {record['grad_norm']:.2e}",
            f"{record['steps_per_second']:.0f} steps/s",
        ]
        line = "  ".join(parts)
        if self.interactive:
            self.stream.write("\r" + line + "\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def write_json_atomic(path, payload: dict):
    """Write JSON to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def format_summary(summary: dict) -> str:
    sub = summary.get("final_suboptimality")
    lines = [
        f"mpitrain: {summary['algorithm']} on {summary['dataset']} with {summary['ranks']} ranks, "
        f"{summary['steps']} steps in {summary['train_seconds']:.2f} s ({summary['steps_per_second']:.0f} steps/s)",
        f"  final loss {summary['final_loss']:.8f}"
        + (f", suboptimality {sub:.3e} (f* = {summary['f_star']:.10f})" if sub is not None else ""),
        f"  per rank: {summary['bytes_sent'] / 1e6:.3f} MB sent in {summary['comm_rounds']} rounds; "
        f"compute {summary['compute_seconds']:.2f} s, communication {summary['comm_seconds']:.2f} s",
        f"  written: {summary['output_dir']}/metrics.jsonl, summary.json",
    ]
    return "\n".join(lines)
