"""PNG plots of metrics files: loss, suboptimality (where f* is known), gradient norm and
training accuracy (for classifiers) against steps and wall time."""
from __future__ import annotations

import json
import math
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


def save_figure(fig, output, dpi=110, margins=None):
    """Write a matplotlib figure as PNG, atomically (creating the folder), and release it.

    ``margins``: keywords of ``Figure.subplots_adjust`` (fractions of the figure) for a layout
    fixed by its caller; None lays it out with ``tight_layout``, which measures every label
    first (a draw of its own)."""
    import matplotlib.pyplot as plt

    if margins is None:
        fig.tight_layout()
    else:
        fig.subplots_adjust(**margins)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with replacing(output, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    plt.close(fig)


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def power_label(value: float, base: int = 10) -> str:
    """The tick label of ``value`` on a log axis: ``"10⁻²"`` at a power of ``base``, ``""``
    elsewhere. Plain text with Unicode superscripts: matplotlib's own log labels are mathtext,
    whose parser takes about 0.3 s to build the first time in a process."""
    if not value > 0:
        return ""
    exponent = round(math.log(value, base))
    if not math.isclose(value, float(base) ** exponent, rel_tol=1e-9):
        return ""
    return f"{base}{str(exponent).translate(_SUPERSCRIPT)}"


def log_scale(ax, axis: str, base: int = 10) -> None:
    """Put ``ax``'s x or y ``axis`` on a log scale labelled at the powers of ``base`` by
    :func:`power_label` (minor ticks unlabelled)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    getattr(ax, f"set_{axis}scale")("log", base=base)
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda value, _position: power_label(value, base)))
    target.set_minor_formatter(NullFormatter())


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
