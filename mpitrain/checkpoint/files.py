"""Durable files (temporary name, fsync, rename, fsync the folder) and one rank's nested state
as npz arrays plus a JSON skeleton."""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from ..metrics import write_json_atomic


def fsync_directory(path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    """np.savez to a temporary file, fsync, rename over ``path``, fsync the folder; returns
    the SHA-256 (hex) of the bytes written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            writer = HashingWriter(fh)
            np.savez(writer, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_directory(path.parent)
    return writer.sha.hexdigest()


def write_json_durable(path, payload: dict) -> None:
    write_json_atomic(path, payload)
    fsync_directory(Path(path).parent)


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
