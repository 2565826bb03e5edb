"""Typed, validated run configuration.

A run is described by a TOML file with one table per section::

    [data]        where the samples come from and how they are split over ranks
    [objective]   the loss being minimised
    [train]       algorithm, steps, mini-batch size, seed
    [step_size]   the step-size schedule
    [run]         output folder, logging
    [<algorithm>] options of one algorithm (e.g. [local_sgd]), declared by the algorithm itself

Every section is a frozen dataclass. Values are checked against the field's type and its
``metadata`` (``choices``, ``min``, ``max``, ``exclusive_min``); an error names the field as
``section.field``. ``--set section.field=value`` overrides a value (the value is read as TOML,
falling back to a bare string).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .algorithms import ALGORITHMS, option_sections
from .fields import ConfigError, bounded, choice


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic-classification"  # registry name (w8a, a9a, ...), a LIBSVM path, or synthetic-*
    dtype: str = choice("float64", ("float32", "float64"))  # floating type of data and parameters
    sharding: str = choice("iid", ("iid", "label", "dirichlet"))  # how rows are split over ranks
    dirichlet_alpha: float = bounded(1.0, exclusive_min=0.0)  # concentration for sharding = "dirichlet"
    read: str = choice("full", ("full", "partitioned"))  # "partitioned": each rank reads only its byte range
    n_samples: int = bounded(20000, min=1)  # synthetic data only
    n_features: int = bounded(300, min=1)  # synthetic data only
    density: float = bounded(0.04, exclusive_min=0.0, max=1.0)  # synthetic classification only
    n_classes: int = bounded(10, min=2)  # synthetic multiclass only
    condition_number: float = bounded(100.0, min=1.0)  # synthetic least squares only
    noise: float = bounded(0.0, min=0.0)  # synthetic least squares only
    data_seed: int = bounded(0, min=0)  # seed of the synthetic generator and of the sharding

    def __post_init__(self):
        if self.read == "partitioned" and self.sharding != "iid":
            raise ConfigError("data.read", "'partitioned' reads contiguous blocks; it needs sharding = 'iid'")


@dataclass(frozen=True)
class ObjectiveConfig:
    # the model: logistic (labels -1/+1) or least squares (linear); softmax (C classes); mlp (a network); torch (any PyTorch model)
    name: str = choice("logistic", ("logistic", "least_squares", "softmax", "mlp", "torch"))
    l2: typing.Union[float, str] = "1/n"  # L2 weight lambda: a number >= 0, or "1/n" (n = total samples)
    hidden: list = field(default_factory=lambda: [64])  # mlp: hidden layer sizes, input side first
    activation: str = choice("relu", ("relu", "tanh"))  # mlp: activation of the hidden layers
    head: str = choice("softmax", ("softmax", "logistic", "squared"))  # mlp, torch: softmax over C classes, logistic (-1/+1) or squared loss
    init_seed: int = bounded(0, min=0)  # mlp, torch: seed of the initial weights (mlp: He for relu, Glorot for tanh)
    model: str = ""  # torch: "package.module:function" returning (model, loss_fn)

    def __post_init__(self):
        if isinstance(self.l2, str):
            if self.l2.replace(" ", "") != "1/n":
                raise ConfigError("objective.l2", f"expected a number >= 0 or \"1/n\", got {self.l2!r}")
        elif not math.isfinite(self.l2) or self.l2 < 0:
            raise ConfigError("objective.l2", f"must be a finite number >= 0, got {self.l2!r}")
        bad = [h for h in self.hidden if isinstance(h, bool) or not isinstance(h, int) or h < 1]
        if bad:
            raise ConfigError("objective.hidden", f"layer sizes must be integers >= 1, got {bad[0]!r}")
        if self.name == "mlp" and not self.hidden:
            raise ConfigError("objective.hidden", "an mlp needs at least one hidden layer (a model with none "
                              "is objective.name = \"softmax\", or \"logistic\" / \"least_squares\")")

    def model_options(self) -> dict:
        """The options make_objective takes for this model (none for the linear ones)."""
        if self.name == "mlp":
            return {"hidden": tuple(self.hidden), "activation": self.activation, "head": self.head}
        if self.name == "torch":
            return {"model": self.model, "head": self.head, "init_seed": self.init_seed}
        return {}

    @property
    def label_head(self) -> str:
        """The loss the labels feed: logistic (-1/+1), softmax (classes 0..C-1), squared (values)."""
        return {"logistic": "logistic", "least_squares": "squared", "softmax": "softmax"}.get(self.name, self.head)

    def l2_value(self, n_samples: int) -> float:
        return 1.0 / n_samples if isinstance(self.l2, str) else float(self.l2)


@dataclass(frozen=True)
class TrainConfig:
    algorithm: str = "sync_sgd"  # a key of mpitrain.algorithms.ALGORITHMS
    steps: int = bounded(1000, min=1)  # steps per worker (T)
    batch_size: int = bounded(4, min=1)  # mini-batch per worker and step (b)
    seed: int = bounded(0, min=0)  # seed of the per-rank sampling streams (seeded from (seed, rank))
    device: str = choice("cpu", ("cpu", "gpu"))  # "gpu": one GPU per rank, local rank mod GPUs (mpitrain.device)
    cuda_aware_mpi: typing.Union[bool, str] = "auto"  # hand MPI device buffers: true, false, or "auto" (detect)

    def __post_init__(self):
        if isinstance(self.cuda_aware_mpi, str) and self.cuda_aware_mpi != "auto":
            raise ConfigError("train.cuda_aware_mpi", f"expected true, false or \"auto\", got {self.cuda_aware_mpi!r}")


@dataclass(frozen=True)
class StepSizeConfig:
    schedule: str = choice("constant", ("constant", "inverse_time", "stich"))  # eta_t: constant, c / (a + t), or 4 / (mu (a + t))
    value: float = bounded(0.1, exclusive_min=0.0)  # constant: eta_t = value
    c: float = bounded(1.0, exclusive_min=0.0)  # inverse_time: eta_t = c / (a + t)
    a: float = bounded(1.0, exclusive_min=0.0)  # shift a of inverse_time and stich
    mu: typing.Optional[float] = None  # stich: eta_t = 4 / (mu (a + t)); default: the L2 weight

    def __post_init__(self):
        if self.mu is not None and not (math.isfinite(self.mu) and self.mu > 0):
            raise ConfigError("step_size.mu", f"must be > 0, got {self.mu!r}")


@dataclass(frozen=True)
class RunConfig:
    # the run's folder: ~ and $VAR expand; so do {algorithm} {dataset} {size} {seed} {config} (see mpitrain.rundir)
    output_dir: str = "runs/{algorithm}-{dataset}-K{size}-{config}"
    log_every: int = bounded(100, min=1)  # evaluate and log every this many steps
    progress: bool = True  # rank 0 prints a progress line
    reference: bool = True  # compute (or read the cached) f* so suboptimality is reported
    save_parameters: bool = True  # rank 0 writes the final parameters as parameters.npy
    stall_timeout: float = bounded(300.0, min=0.0)  # seconds without progress before rank 0 names who it waits for; 0: off
    checkpoint_every: int = bounded(0, min=0)  # steps between checkpoints (async_sgd: store versions); 0: none
    keep_checkpoints: int = bounded(2, min=1)  # newest checkpoints kept on disk; older step folders are removed


CORE_SECTIONS = {
    "data": DataConfig,
    "objective": ObjectiveConfig,
    "train": TrainConfig,
    "step_size": StepSizeConfig,
    "run": RunConfig,
}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value, tp, name):
    """Check ``value`` against annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError:
                if isinstance(value, arg) and not isinstance(value, bool):
                    raise  # right type, bad value (e.g. NaN): that error is the useful one
        names = " or ".join(_type_name(a) for a in args if a is not type(None))
        raise ConfigError(name, f"expected {names}, got {value!r}{toml_hint(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(name, f"must be finite, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp in (dict, list):
        if isinstance(value, tp):
            return value
    else:
        return value
    raise ConfigError(name, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__}){toml_hint(value)}")


