"""What a resumed run may change, and the config digest that says two runs compute the same.

The rule is stated in mpitrain.checkpoint's docstring; :data:`MAY_CHANGE` is the list.
"""
from __future__ import annotations

import hashlib
import json

from ..algorithms.periods import make_period
from ..config import CORE_SECTIONS

#: Config fields a resumed run may change ("*": every field of the section): where the run
#: writes, how it reports, how long it runs and on which device, never what it computes. The
#: option sections of algorithms other than ``train.algorithm`` may change too. Everything
#: else must match the checkpoint's (see the package doc, and :func:`steps_set_the_period`).
MAY_CHANGE = {"run": "*", "train": ("steps", "device", "cuda_aware_mpi")}


def steps_set_the_period(tree: dict) -> bool:
    """Whether ``train.steps`` changes the iterates of the config ``tree`` (not only where the
    run ends): Local SGD (compressed or not) with ``schedule = "auto"`` derives its period H from it."""
    algorithm = tree.get("train", {}).get("algorithm")
    return algorithm in ("local_sgd", "compressed_local_sgd") and tree.get(algorithm, {}).get("schedule") == "auto"


def comparable_tree(tree: dict) -> dict:
    """A config as a dict (``Config.to_dict()``), less the fields a resumed run may change
    (:data:`MAY_CHANGE`) and the option sections of the algorithms it does not run."""
    algorithm = tree.get("train", {}).get("algorithm")
    out = {name: dict(fields) for name, fields in tree.items() if name in CORE_SECTIONS or name == algorithm}
    for section, names in MAY_CHANGE.items():
        if names == "*":
            out.pop(section, None)
        else:
            for name in names:
                out.get(section, {}).pop(name, None)
    if steps_set_the_period(tree):  # the one exception: train.steps sets Local SGD's period
        out["train"]["steps"] = tree["train"]["steps"]
    for section, names in unread_fields(tree).items():
        for name in names:
            out.get(section, {}).pop(name, None)
    return out


#: fields only one model or data set reads: (section, field) -> (section, field, the values that read it)
READ_ONLY_BY = {
    ("objective", "hidden"): ("objective", "name", ("mlp",)),
    ("objective", "activation"): ("objective", "name", ("mlp",)),
    ("objective", "head"): ("objective", "name", ("mlp", "torch")),
    ("objective", "init_seed"): ("objective", "name", ("mlp", "torch")),
    ("objective", "model"): ("objective", "name", ("torch",)),
    ("data", "n_classes"): ("data", "dataset", ("synthetic-multiclass",)),
}


def unread_fields(tree: dict) -> dict:
    """{section: [fields]} of the config ``tree`` that its model and data set do not read (an
    mlp's layer sizes in a logistic run): they change nothing, so they are not compared, and a
    linear run's digest is the one it had before the networks' fields existed."""
    unread = {}
    for (section, name), (where, key, readers) in READ_ONLY_BY.items():
        if tree.get(where, {}).get(key) not in readers:
            unread.setdefault(section, []).append(name)
    return unread


def comparable_config(config) -> dict:
    """The config as a dict, less the fields a resumed run may change."""
    return comparable_tree(config.to_dict())


def config_digest(config) -> str:
    """sha256 of the comparable config in canonical JSON: equal for runs that compute the same."""
    text = json.dumps(comparable_config(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def differences(theirs: dict, ours: dict) -> list:
    """``section.field`` names (or a whole ``section``) where two comparable trees differ."""
    names = []
    for section in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(section), ours.get(section)
        if not (isinstance(a, dict) and isinstance(b, dict)):
            names += [section] if a != b else []
            continue
        names += [f"{section}.{name}" for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
    return names


def final_round_at(step: int, steps: int, period) -> bool:
    """Whether compressed_local_sgd's state at ``step`` holds the extra average of a run of
    ``steps`` steps after its last step (one its ``period`` object would not have made)."""
    return step == steps and step > 0 and not period.syncs_after(step - 1)


def steps_refusal(manifest: dict, config) -> str | None:
    """Why this run's ``train.steps`` cannot continue the checkpoint, or None."""
    step, new = manifest["step"], config.train.steps
    old = manifest["config"].get("train", {}).get("steps", new)
    if config.train.algorithm == "async_sgd":  # its step is the store's version, its budget in updates
        budget = config.section("async_sgd").max_updates or new * manifest["ranks"]
        if budget < step:
            return (f"it is at update {step}, after the end of this run (a budget of {budget} updates: "
                    f"async_sgd.max_updates, default train.steps x ranks)")
        return None
    if new < step:
        return f"it is at step {step}, after the end of this run (train.steps = {new})"
    if config.train.algorithm == "compressed_local_sgd" and old != new:
        opts = config.section("compressed_local_sgd")
        period = make_period(opts, new, manifest["ranks"], config.train.batch_size)
        if final_round_at(step, old, period) != final_round_at(step, new, period):
            return (f"compressed_local_sgd averages after its last step, so its state at step {step} depends "
                    f"on train.steps (written with {old}, this run has {new}); resume with train.steps = {old}")
    return None
