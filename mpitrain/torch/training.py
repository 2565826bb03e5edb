"""``mpitrain.torch.train``: a PyTorch model trained by any mpitrain method, from Python.

    import torch
    import mpitrain.torch

    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    summary = mpitrain.torch.train(model, torch.nn.CrossEntropyLoss(), (images, labels),
                                   algorithm="local_sgd", steps=2000, batch_size=32, lr=0.05,
                                   period=8, output_dir="runs/mnist-local")

Started under ``mpiexec -n K python script.py`` it trains on K ranks (``comm``, default
MPI.COMM_WORLD); the model then holds the trained weights on every rank. The run is the one
``python -m mpitrain train`` would make from the same config (mpitrain.train.Trainer: metrics,
checkpoints, summary in ``run.output_dir``), with the objective built here from the model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import tomllib
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
from mpi4py import MPI

from mpitrain.torch.heads import check_loss, head_of
from mpitrain.torch.objective import TorchObjective

#: keyword names that stand for a config field under another name
ALIASES = {"lr": ("step_size", "value")}
#: fields train() sets itself
OWN_FIELDS = {("objective", "name"), ("objective", "model"), ("objective", "head")}


def train(model, loss_fn, data, config=None, *, comm=None, head=None, threads=None, resume=None, overwrite=False,
          **overrides) -> dict:
    """Train ``model`` on ``loss_fn(model(inputs), targets)`` with the configured mpitrain method, on
    every rank of ``comm``; returns the run's summary (mpitrain.train) and leaves the trained
    weights in ``model`` (its parameters then share one flat NumPy vector).

    model: a torch.nn.Module on the CPU, built the same on every rank (rank 0's initial weights
    are broadcast; it is converted to the data's dtype in place). loss_fn: the mean over rows
    (mpitrain.torch.objective). data: ``(features, labels)`` (NumPy, SciPy sparse or torch
    tensors; a row per sample, flattened to 2-D), a torch Dataset of ``(input, target)`` pairs
    (materialised, inputs flattened), both the whole data set, the same on every rank (each
    rank trains on its shard: data.sharding); or a data set name (data.dataset: read as
    ``mpitrain train`` reads it). config: a mpitrain.config.Config, a TOML file, or None for
    the defaults. head: how the labels feed the loss (default: from the loss's type).
    threads: torch's thread count (default 1, or OMP_NUM_THREADS). resume: a checkpoint folder,
    or "auto" (this run's own); overwrite: replace the results in run.output_dir.
    overrides: config fields, as ``section.field`` (``**{"local_sgd.period": 8}``) or by a
    name that one section has (``steps=100``, ``period=8`` for the configured algorithm), and
    ``lr`` for step_size.value.
    """
    from mpitrain.config import config_from_dict
    from mpitrain.train import train as run

    comm = MPI.COMM_WORLD if comm is None else comm
    head = head_of(loss_fn, head)
    check_loss(loss_fn)
    tree = config_tree(config)
    apply_overrides(tree, overrides)
    full = None
    if isinstance(data, (str, Path)):
        tree.setdefault("data", {})["dataset"] = str(data)
    else:
        full = as_dataset(data, tree.get("data", {}).get("dtype"), head)
        tree.setdefault("data", {}).update(dataset=full.name, dtype=full.dtype.name)
    tree.setdefault("objective", {}).update(name="torch", model=f"python:{type(model).__module__}."
                                                                 f"{type(model).__qualname__}", head=head)
    config = config_from_dict(tree)
    problem = torch_problem(config, comm, model, loss_fn, full, threads)
    summary = run(config, comm, resume=resume, overwrite=overwrite, problem=problem)
    objective = problem.objective
    final = np.array(objective.flat.bound, copy=True)  # the run's last evaluation: the final model
    comm.Bcast(final, root=0)
    objective.load(final)
    return summary


def config_tree(config) -> dict:
    """The config as a nested dict: {} for None, a Config's ``to_dict()``, a TOML file's tables."""
    if config is None:
        return {}
    if isinstance(config, (str, Path)):
        try:
            return tomllib.loads(Path(config).read_text())
        except OSError as exc:
            raise ValueError(f"cannot read config file {config}: {exc.strerror}") from None
    if dataclasses.is_dataclass(config) and hasattr(config, "to_dict"):
        return config.to_dict()
    raise ValueError(f"config must be a mpitrain Config, a TOML file or None, got {type(config).__name__}")


def apply_overrides(tree: dict, overrides: dict) -> None:
    """Set ``overrides`` (``section.field`` or a field name one section has) in ``tree``."""
    from mpitrain.algorithms import option_sections
    from mpitrain.config import CORE_SECTIONS

    if "algorithm" in overrides:  # first: it decides which option section bare names mean
        tree.setdefault("train", {})["algorithm"] = overrides["algorithm"]
    algorithm = tree.get("train", {}).get("algorithm", "sync_sgd")
    sections = {**CORE_SECTIONS, **{name: cls for name, cls in option_sections().items() if name == algorithm}}
    for key, value in overrides.items():
        if "." in key:
            section, name = key.split(".", 1)
        elif key in ALIASES:
            section, name = ALIASES[key]
        else:
            owners = [s for s, cls in sections.items() if name_of(cls, key)]
            if len(owners) != 1:
                found = " or ".join(f"{s}.{key}" for s in owners) if owners else "no section has it"
                raise ValueError(f"setting {key!r} is ambiguous or unknown ({found}): pass it as "
                                 f"**{{'section.field': value}}")
            section, name = owners[0], key
        if (section, name) in OWN_FIELDS:
            raise ValueError(f"{section}.{name} is set by mpitrain.torch.train from its arguments")
        tree.setdefault(section, {})[name] = value


def name_of(cls, key) -> bool:
    return key in {f.name for f in dataclasses.fields(cls)}


def as_dataset(data, dtype, head):
    """The whole data set as a mpitrain.data.Dataset: rows flattened to 2-D, in ``dtype`` (the
    features' own float type when None), labels coded for the head (two classes to -1/+1)."""
    from mpitrain.data import Dataset, normalize_labels

    features, labels = materialise(data)
    if not scipy.sparse.issparse(features):
        features = np.asarray(features)
        features = features.reshape(features.shape[0], -1) if features.ndim != 2 else features
    if dtype is None:
        own = np.dtype(features.dtype)
        dtype = own if own in (np.float32, np.float64) else np.dtype(np.float64)
    dtype = np.dtype(dtype)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(f"labels must have shape ({features.shape[0]},) (one per row), got {labels.shape}")
    if scipy.sparse.issparse(features):
        features = scipy.sparse.csr_matrix(features, dtype=dtype)
        features.sort_indices()
    else:
        features = np.ascontiguousarray(features, dtype=dtype)
    labels = labels.astype(dtype)
    if head == "logistic":
        try:
            labels = normalize_labels(labels)
        except ValueError as exc:
            raise ValueError(f"labels for head 'logistic': {exc}") from None
    digest = fingerprint(features, labels)
    return Dataset(features, labels, f"arrays-{digest[:8]}", f"python-arrays:{digest}")


def materialise(data):
    """(features, labels) from a pair of arrays or tensors, or from a torch Dataset of pairs."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return tuple(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x for x in data)
    if isinstance(data, torch.utils.data.Dataset):
        loader = torch.utils.data.DataLoader(data, batch_size=1024, shuffle=False)
        inputs, targets = [], []
        for batch in loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise ValueError("a Dataset must give (input, target) pairs")
            inputs.append(torch.as_tensor(batch[0]).reshape(len(batch[0]), -1))
            targets.append(torch.as_tensor(batch[1]).reshape(-1))
        return torch.cat(inputs).numpy(), torch.cat(targets).numpy()
    raise ValueError(f"data must be (features, labels), a torch Dataset of (input, target) pairs or a data set "
                     f"name, got {type(data).__name__}")


def fingerprint(features, labels) -> str:
    """sha256 of the data: a run's folder and checkpoints tell data sets apart by it."""
    h = hashlib.sha256()
    parts = (features.data, features.indices, features.indptr) if scipy.sparse.issparse(features) else (features,)
    for part in (*parts, labels):
        h.update(str(part.shape).encode())
        h.update(np.ascontiguousarray(part).view(np.uint8))
    return h.hexdigest()


def torch_problem(config, comm, model, loss_fn, full, threads):
    """This rank's mpitrain.problem.Problem: its shard of ``full`` (or of the configured data set
    when None), the TorchObjective over it, and rank 0's initial weights as x0 (collective)."""
    from mpitrain.data import shard
    from mpitrain.problem import Problem, load_shard
    from mpitrain.runtime import JobError, agree

    if config.train.device != "cpu":
        raise JobError("config field 'train.device': the PyTorch bridge runs on the CPU")
    head = config.objective.head
    rank, size = comm.Get_rank(), comm.Get_size()
    if full is None:
        local = load_shard(config.data, comm, objective="torch", head=head)
    else:
        data = config.data
        local = agree(comm, lambda: shard(full, rank, size, scheme=data.sharding, seed=data.data_seed,
                                          alpha=data.dirichlet_alpha), what="loading data")
    n_global = comm.allreduce(local.n_samples)
    l2 = config.objective.l2_value(n_global)
    n_classes = None
    if head == "softmax" and full is None:  # classes coded over all ranks: every index is held by some rank
        n_classes = int(comm.allreduce(float(local.labels.max(initial=-1.0)), op=MPI.MAX)) + 1
    objective = agree(comm, lambda: TorchObjective(local.features, local.labels, l2, model, loss_fn, head=head,
                                                   n_classes=n_classes, threads=threads),
                      what="building the objective")
    x0 = objective.initial_point()
    comm.Bcast(x0, root=0)  # one start on every rank, however each built its model
    objective.load(x0)
    objective._initial[...] = x0
    return Problem(objective, local, n_global, local.n_samples / n_global, None, x0)
