"""Named LIBSVM data sets, binary and multiclass: where to find them, how to fetch them.

Each entry states its shape and its kind: "binary" (``classes`` is the (negative,
positive) pair the file writes; loaders map it to -1/+1) or "multiclass" (``classes``
lists every class value the file writes; loaders leave the labels as written, and a
multiclass objective maps them to indices 0..C-1, see ``mpitrain.data.labels``). Binary
sets come from LIBSVM's binary page, multiclass ones from its multiclass page.

``locate(name)`` looks, in order, at

1. ``$MPITRAIN_DATA/<file>`` when the variable is set (a shared directory on a cluster);
2. the cache ``$MPITRAIN_CACHE/<file>`` (default ``~/.cache/mpitrain/<file>``);
3. a download from the LIBSVM site into the cache: written to a temporary file in the
   cache directory, checked against the sha256 when the registry knows it (deleted on a
   mismatch), then renamed into place, so readers never see half a file.

For a compressed entry the decompressed name (``<file>`` without ``.bz2``) is accepted
too in 1 and 2, and preferred: plain files are mmapped and read in parts cheaply.
A sha256 is checked only for the file as served (``<file>``), also when found in 1 or
2 (only w8a's is known; hashing it takes milliseconds).

Downloads are not coordinated between MPI ranks: call ``locate`` on one rank (or once
before ``mpiexec``) and barrier before the others read.
"""
import hashlib
import http.client
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..atomic import replacing
from .errors import DataError

BASE_URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/binary/"
MULTICLASS_URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"
BASE_URLS = {"binary": BASE_URL, "multiclass": MULTICLASS_URL}  # kind -> where its files are
DOWNLOAD_TIMEOUT = 30.0   # seconds without data before a download is abandoned
CHUNK = 1 << 20           # bytes per read while downloading and hashing


@dataclass(frozen=True)
class RemoteDataset:
    """One data set of the registry.

    name          registry name, e.g. "w8a"
    file          file name on the site and in the data/cache directories
    n_samples     rows of the file
    n_features    columns (the largest feature index of the set)
    compression   "bz2" or None
    sha256        hex digest of ``file`` as served, only where known for sure
    classes       binary: the (negative, positive) label coding in the file;
                  multiclass: every class value the file writes, sorted
    url           where to download it (BASE_URLS[kind] + file unless given)
    kind          "binary" or "multiclass"
    """

    name: str
    file: str
    n_samples: int
    n_features: int
    compression: str | None = None
    sha256: str | None = None
    classes: tuple = (-1.0, 1.0)
    url: str = ""
    kind: str = "binary"

    def __post_init__(self):
        if self.kind not in BASE_URLS:
            raise ValueError(f"kind must be one of {sorted(BASE_URLS)}, got {self.kind!r}")
        if self.kind == "binary" and len(self.classes) != 2:
            raise ValueError(f"a binary entry's classes are a (negative, positive) pair, got {self.classes}")
        if self.kind == "multiclass" and (len(self.classes) < 2 or list(self.classes) != sorted(set(self.classes))):
            raise ValueError(f"a multiclass entry's classes are two or more sorted values, got {self.classes}")
        if not self.url:
            object.__setattr__(self, "url", BASE_URLS[self.kind] + self.file)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def plain_file(self) -> str:
        """The file name once decompressed."""
        suffix = f".{self.compression}" if self.compression else ""
        return self.file[: -len(suffix)] if suffix and self.file.endswith(suffix) else self.file


def _values(first, last) -> tuple:
    """(first, ..., last) as floats: the class values of a multiclass entry."""
    return tuple(float(value) for value in range(first, last + 1))


DATASETS = {
    entry.name: entry
    for entry in (
        RemoteDataset("w8a", "w8a", 49_749, 300,
                      sha256="b464b4f6ce6a5d9e181ffc793e19a04751036273722312398ef7673705014902"),
        RemoteDataset("a9a", "a9a", 32_561, 123),
        RemoteDataset("rcv1.binary", "rcv1_train.binary.bz2", 20_242, 47_236, compression="bz2"),
        RemoteDataset("real-sim", "real-sim.bz2", 72_309, 20_958, compression="bz2"),
        RemoteDataset("epsilon", "epsilon_normalized.bz2", 400_000, 2_000, compression="bz2"),
        RemoteDataset("covtype.binary", "covtype.libsvm.binary.bz2", 581_012, 54,
                      compression="bz2", classes=(1.0, 2.0)),
        # multiclass (LIBSVM publishes no checksums); the training files
        RemoteDataset("mnist", "mnist.bz2", 60_000, 780, compression="bz2", classes=_values(0, 9),
                      kind="multiclass"),
        RemoteDataset("usps", "usps.bz2", 7_291, 256, compression="bz2", classes=_values(1, 10),
                      kind="multiclass"),
        RemoteDataset("covtype", "covtype.bz2", 581_012, 54, compression="bz2", classes=_values(1, 7),
                      kind="multiclass"),
        RemoteDataset("letter", "letter.scale", 15_000, 16, classes=_values(1, 26), kind="multiclass"),
        RemoteDataset("pendigits", "pendigits", 7_494, 16, classes=_values(0, 9), kind="multiclass"),
        RemoteDataset("satimage", "satimage.scale", 4_435, 36, classes=_values(1, 6), kind="multiclass"),
        RemoteDataset("dna", "dna.scale", 2_000, 180, classes=_values(1, 3), kind="multiclass"),
    )
}


def data_dir() -> Path | None:
    """``$MPITRAIN_DATA`` as a Path, or None when unset or empty."""
    value = os.environ.get("MPITRAIN_DATA")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """``$MPITRAIN_CACHE``, default ``~/.cache/mpitrain``."""
    value = os.environ.get("MPITRAIN_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mpitrain"


def lookup(name) -> RemoteDataset:
    """The registry entry ``name``; DataError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def locate(name) -> Path:
    """Path of the registered data set ``name``, downloading it into the cache if needed.

    Raises DataError naming the data set, both places the file may be put, the URL and
    why the download failed.
    """
    entry = lookup(name)
    directories = [d for d in (data_dir(), cache_dir()) if d is not None]
    for directory in directories:
        for file in dict.fromkeys((entry.plain_file, entry.file)):
            candidate = directory / file
            if candidate.is_file():
                if file == entry.file and entry.sha256 is not None:
                    check_sha256(candidate, entry.sha256)
                return candidate
    target = cache_dir() / entry.file
    try:
        download(entry.url, target, entry.sha256)
    except (OSError, ValueError, http.client.HTTPException) as error:
        places = " or ".join(str(d / entry.file) for d in directories)
        hint = "" if data_dir() is not None else " (or set MPITRAIN_DATA to a directory holding it)"
        raise DataError(
            f"data set {name!r} not found: put {entry.file} at {places}{hint}; "
            f"downloading {entry.url} failed: {error}"
        ) from error
    return target


def download(url, target, sha256=None, timeout=DOWNLOAD_TIMEOUT) -> Path:
    """Fetch ``url`` into ``target`` atomically; check ``sha256`` when given.

    Raises OSError (network, disk) or ValueError (checksum mismatch; nothing is left
    behind).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with replacing(target, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:  # raised inside: nothing is kept
            raise ValueError(f"sha256 mismatch: expected {sha256}, got {digest.hexdigest()}")
    return target


def check_sha256(path, expected):
    """DataError when the file's sha256 is not ``expected``."""
    found = file_sha256(path)
    if found != expected:
        raise DataError(f"{path}: sha256 {found} differs from the known {expected}; "
                        f"delete or replace the file")


def file_sha256(path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
