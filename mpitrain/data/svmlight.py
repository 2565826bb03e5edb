"""Read LIBSVM / svmlight files (plain, .bz2 or .gz) into a Dataset, whole or in parts.

The parsing itself is the Cython kernel ``mpitrain._native.svmlight`` (see its docstring
for the exact format accepted). Plain files are mapped with mmap, so reading a part
touches only the pages of that part. Compressed files are a stream: reading a part of one
decompresses the whole file and then parses only the part's byte range.
"""
import bz2
import gzip
import math
import mmap
import os
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mpitrain._native import svmlight as kernel

from .dataset import FLOAT_DTYPES, Dataset
from .errors import DataError

DECOMPRESSORS = {".bz2": bz2.open, ".gz": gzip.open}  # suffix -> opener of a byte stream
FORMATS = {".bz2": "bzip2", ".gz": "gzip"}  # suffix -> the format's name in messages

TOKEN_SHOWN = 40  # characters of an offending token quoted in an error message


def read_svmlight(path, *, dtype=np.float64, n_features=None, part=None) -> Dataset:
    """Read the LIBSVM file ``path`` (or the ``part=(index, count)`` share of it).

    Returns a Dataset with CSR features of ``dtype`` (float32 or float64), the labels as
    written in the file (not normalised; ``open_dataset`` normalises), name = the file's
    name, and fingerprint = resolved path, size and mtime (plus the part). The number of
    columns is ``n_features`` when given (an index above it is an error), else the largest
    index in the rows read; ranks reading parts should pass ``n_features``.

    ``part=(index, count)`` splits the file's bytes into ``count`` near-equal ranges,
    moves every boundary forward to the next line start, and parses range ``index``:
    a line belongs to the range its first byte is in, so the parts of 0..count-1
    concatenate to the whole file. Error line numbers are the file's own.

    Raises DataError ``"<path>:<line>: <what is wrong>"`` for a broken line.
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if n_features is not None and n_features < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    if part is not None:
        index, count = part
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"part must be (index, count) with 0 <= index < count, got {part}")
    with file_bytes(path) as buffer:
        start, stop = part_range(buffer, part)
        labels, values, indices, indptr, widest, failure = kernel.parse_svmlight(
            buffer, start, stop, dtype, n_features or 0)
        if failure is not None:
            first_line = kernel.count_newlines(buffer, 0, start) + 1
            raise DataError(failure_message(path, first_line, failure, n_features))
    stat = path.stat()
    fingerprint = f"file:{path.resolve()}:size={stat.st_size}:mtime_ns={stat.st_mtime_ns}"
    if part is not None:
        fingerprint += f":part={part[0]}/{part[1]}"
    shape = (labels.shape[0], n_features or widest)
    features = sp.csr_matrix((values, indices, indptr), shape=shape)
    features.has_sorted_indices = True  # the parser requires increasing indices
    return Dataset(features, labels.astype(dtype), path.name, fingerprint)


@contextmanager
def file_bytes(path):
    """The file's (decompressed) bytes as a read-only buffer: an mmap for plain files."""
    opener = DECOMPRESSORS.get(path.suffix)
    if opener is not None:
        yield decompressed(path, opener)
        return
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            yield b""
            return
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield mapped
        finally:
            mapped.close()


def decompressed(path, opener):
    """The whole decompressed content of ``path``; DataError naming the file when the
    stream is truncated (a partial copy or download) or corrupt, instead of EOFError,
    zlib.error or OSError from deep inside the decompressor."""
    kind = FORMATS[path.suffix]
    with opener(path, "rb") as stream:  # opening errors (missing, no permission) name the file already
        try:
            return stream.read()
        except EOFError:
            raise DataError(f"{path}: the {kind} file is truncated (it ends before the end of its "
                            "compressed stream); copy or download it again") from None
        except (OSError, zlib.error) as error:
            raise DataError(f"{path}: the {kind} file is corrupt ({error}); copy or download it "
                            "again") from None


def part_range(buffer, part):
    """Byte range [start, stop) of ``part=(index, count)`` in ``buffer`` (all when None)."""
    size = len(buffer)
    if part is None:
        return 0, size
    index, count = part
    start = kernel.line_start(buffer, size * index // count)
    stop = kernel.line_start(buffer, size * (index + 1) // count)
    return start, stop


def finite_double(token: str) -> bool:
    """Whether ``token`` is a finite float64: then a value the kernel found not finite
    overflowed float32 (the kernel checks the value after the cast to the data's dtype)."""
    try:
        return math.isfinite(float(token))
    except ValueError:
        return False


def failure_message(path, first_line, failure, n_features):
    """``"<path>:<line>: <what is wrong>"`` for a failure tuple of the kernel."""
    code, line, token, index, previous = failure
    shown = whole = token.decode("utf-8", errors="replace")
    if len(shown) > TOKEN_SHOWN:
        shown = shown[:TOKEN_SHOWN] + "..."
    messages = {
        kernel.BAD_LABEL: lambda: f"bad label {shown!r} (expected a number)",
        kernel.NONFINITE_LABEL: lambda: f"label {shown!r} is not finite",
        kernel.MISSING_COLON: lambda: f"expected 'index:value', got {shown!r} (missing ':')",
        kernel.BAD_INDEX: lambda: f"bad feature index {shown!r} (expected an integer from 1 to 2147483647)",
        kernel.NOT_INCREASING: lambda: f"feature index {index} does not increase (previous index {previous})",
        kernel.BAD_VALUE: lambda: f"bad value {shown!r} for feature index {index} (expected a number)",
        kernel.NONFINITE_VALUE: lambda: (f"value {shown!r} for feature index {index} is beyond the range of float32"
                                         if finite_double(whole) else
                                         f"value {shown!r} for feature index {index} is not finite"),
        kernel.INDEX_TOO_LARGE: lambda: f"feature index {index} exceeds n_features={n_features}",
    }
    return f"{path}:{first_line + line}: {messages[code]()}"
