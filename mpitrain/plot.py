"""PNG plots of metrics files: loss, suboptimality (where f* is known), gradient norm and
training accuracy (for classifiers) against steps and wall time."""
from __future__ import annotations

import json
from pathlib import Path

from .atomic import replacing


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


def save_figure(fig, output, dpi=110):
    """Write a matplotlib figure as PNG, atomically (creating the folder), and release it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with replacing(output, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    plt.close(fig)


def run_label(path) -> str:
    path = Path(path)
    return path.parent.name if path.name == "metrics.jsonl" else path.stem


# (record key, axis label, log scale): loss always; each other panel when some run records it
PANELS = (
    ("loss", "loss F(x)", False),
    ("suboptimality", "suboptimality F(x) - F*", True),
    ("grad_norm", "gradient norm |grad F(x)|", True),
    ("accuracy", "training accuracy", False),
)


def _value(value, log_scale):
    if value is None:
        return float("nan")
    return max(value, 1e-16) if log_scale else value


def plot_metrics(paths, output):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(run_label(p), read_metrics(p)) for p in paths]
    panels = [p for p in PANELS if p[0] == "loss" or any(r.get(p[0]) is not None for _, recs in runs for r in recs)]
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 3.6 * len(panels)), squeeze=False)
    for label, recs in runs:
        steps = [r["step"] for r in recs]
        times = [r["time"] for r in recs]
        for row, (key, _, log_scale) in enumerate(panels):
            values = [_value(r.get(key), log_scale) for r in recs]
            for col, xs in enumerate((steps, times)):
                (axes[row][col].semilogy if log_scale else axes[row][col].plot)(xs, values, label=label)
    for col, xlabel in enumerate(("step", "training wall time (s)")):
        for row, (_, ylabel, _) in enumerate(panels):
            axes[row][col].set_ylabel(ylabel)
        axes[-1][col].set_xlabel(xlabel)
    for ax in (a for row in axes for a in row):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, output)
