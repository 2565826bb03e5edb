"""What mpitrain offers, by name, one line each: ``python -m mpitrain list <kind>`` and the
choices shown by ``--help``. Every line comes from the registry or the code it names (a class's
docstring, a field's comment), so the list cannot drift from what runs."""
from __future__ import annotations

import dataclasses
import inspect
import re

KINDS = ("algorithms", "compressors", "datasets", "objectives", "benches", "experiments", "fields")


def first_line(obj, width: int = 110) -> str:
    """The first paragraph of ``obj``'s docstring on one line, cut to ``width`` characters."""
    doc = (inspect.getdoc(obj) or "").strip()
    text = " ".join(doc.split("\n\n")[0].split()).rstrip(".")
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def algorithms() -> dict:
    from .algorithms import ALGORITHMS

    return {name: first_line(inspect.getmodule(cls)) for name, cls in ALGORITHMS.items()}


def compressors() -> dict:
    from .compress import COMPRESSORS

    return {name: first_line(factory) for name, factory in sorted(COMPRESSORS.items())}


def datasets() -> dict:
    from .data.registry import DATASETS

    rows = {name: f"LIBSVM {name}: {entry.n_samples} x {entry.n_features}"
                  + (f", {entry.n_classes} classes" if entry.kind == "multiclass" else "")
            for name, entry in DATASETS.items()}
    rows["synthetic-classification"] = "generated sparse binary classification (data.n_samples, n_features, density)"
    rows["synthetic-least-squares"] = "generated least squares (data.n_samples, n_features, condition_number, noise)"
    rows["synthetic-multiclass"] = ("generated dense classes 0..C-1 from a random tanh network "
                                    "(data.n_samples, n_features, n_classes)")
    rows["<path>"] = "any LIBSVM file (.gz / .bz2 read as they are)"
    return rows


def objectives() -> dict:
    from .objectives import OBJECTIVES

    return {name: first_line(cls) for name, cls in OBJECTIVES.items()}


def benches() -> dict:
    from .bench import DESCRIPTIONS

    return dict(sorted(DESCRIPTIONS.items()))


def experiments() -> dict:
    from .experiments import DESCRIPTIONS

    return dict(sorted(DESCRIPTIONS.items()))


COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")
FIELD = re.compile(r"^\s+(\w+)\s*:")
COMMENT_LINE = re.compile(r"^\s+#\s*(.+)$")


def field_comments(cls) -> dict:
    """{field: the comment beside it (or on the line above it) in the dataclass's source}: the
    field's documentation, kept where the field is declared."""
    comments, above = {}, None
    for line in inspect.getsource(cls).splitlines():
        match = COMMENT.match(line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
        elif (field := FIELD.match(line)) and above:
            comments[field.group(1)] = above
        comment = COMMENT_LINE.match(line)
        above = comment.group(1).strip() if comment else None
    for base in cls.__mro__[1:]:  # inherited fields keep their base class's comment
        if dataclasses.is_dataclass(base):
            for name, text in field_comments(base).items():
                comments.setdefault(name, text)
    return comments


def sections() -> dict:
    """Every config section: name -> dataclass, core sections first."""
    from .config import CORE_SECTIONS, option_sections

    return {**CORE_SECTIONS, **option_sections()}


def fields() -> dict:
    """``section.field`` -> "default: meaning"."""
    rows = {}
    for section, cls in sections().items():
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows[f"{section}.{f.name}"] = f"{default!r}: {comments.get(f.name, '')}".rstrip(": ")
    return rows


def config_reference() -> str:
    """docs/config.md: every config section and field, its default and its meaning, generated
    from the dataclasses (``python -m mpitrain list fields --markdown > docs/config.md``)."""
    lines = ["# Configuration reference", "",
             "Generated from the config dataclasses by `python -m mpitrain list fields --markdown`; "
             "`tests/test_cli_surface.py` fails when this file is out of date. A run is one TOML file "
             "with a table per section; `--set section.field=value` overrides a field; "
             "`python -m mpitrain train --print-config` prints the resolved config.", ""]
    for section, cls in sections().items():
        comments = field_comments(cls)
        lines += [f"## [{section}]", "", "| field | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            meaning = comments.get(f.name, "").replace("|", "\\|")
            lines.append(f"| `{f.name}` | `{default!r}` | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def listing(kind: str) -> dict:
    return globals()[kind]()


def format_listing(rows: dict) -> str:
    width = max(map(len, rows), default=0)
    return "\n".join(f"{name:<{width}}  {text}" for name, text in rows.items())
