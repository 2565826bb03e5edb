"""Algorithms by name: ``train.algorithm = "<name>"`` picks one.

Each entry is a subclass of :class:`mpitrain.algorithms.base.Algorithm`, registered under
its ``name``; an algorithm with options declares them as a frozen dataclass in its
``options`` attribute, read from the config section of the same name (e.g. ``[local_sgd]``).
"""
from .async_sgd import AsyncSGD
from .async_local_sgd import AsyncLocalSGD
from .compressed_local_sgd import CompressedLocalSGD
from .compressed_sgd import CompressedSGD
from .hierarchical import HierarchicalLocalSGD
from .local_sgd import LocalSGD
from .sync_sgd import SyncSGD

ALGORITHMS = {cls.name: cls for cls in (SyncSGD, AsyncSGD, LocalSGD, HierarchicalLocalSGD, AsyncLocalSGD,
                                         CompressedSGD, CompressedLocalSGD)}


def option_sections() -> dict:
    """Config sections declared by algorithms: section name -> dataclass."""
    return {name: cls.options for name, cls in ALGORITHMS.items() if cls.options is not None}
