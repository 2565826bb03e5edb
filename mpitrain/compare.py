"""Compare runs: suboptimality against steps, training wall time and bits sent, and a table.

Bits sent are ``bytes_sent * 8`` per worker (the payload convention of
mpitrain.comm.accounting), so compressed methods and sparse averaging line up on one axis.
Runs without a reference optimum (``run.reference = false``) are drawn by their loss.

Steps mean different things: a synchronous method's step is one mini-batch gradient on every
one of its K workers, an asynchronous method's "step" is a version of the shared model, one
gradient of one worker. The first axis is therefore the number of mini-batch gradients computed
by all workers together (K x step, or the version count for ``async_sgd``), read from the run's
``config.json`` beside its metrics (without one a step counts as one gradient).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .plot import read_metrics, run_label, save_figure

AXES = (("gradients", "mini-batch gradients, all workers"), ("time", "training wall time (s)"),
        ("bits", "bits sent per worker"))
#: methods whose ``step`` counts updates of one worker (versions), not steps of all K workers
ASYNCHRONOUS = ("async_sgd",)


def gradients_per_step(metrics_path) -> int:
    """K for a synchronous run, 1 for an asynchronous one or when the run's config is missing."""
    try:
        config = json.loads((Path(metrics_path).parent / "config.json").read_text())
    except (OSError, ValueError):
        return 1
    if config.get("train", {}).get("algorithm") in ASYNCHRONOUS:
        return 1
    return int(config.get("ranks", 1))


def x_values(records, axis: str, per_step: int = 1) -> list:
    if axis == "bits":
        return [8 * r["bytes_sent"] for r in records]
    if axis == "gradients":
        return [per_step * r["step"] for r in records]
    return [r[axis] for r in records]


def y_values(records, use_suboptimality: bool) -> list:
    if use_suboptimality:
        return [max(r["suboptimality"], 1e-16) if r.get("suboptimality") is not None else float("nan")
                for r in records]
    return [r["loss"] for r in records]


def summary_row(label: str, records: list, per_step: int = 1) -> dict:
    last = records[-1]
    return {
        "run": label,
        "steps": last["step"],
        "gradients": per_step * last["step"],
        "final loss": f"{last['loss']:.8f}",
        "suboptimality": "n/a" if last.get("suboptimality") is None else f"{last['suboptimality']:.3e}",
        "accuracy": "n/a" if last.get("accuracy") is None else f"{last['accuracy']:.4f}",
        "time (s)": f"{last['time']:.2f}",
        "bits sent": f"{8 * last['bytes_sent']:.3e}",
        "steps/s": f"{last['steps_per_second']:.1f}",
    }


def format_table(rows: list[dict]) -> str:
    """Aligned text table: text left, numbers right."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    align = {c: (str.ljust if c == "run" else str.rjust) for c in columns}
    lines = ["  ".join(align[c](c, widths[c]) for c in columns)]
    lines += ["  ".join(align[c](str(r[c]), widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def unique_labels(paths) -> list[str]:
    labels = [run_label(p) for p in paths]
    return [f"{label} ({p})" if labels.count(label) > 1 else label for label, p in zip(labels, paths)]


def compare_runs(paths, output=None, csv_path=None) -> str:
    """The table of the runs of ``paths`` (metrics.jsonl files); with ``output``, also draw them
    into that PNG; with ``csv_path``, also write the table as CSV."""
    runs = [(label, read_metrics(p), gradients_per_step(p)) for label, p in zip(unique_labels(paths), paths)]
    rows = [summary_row(label, recs, per_step) for label, recs, per_step in runs]
    if all(row["accuracy"] == "n/a" for row in rows):  # no classifier among the runs
        rows = [{k: v for k, v in row.items() if k != "accuracy"} for row in rows]
    if csv_path is not None:
        with open(csv_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if output is not None:
        draw(runs, output)
    return format_table(rows)


def draw(runs, output) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    use_sub = all(r.get("suboptimality") is not None for _, recs, _ in runs for r in recs)
    fig, axes = plt.subplots(1, len(AXES), figsize=(5 * len(AXES), 4), squeeze=False)
    for label, recs, per_step in runs:
        ys = y_values(recs, use_sub)
        for ax, (axis, _) in zip(axes[0], AXES):
            (ax.semilogy if use_sub else ax.plot)(x_values(recs, axis, per_step), ys, label=label)
    for ax, (_, xlabel) in zip(axes[0], AXES):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("suboptimality F(x) - F*" if use_sub else "loss F(x)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, output)
