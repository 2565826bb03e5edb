"""Durable files (temporary name, fsync, rename, fsync the folder) and one rank's nested state
as npz arrays plus a JSON skeleton."""
from __future__ import annotations

import hashlib
import io

import numpy as np

from ..atomic import fsync_directory, replacing, write_json

__all__ = ["HashingWriter", "flatten", "fsync_directory", "unflatten", "write_json_durable", "write_npz_atomic"]


class HashingWriter:
    """A write-only file that passes bytes on to ``fh`` and SHA-256s them on the way.

    It has no ``tell``/``seek`` on purpose: zipfile then writes the npz strictly in order (the
    sizes go into data descriptors instead of seeking back to patch the headers), so the digest
    is that of the file, without reading it back. numpy wants a ``read`` attribute to accept a
    file object at all."""

    def __init__(self, fh):
        self.fh = fh
        self.sha = hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()

    def read(self, *args):
        raise io.UnsupportedOperation("write-only")


def write_npz_atomic(path, arrays: dict) -> str:
    """np.savez atomically and durably (mpitrain.atomic: temporary, fsync, rename, fsync of the
    folder); returns the SHA-256 (hex) of the bytes written."""
    with replacing(path, "wb", durable=True) as handle:
        writer = HashingWriter(handle)
        np.savez(writer, **arrays)
    return writer.sha.hexdigest()


def write_json_durable(path, payload: dict) -> None:
    write_json(path, payload, durable=True)


def flatten(tree: dict, arrays: dict, prefix: str):
    """Split a nested state dict into ``arrays`` (name -> ndarray) and a JSON-able skeleton."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict):
            out[key] = flatten(value, arrays, name)
        elif isinstance(value, np.ndarray):
            arrays[name] = value
            out[key] = {"__array__": name}
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out


def unflatten(skeleton, arrays):
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__array__"}:
            return arrays[skeleton["__array__"]]
        return {key: unflatten(value, arrays) for key, value in skeleton.items()}
    return skeleton
