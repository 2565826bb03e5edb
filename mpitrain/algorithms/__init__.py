"""Algorithms by name: ``train.algorithm = "<name>"`` picks one.

Each entry is a subclass of :class:`mpitrain.algorithms.base.Algorithm`; an algorithm with
options declares them as a frozen dataclass in its ``options`` attribute, read from the
config section of the same name as the algorithm (e.g. ``[local_sgd]``).
"""
from .async_sgd import AsyncSGD
from .async_local_sgd import AsyncLocalSGD
from .compressed_local_sgd import CompressedLocalSGD
from .compressed_sgd import CompressedSGD
from .hierarchical import HierarchicalLocalSGD
from .local_sgd import LocalSGD
from .sync_sgd import SyncSGD

ALGORITHMS = {
    "sync_sgd": SyncSGD,
    "async_sgd": AsyncSGD,
    "local_sgd": LocalSGD,
    "hierarchical_local_sgd": HierarchicalLocalSGD,
    "async_local_sgd": AsyncLocalSGD,
    "compressed_sgd": CompressedSGD,
    "compressed_local_sgd": CompressedLocalSGD,
}


def option_sections() -> dict:
    """Config sections declared by algorithms: section name -> dataclass."""
    return {name: cls.options for name, cls in ALGORITHMS.items() if cls.options is not None}
