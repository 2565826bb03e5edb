"""The typed config: defaults, overrides, and errors that name the field."""
import pytest

from mpitrain.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_defaults_are_valid():
    config = load_config()
    assert config.train.algorithm == "sync_sgd"
    assert config.objective.l2_value(200) == pytest.approx(1 / 200)


def test_file_and_overrides(tmp_path):
    path = write(tmp_path, "[train]\nsteps = 50\nbatch_size = 8\n[objective]\nl2 = 0.01\n")
    config = load_config(path, ["train.steps=70", "data.dtype=float32", "step_size.schedule=inverse_time"])
    assert config.train.steps == 70
    assert config.train.batch_size == 8
    assert config.data.dtype == "float32"
    assert config.objective.l2_value(10) == 0.01
    assert config.step_size.schedule == "inverse_time"


@pytest.mark.parametrize(
    "override, field, words",
    [
        ("train.batch_size=0", "train.batch_size", "must be >= 1"),
        ("train.steps=1.5", "train.steps", "expected int"),
        ("train.steps=true", "train.steps", "expected int"),
        ("step_size.value=-0.1", "step_size.value", "must be > 0.0"),
        ("step_size.schedule=cosine", "step_size.schedule", "must be one of"),
        ("data.dtype=float16", "data.dtype", "must be one of"),
        ("objective.l2=-1", "objective.l2", "finite number >= 0"),
        ("objective.l2=nan", "objective.l2", "finite"),
        ("objective.l2=\"2/n\"", "objective.l2", "expected a number"),
        ("train.algorithm=adam", "train.algorithm", "unknown algorithm 'adam'"),
        ("train.stepz=3", "train.stepz", "unknown field"),
        ("nosection.x=3", "nosection", "unknown section"),
        ("steps=3", "steps", "section.field=value"),
        ("data.read=partitioned", "data.read", "sharding"),
    ],
)
def test_bad_values_name_the_field(override, field, words):
    overrides = [override]
    if field == "data.read":
        overrides.append("data.sharding=label")
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert info.value.field == field
    assert f"'{field}'" in str(info.value)
    assert words in str(info.value)


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[train\nsteps = 3\n"))


def test_canonical_json_tracks_values():
    a = load_config(None, ["train.steps=10"])
    b = load_config(None, ["train.steps=11"])
    assert a.canonical_json() != b.canonical_json()
    assert a.canonical_json() == load_config(None, ["train.steps=10"]).canonical_json()
