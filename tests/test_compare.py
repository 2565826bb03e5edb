"""`python -m mpitrain compare`: a table of final loss, gradients, time, bits and steps/s; a PNG with -o, CSV with --csv."""
import csv
import json
import subprocess
import sys


def write_run(path, bytes_per_step, loss_scale):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for step in range(0, 101, 20):
            fh.write(json.dumps({
                "step": step, "time": step / 50, "loss": 0.5 + loss_scale / (1 + step), "grad_norm": 0.1,
                "suboptimality": loss_scale / (1 + step), "bytes_sent": bytes_per_step * step,
                "steps_per_second": 50.0,
            }) + "\n")


def run_compare(*args):
    return subprocess.run([sys.executable, "-m", "mpitrain", "compare", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_compare_draws_png_and_prints_table(tmp_path):
    write_run(tmp_path / "dense" / "metrics.jsonl", 2400, 1.0)
    write_run(tmp_path / "topk" / "metrics.jsonl", 120, 2.0)
    png = tmp_path / "cmp.png"
    result = run_compare(tmp_path / "dense" / "metrics.jsonl", tmp_path / "topk" / "metrics.jsonl", "-o", png)
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = result.stdout.splitlines()
    dense = next(line for line in lines if line.lstrip().startswith("dense"))
    topk = next(line for line in lines if line.lstrip().startswith("topk"))
    # columns: run, steps, gradients (no config.json: one a step), final loss, suboptimality, time,
    # bits (8 x bytes), steps/s
    assert dense.split()[1:] == ["100", "100", "0.50990099", "9.901e-03", "2.00", "1.920e+06", "50.0"]
    assert topk.split()[1:] == ["100", "100", "0.51980198", "1.980e-02", "2.00", "9.600e+04", "50.0"]


def test_compare_without_a_plot_prints_the_table_and_writes_csv(tmp_path):
    write_run(tmp_path / "sync" / "metrics.jsonl", 2400, 1.0)
    (tmp_path / "sync" / "config.json").write_text(json.dumps({"ranks": 4, "train": {"algorithm": "sync_sgd"}}))
    write_run(tmp_path / "async" / "metrics.jsonl", 2400, 1.0)
    (tmp_path / "async" / "config.json").write_text(json.dumps({"ranks": 4, "train": {"algorithm": "async_sgd"}}))
    table = tmp_path / "table.csv"
    result = run_compare(tmp_path / "sync" / "metrics.jsonl", tmp_path / "async" / "metrics.jsonl", "--csv", table)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob("*.png"))
    rows = list(csv.DictReader(table.open()))
    # a synchronous step is K gradients; an asynchronous version is one
    assert [(r["run"], r["gradients"]) for r in rows] == [("sync", "400"), ("async", "100")]
    assert "sync" in result.stdout and f"wrote {table}" in result.stdout


def test_compare_reports_a_broken_metrics_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 0, "loss": 1}\nnot json\n')
    result = run_compare(bad, "-o", tmp_path / "x.png")
    assert result.returncode != 0
    assert f"{bad}:2:" in result.stderr
