"""Compressed Local SGD is Local SGD with another exchange: it takes every period schedule and
Stich's weighted output, and with the identity compressor (float64 on the wire, no feedback) it
follows Local SGD's trajectory, schedule for schedule, under mpiexec -n 2."""
import json

import tomllib

import pytest

from mpi_run import run_mpi
from mpitrain.algorithms.local_sgd import LocalSGDOptions
from mpitrain.algorithms.periods import make_period

SMALL = ["data.n_samples=2000", "data.n_features=50", "train.steps=60", "train.batch_size=8", "step_size.value=0.5",
         "run.log_every=10", "run.reference=false", "run.progress=false"]
SCHEDULES = {
    "constant": ["period=4"],
    "post_local": ["period=8", "schedule='post_local'", "warmup_steps=10"],
    "auto": ["schedule='auto'"],
    "growing": ["period=2", "schedule='growing'", "growth=2.0", "max_period=16"],
}


def parse(options):
    return tomllib.loads("\n".join(options))


def losses(out, algorithm, options):
    args = ["-m", "mpitrain", "train", "--set", f"run.output_dir={out}", "--set", f"train.algorithm={algorithm}",
            *[a for o in SMALL for a in ("--set", o)], *[a for o in options for a in ("--set", f"{algorithm}.{o}")]]
    result = run_mpi(2, args, timeout=90)
    assert result.returncode == 0, result.output
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("output", ["average", "weighted"])
def test_identity_compressed_local_sgd_follows_local_sgd(tmp_path, schedule, output):
    common = [*SCHEDULES[schedule], f"output='{output}'"]
    plain = losses(tmp_path / "local", "local_sgd", common)
    compressed = losses(tmp_path / "compressed", "compressed_local_sgd",
                        [*common, "compressor='identity'", "error_feedback='none'", "wire_dtype='float64'"])
    assert [r["step"] for r in plain] == [r["step"] for r in compressed]
    # "average": Local SGD evaluates the mean of the current local models, compressed Local SGD the
    # anchor (the last average); they are the same model right after an average and at the end
    # (compressed Local SGD averages after its last step; Local SGD's evaluation averages then).
    # "weighted": both evaluate Stich's x_hat over the same local iterates, at every record.
    period = make_period(LocalSGDOptions(**parse(SCHEDULES[schedule])), 60, 2, 8)
    compared = 0
    for a, b in zip(plain, compressed):
        step = a["step"]
        if output == "weighted" or step == 60 or (step > 0 and period.syncs_after(step - 1)):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-10), (step, a["loss"], b["loss"])
            compared += 1
    assert compared >= 2
    assert compressed[-1]["syncs"] >= plain[-1]["syncs"] > 1
