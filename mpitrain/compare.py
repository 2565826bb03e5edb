"""Compare runs: suboptimality against steps, training wall time and bits sent, and a table.

Bits sent are ``bytes_sent * 8`` per worker (the payload convention of
mpitrain.comm.accounting), so compressed methods and sparse averaging line up on one axis.
Runs without a reference optimum (``run.reference = false``) are drawn by their loss.
"""
from __future__ import annotations


from .plot import read_metrics, run_label, save_figure

AXES = (("step", "step"), ("time", "training wall time (s)"), ("bits", "bits sent per worker"))


def x_values(records, axis: str) -> list:
    if axis == "bits":
        return [8 * r["bytes_sent"] for r in records]
    return [r[axis] for r in records]


def y_values(records, use_suboptimality: bool) -> list:
    if use_suboptimality:
        return [max(r["suboptimality"], 1e-16) if r.get("suboptimality") is not None else float("nan")
                for r in records]
    return [r["loss"] for r in records]


def summary_row(label: str, records: list) -> dict:
    last = records[-1]
    return {
        "run": label,
        "steps": last["step"],
        "final loss": f"{last['loss']:.8f}",
        "suboptimality": "n/a" if last.get("suboptimality") is None else f"{last['suboptimality']:.3e}",
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


def compare_runs(paths, output) -> str:
    """Draw the runs of ``paths`` (metrics.jsonl files) into ``output`` (PNG); return the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(label, read_metrics(p)) for label, p in zip(unique_labels(paths), paths)]
    use_sub = all(r.get("suboptimality") is not None for _, recs in runs for r in recs)
    fig, axes = plt.subplots(1, len(AXES), figsize=(5 * len(AXES), 4), squeeze=False)
    for label, recs in runs:
        ys = y_values(recs, use_sub)
        for ax, (axis, _) in zip(axes[0], AXES):
            (ax.semilogy if use_sub else ax.plot)(x_values(recs, axis), ys, label=label)
    for ax, (_, xlabel) in zip(axes[0], AXES):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("suboptimality F(x) - F*" if use_sub else "loss F(x)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, output)
    return format_table([summary_row(label, recs) for label, recs in runs])
