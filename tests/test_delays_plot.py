"""The delay histogram stays readable for many workers (mpitrain.algorithms.delays)."""
from mpitrain.algorithms.delays import delays_png, plotted_series


def test_few_workers_get_one_series_each():
    series = plotted_series({0: [0, 1], 1: [2], 2: []})
    assert [label for label, _ in series] == ["worker 0 (2 updates)", "worker 1 (1 updates)"]


def test_many_workers_are_pooled_and_the_stragglers_shown():
    taus = {w: [w % 3] * (100 - w if w != 7 else 2) for w in range(64)}
    series = plotted_series(taus)
    labels = [label for label, _ in series]
    assert len(series) == 4
    assert labels[0].startswith("all 64 workers")
    assert len(series[0][1]) == sum(len(t) for t in taus.values())
    assert labels[1] == "worker 7 (2 updates, fewest)"
    assert labels[2] == "worker 63 (37 updates, fewest)"


def test_png_bytes_for_64_workers():
    data = delays_png({w: list(range(w % 5)) + [1] for w in range(64)})
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
