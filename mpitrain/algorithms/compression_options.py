"""The config section shared by the compressed algorithms, and the compressor it describes.

Beznosikov et al. 2020 (docs/papers.md s.2). ``[compressed_sgd]`` (and ``[compressed_local_sgd]``)
name a compressor of :data:`mpitrain.compress.COMPRESSORS` and its parameters; a parameter
the compressor does not take is an error naming the field. ``biased`` / ``unbiased`` name
the two parts of ``compressor = "composition"``: ``k`` / ``ratio`` go to the biased part,
``levels`` / ``p`` / ``bucket_size`` to the unbiased one.

Everything but "k > d" is checked when the config is read (the compressor is built once for
a stand-in dimension); d is known only after the data is loaded, so "k > d" is a
:class:`mpitrain.runtime.JobError` raised on every rank by :func:`build_compressor`.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass

import numpy as np

from ..compress import COMPRESSORS, make_compressor
from ..fields import ConfigError, bounded, choice
from ..runtime import JobError
from .contractive_scaling import ContractiveScaling

FEEDBACK_NAMES = ("ef", "ef21", "none")
PARAMETERS = ("k", "ratio", "levels", "bucket_size", "p")  # compressor parameters of the section
BIASED_PARAMETERS = ("k", "ratio")  # of a composition: these go to its biased part
WIRE_DTYPES = ("float32", "float64")
STAND_IN_D = 1 << 12  # dimension used to check the parameters before d is known
#: k = round(DEFAULT_RATIO d) for a compressor that keeps k entries when neither k nor ratio is given
#: (5%: k = 15 of w8a's d = 300, the paper experiments' choice)
DEFAULT_RATIO = 0.05
#: s for a dithering compressor when ``levels`` is not given (the paper experiments' s = 4)
DEFAULT_LEVELS = 4


@dataclass(frozen=True)
class CompressionOptions:
    compressor: str = choice("top_k_natural_dithering", sorted(COMPRESSORS))  # a name of mpitrain.compress.COMPRESSORS
    k: typing.Optional[int] = bounded(None, min=1)  # entries kept (Top-k, Rand-k); 1 <= k <= d; neither k nor ratio: ratio 0.05
    ratio: typing.Optional[float] = bounded(None, exclusive_min=0.0, max=1.0)  # k = round(ratio d), instead of k
    levels: typing.Optional[int] = bounded(None, min=1)  # s, quantisation levels (dithering); default 4
    bucket_size: typing.Optional[int] = bounded(None, min=1)  # dithering: entries per norm; default d
    p: typing.Optional[float] = bounded(None, min=1.0)  # natural dithering: the norm ||.||_p (default 2)
    biased: str = choice("top_k", sorted(COMPRESSORS))  # composition: the biased compressor
    unbiased: str = choice("natural_dithering", sorted(COMPRESSORS))  # composition: the unbiased one
    error_feedback: typing.Union[bool, str] = "ef"  # "ef" | "ef21" | "none" (true = "ef", false = "none")
    clip: float = bounded(0.0, min=0.0)  # clip each gradient to this l2 norm before compressing; 0: off
    wire_dtype: str = choice("float32", WIRE_DTYPES)  # float type of the values that travel (paper: 32 bits)
    scale_unbiased: bool = True  # with ef / ef21: use C / (1 + omega) for an unbiased C (omega > 0)

    def __post_init__(self):
        feedback = self.error_feedback
        if isinstance(feedback, bool):
            feedback = "ef" if feedback else "none"
        if feedback not in FEEDBACK_NAMES:
            raise ConfigError("error_feedback",
                              f"must be true, false or one of {', '.join(map(repr, FEEDBACK_NAMES))}; "
                              f"got {self.error_feedback!r}")
        object.__setattr__(self, "error_feedback", feedback)


def _accepted(factory) -> set:
    """Parameter names the factory takes (all of PARAMETERS when it forwards **params)."""
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return set(PARAMETERS)  # checked when the compressor is built
    return set(parameters) - {"d", "dtype"}


def _requires(factory, name: str) -> bool:
    """Whether the factory has a parameter ``name`` without a default."""
    parameter = inspect.signature(factory).parameters.get(name)
    return parameter is not None and parameter.default is inspect.Parameter.empty


def compressor_parameters(opts, section: str) -> tuple[str, dict]:
    """(name, keyword arguments) for make_compressor; ConfigError naming a parameter the
    compressor does not take."""
    given = {name: getattr(opts, name) for name in PARAMETERS if getattr(opts, name) is not None}
    keeps = opts.biased if opts.compressor == "composition" else opts.compressor
    if "k" not in given and "ratio" not in given and {"k", "ratio"} <= _accepted(COMPRESSORS[keeps]):
        given["ratio"] = DEFAULT_RATIO  # the default size of a compressor that keeps k entries
    quantiser = opts.unbiased if opts.compressor == "composition" else opts.compressor
    if "levels" not in given and _requires(COMPRESSORS[quantiser], "levels"):
        given["levels"] = DEFAULT_LEVELS  # the default s of a dithering compressor
    if opts.compressor != "composition":
        accepted = _accepted(COMPRESSORS[opts.compressor])
        for name in given:
            if name not in accepted:
                takes = ", ".join(sorted(accepted & set(PARAMETERS))) or "none"
                raise ConfigError(f"{section}.{name}", f"compressor {opts.compressor!r} takes no {name} "
                                  f"(its parameters: {takes})")
        return opts.compressor, given
    parts = {}
    for role, name in (("biased", opts.biased), ("unbiased", opts.unbiased)):
        if name == "composition":
            raise ConfigError(f"{section}.{role}", "a composition cannot nest another composition")
        parts[role] = (name, _accepted(COMPRESSORS[name]))
    params = {"biased_params": {}, "unbiased_params": {}}
    for key, value in given.items():
        role = "biased" if key in BIASED_PARAMETERS else "unbiased"
        name, accepted = parts[role]
        if key not in accepted:
            raise ConfigError(f"{section}.{key}", f"the {role} part {name!r} of the composition takes no {key}")
        params[f"{role}_params"][key] = value
    return "composition", {"biased": opts.biased, "unbiased": opts.unbiased, **params}


def _field_of(message: str, section: str) -> str:
    """The section field a compressor's ValueError message is about."""
    names = ("k", "ratio", "levels", "bucket_size", "p")
    for name in names:
        if message.startswith(f"{name} "):
            return f"{section}.{name}"
    words = f" {message} ".replace("=", " ").replace(",", " ")
    for name in names:
        if f" {name} " in words:
            return f"{section}.{name}"
    return f"{section}.compressor"