def toml_hint(value) -> str:
    """A hint for what TOML reads as a string but the user meant as a number or a boolean."""
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if text in ("True", "False", "TRUE", "FALSE", "yes", "no", "on", "off"):
        return f"; TOML booleans are lowercase: {'true' if text.lower() in ('true', 'yes', 'on') else 'false'}"
    try:
        number = float(text)
    except ValueError:
        return ""
    if text.startswith((".", "-.", "+.")) or text.endswith("."):
        fixed = text.replace(".", "0.", 1) if "." == text.lstrip("+-")[:1] else text + "0"
        return f"; TOML numbers need digits on both sides of the point: {fixed}"
    return f"; {text} is quoted, so it is a string: drop the quotes" if math.isfinite(number) else ""


def did_you_mean(word: str, choices) -> str:
    """' (did you mean "x"?)' for the closest of ``choices``, or ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_bounds(value, meta, name):
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(map(repr, choices))}; got {value!r}"
                          f"{did_you_mean(value, choices)}")
    if value is None or isinstance(value, (str, bool)):
        return
    lo, hi, xlo = meta.get("min"), meta.get("max"), meta.get("exclusive_min")
    if lo is not None and value < lo:
        raise ConfigError(name, f"must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(name, f"must be <= {hi}, got {value!r}")
    if xlo is not None and value <= xlo:
        raise ConfigError(name, f"must be > {xlo}, got {value!r}")


def build_section(cls, values: dict, section: str):
    """Instantiate dataclass ``cls`` from a mapping, naming ``section.field`` in every error."""
    if not isinstance(values, dict):
        raise ConfigError(section, f"expected a table, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        name = f"{section}.{key}"
        if key not in known:
            raise ConfigError(name, f"unknown field{did_you_mean(key, known)}; known fields of [{section}]: "
                              f"{', '.join(known)}")
        kwargs[key] = _coerce(value, hints[key], name)
        _check_bounds(kwargs[key], known[key].metadata, name)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if "." in exc.field or exc.field == section:
            raise
        raise ConfigError(f"{section}.{exc.field}", exc.detail) from None  # a section's own check
    except (TypeError, ValueError) as exc:
        raise ConfigError(section, str(exc)) from exc


@dataclass(frozen=True)
class Config:
    """The whole run configuration: the core sections plus algorithm option sections."""

    data: DataConfig = DataConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    train: TrainConfig = TrainConfig()
    step_size: StepSizeConfig = StepSizeConfig()
    run: RunConfig = RunConfig()
    options: dict = field(default_factory=dict)  # algorithm option sections by name
    given: tuple = ()  # the sections the file and --set named (for the unused-section warning)

    def __post_init__(self):
        # here, not in ObjectiveConfig: an ObjectiveConfig alone may name torch (label codings are checked so)
        if self.objective.name == "torch" and not self.objective.model.strip():
            raise ConfigError("objective.model", "objective.name = \"torch\" needs the function that builds the "
                              "model: \"package.module:function\" returning (model, loss_fn)")

    def section(self, name):
        """The option section ``name`` (defaults when the file has none)."""
        return self.options[name]

    def to_dict(self) -> dict:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in CORE_SECTIONS}
        for name, value in self.options.items():
            out[name] = dataclasses.asdict(value)
        return out

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def unused_sections(self) -> list:
        """Option sections given but not read by ``train.algorithm`` (a likely mistake)."""
        return [name for name in self.given if name in self.options and name != self.train.algorithm]


def _apply_override(tree: dict, assignment: str):
    if "=" not in assignment:
        raise ConfigError(assignment, "--set expects section.field=value")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(key, "--set expects section.field=value (e.g. train.steps=500)")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    tree.setdefault(parts[0], {})[parts[1]] = value


def config_from_dict(tree: dict) -> Config:
    """Validate a nested mapping (sections -> fields) into a Config."""
    extra = option_sections()  # the algorithms' own sections
    sections = {}
    for name in tree:
        if name not in CORE_SECTIONS and name not in extra:
            known = [*CORE_SECTIONS, *extra]
            raise ConfigError(name, f"unknown section [{name}]{did_you_mean(name, known)}; known sections: "
                              f"{', '.join(known)}")
    for name, cls in CORE_SECTIONS.items():
        sections[name] = build_section(cls, tree.get(name, {}), name)
    options = {name: build_section(cls, tree.get(name, {}), name) for name, cls in extra.items()}
    config = Config(**sections, options=options, given=tuple(tree))
    if config.train.algorithm not in ALGORITHMS:
        raise ConfigError("train.algorithm", f"unknown algorithm {config.train.algorithm!r}"
                          f"{did_you_mean(config.train.algorithm, ALGORITHMS)}; known: {', '.join(ALGORITHMS)}")
    ALGORITHMS[config.train.algorithm].validate(config)
    return config


def toml_file_hint(text: str, exc) -> str:
    """What a TOML error on a line like ``value = .5`` or ``progress = False`` usually means."""
    found = re.search(r"at line (\d+)", str(exc))
    line = int(found.group(1)) if found else 0
    if not 0 < line <= len(text.splitlines()):
        return ""
    _, _, value = text.splitlines()[line - 1].partition("=")
    return toml_hint(value.split("#")[0].strip())


def load_config(path=None, overrides=()) -> Config:
    """Read ``path`` (TOML; None for the defaults), apply ``--set`` overrides, validate."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read config file: {exc.strerror}") from exc
        try:
            tree = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}{toml_file_hint(text, exc)}") from None
    for assignment in overrides:
        _apply_override(tree, assignment)
    return config_from_dict(tree)
