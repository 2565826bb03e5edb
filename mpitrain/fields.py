"""What a config field is: its error, and how a field declares its choices and bounds.

Kept apart from mpitrain.config so that the algorithms, which declare their own option
sections with these helpers, do not import the config module that imports them (one
direction only: config -> algorithms -> fields).
"""
from __future__ import annotations

from dataclasses import field


class ConfigError(ValueError):
    """A bad configuration value; ``field`` is ``section.name`` (or the file). An option
    section's own checks may name the field alone (``ConfigError("period", ...)``): reading the
    section (mpitrain.config.build_section) puts the section's name in front."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"config field '{field_name}': {message}")
        self.field = field_name
        self.detail = message


def choice(default, choices, doc=""):
    return field(default=default, metadata={"choices": tuple(choices), "doc": doc})


def bounded(default, *, min=None, max=None, exclusive_min=None, doc=""):
    return field(default=default, metadata={"min": min, "max": max, "exclusive_min": exclusive_min, "doc": doc})
