"""Files written whole or not at all: the one way mpitrain writes a result.

:func:`replacing` hands out a file object on a temporary file beside the target; when the block
ends without an error the data are flushed, fsynced and the temporary is renamed over the target
(``os.replace``: a reader sees the old file or the new one, never a part of one); when it raises,
the temporary is removed and the target is left as it was. Metrics summaries, checkpoints, the
f* cache, downloads, plots and the experiments' tables all go through it.
"""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path


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


@contextmanager
def replacing(path, mode: str = "w", *, durable: bool = False):
    """A file object (``mode``: "w" or "wb") whose contents replace ``path`` atomically when the
    block ends cleanly. ``durable``: also fsync the folder, so that the rename survives a crash.
    The temporary is ``.<name>.tmp<pid>-<thread>`` in the same folder (a rename never crosses
    file systems) and gets the usual permissions (umask), as ``open`` gives them."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        with open(temporary, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    if durable:
        fsync_directory(path.parent)


def write_text(path, text: str, *, durable: bool = False) -> None:
    with replacing(path, durable=durable) as handle:
        handle.write(text)


def write_json(path, payload, *, indent: int | None = 2, durable: bool = False) -> None:
    """``payload`` as JSON (a newline after it when indented)."""
    with replacing(path, durable=durable) as handle:
        json.dump(payload, handle, indent=indent)
        if indent is not None:
            handle.write("\n")
