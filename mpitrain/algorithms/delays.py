"""Delay metrics of asynchronous SGD: tau per update, tau_max, mean tau, concurrency, histogram.

tau = (version when applied) - (version when x was read) counts the updates by others in
between (Erickson and Johansson 2026, docs/papers.md s.3). The concurrency tau_C, the
mean number of gradients in flight, is mean(tau) + 1 by Little's law (each gradient is in
flight for tau + 1 updates and one update lands per update).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..atomic import replacing


def delay_metrics(taus) -> dict:
    """{"tau_max", "tau_mean", "concurrency", "tau_p50", "tau_p99"} of a sequence of delays."""
    taus = np.asarray(taus, dtype=np.int64)
    if taus.size == 0:
        return {"tau_max": 0, "tau_mean": 0.0, "concurrency": 0.0, "tau_p50": 0.0, "tau_p99": 0.0}
    mean = float(taus.mean())
    return {"tau_max": int(taus.max()), "tau_mean": mean, "concurrency": mean + 1.0,
            "tau_p50": float(np.percentile(taus, 50)), "tau_p99": float(np.percentile(taus, 99))}


def plot_delays(taus_by_worker: dict, output, title: str = "") -> None:
    """A PNG histogram of delays, one series per worker (log-scaled counts), written to ``output``."""
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with replacing(output, "wb") as handle:
        handle.write(delays_png(taus_by_worker, title))


#: above this many workers the histogram pools them (a legend of 64 series is unreadable)
MAX_SERIES = 8


def plotted_series(taus_by_worker: dict, max_series: int = MAX_SERIES) -> list:
    """(label, taus) per histogram: one per worker, or for many workers all of them pooled plus
    the three with the fewest updates (the stragglers, whose delays are the story)."""
    workers = [(w, taus) for w, taus in sorted(taus_by_worker.items()) if len(taus)]
    if len(workers) <= max_series:
        return [(f"worker {w} ({len(taus)} updates)", taus) for w, taus in workers]
    pooled = [t for _, taus in workers for t in taus]
    slowest = sorted(workers, key=lambda item: (len(item[1]), item[0]))[:3]
    return ([(f"all {len(workers)} workers ({len(pooled)} updates)", pooled)]
            + [(f"worker {w} ({len(taus)} updates, fewest)", taus) for w, taus in slowest])


def delays_png(taus_by_worker: dict, title: str = "") -> bytes:
    """The PNG bytes of :func:`plot_delays`' figure (rendered now, written later by the caller)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = [t for taus in taus_by_worker.values() for t in taus]
    top = max(every, default=0)
    bins = np.arange(top + 2) - 0.5 if top < 80 else np.linspace(-0.5, top + 0.5, 81)
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, taus in plotted_series(taus_by_worker):
        ax.hist(taus, bins=bins, histtype="step", linewidth=1.4, label=label)
    stats = delay_metrics(every)
    ax.set_yscale("log")
    ax.set_xlabel("delay tau (updates by others between read and apply)")
    ax.set_ylabel("updates")
    ax.set_title(title or f"tau_max {stats['tau_max']}, mean tau {stats['tau_mean']:.2f}, "
                          f"concurrency {stats['concurrency']:.2f}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)  # as mpitrain.plot.save_figure
    plt.close(fig)
    return buffer.getvalue()