def check_compression_options(opts, section: str) -> None:
    """Config-time checks: parameters the compressor takes, and values it accepts (for a
    stand-in dimension; "k > d" is left to :func:`build_compressor`)."""
    name, params = compressor_parameters(opts, section)
    d = max(STAND_IN_D, opts.k or 1)
    try:
        make_compressor(name, d, dtype=opts.wire_dtype, **params)
    except TypeError as exc:  # a required parameter is missing, or an unexpected one given
        named = [p for p in PARAMETERS if f"'{p}'" in str(exc)]
        field = f"{section}.{named[0]}" if named else f"{section}.compressor"
        problem = "takes no such parameter" if "unexpected" in str(exc) else "needs it"
        raise ConfigError(field, f"compressor {opts.compressor!r} {problem} ({exc})") from None
    except ValueError as exc:
        raise ConfigError(_field_of(str(exc), section), f"compressor {opts.compressor!r}: {exc}") from None


def build_compressor(opts, d: int, section: str):
    """The configured compressor for dimension d; JobError naming the field (e.g. ``k > d``).

    With error feedback and ``scale_unbiased``, an unbiased compressor of omega > 0 comes
    wrapped in :class:`ContractiveScaling` (C / (1 + omega), contractive as EF needs)."""
    name, params = compressor_parameters(opts, section)
    try:
        compressor = make_compressor(name, d, dtype=np.dtype(opts.wire_dtype), **params)
    except (TypeError, ValueError) as exc:
        raise JobError(f"config field '{_field_of(str(exc), section)}': compressor {opts.compressor!r} "
                       f"for d = {d}: {exc}") from None
    if opts.error_feedback != "none" and opts.scale_unbiased and compressor.unbiased and compressor.omega > 0:
        return ContractiveScaling(compressor)
    return compressor


def is_biased(compressor) -> bool:
    return not compressor.unbiased
