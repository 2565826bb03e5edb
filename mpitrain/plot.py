"""PNG plots of metrics files: loss and suboptimality against steps and wall time."""
from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path) -> list[dict]:
    """The records of a metrics JSONL file; a broken line is reported as ``file:line``."""
    records = []
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON record ({exc.msg})") from None
    if not records:
        raise ValueError(f"{path}: no metrics records")
    return records


def save_figure(fig, output):
    """Write a matplotlib figure as PNG (creating the folder) and release it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def run_label(path) -> str:
    path = Path(path)
    return path.parent.name if path.name == "metrics.jsonl" else path.stem


def plot_metrics(paths, output):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(run_label(p), read_metrics(p)) for p in paths]
    has_sub = any(r.get("suboptimality") is not None for _, recs in runs for r in recs)
    rows = 2 if has_sub else 1
    fig, axes = plt.subplots(rows, 2, figsize=(11, 4 * rows), squeeze=False)
    for label, recs in runs:
        steps = [r["step"] for r in recs]
        times = [r["time"] for r in recs]
        loss = [r["loss"] for r in recs]
        axes[0][0].plot(steps, loss, label=label)
        axes[0][1].plot(times, loss, label=label)
        if has_sub:
            sub = [max(r["suboptimality"], 1e-16) if r.get("suboptimality") is not None else float("nan") for r in recs]
            axes[1][0].semilogy(steps, sub, label=label)
            axes[1][1].semilogy(times, sub, label=label)
    for col, xlabel in enumerate(("step", "training wall time (s)")):
        axes[0][col].set_ylabel("loss F(x)")
        axes[-1][col].set_xlabel(xlabel)
        if has_sub:
            axes[1][col].set_ylabel("suboptimality F(x) - F*")
    for ax in (a for row in axes for a in row):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, output)
