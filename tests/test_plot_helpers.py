"""mpitrain.plot's helpers: log axes labelled in plain text (no mathtext), figures laid out by
tight_layout or by fixed margins, written as PNG."""
import pytest

from mpitrain.plot import log_scale, power_label, save_figure


@pytest.mark.parametrize("value, base, label", [
    (100.0, 10, "10\u00b2"), (1e-2, 10, "10\u207b\u00b2"), (1.0, 10, "10\u2070"), (1e7, 10, "10\u2077"),
    (16.0, 2, "2\u2074"), (0.5, 2, "2\u207b\u00b9"), (1024.0, 2, "2\u00b9\u2070"),
])
def test_powers_of_the_base_are_labelled_with_superscripts(value, base, label):
    assert power_label(value, base) == label


@pytest.mark.parametrize("value, base", [(20.0, 10), (0.03, 10), (3.0, 2), (0.0, 10), (-10.0, 10)])
def test_other_ticks_are_unlabelled(value, base):
    assert power_label(value, base) == ""


@pytest.mark.parametrize("margins", [None, dict(left=0.1, right=0.95, bottom=0.15, top=0.9)])
def test_a_log_log_figure_is_written_without_mathtext(tmp_path, margins):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1e3, 1e4, 1e5], [1e-1, 1e-2, 3e-3])
    log_scale(ax, "x")
    log_scale(ax, "y", base=10)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    assert "10\u2074" in labels and "10\u207b\u00b2" in labels
    assert not any("$" in label for label in labels)
    save_figure(fig, tmp_path / "plot.png", dpi=50, margins=margins)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
