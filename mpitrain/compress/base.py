"""The compressor interface shared by every file of this package.

Conventions (Beznosikov et al. 2020, docs/papers.md s.2):

- ``unbiased`` compressors are in U(omega): E C(x) = x, E||C(x) - x||^2 <= omega ||x||^2;
  their ``omega`` is a float and ``delta`` is None.
- biased compressors are in B3(delta), delta >= 1 ("contractive"):
  E||C(x) - x||^2 <= (1 - 1/delta) ||x||^2; their ``delta`` is a float and ``omega`` None.
  (The other common convention, a contraction q = 1/delta in (0, 1], is ``1 / delta``.)

A compressor is built for one dimension d and one dtype (float32 or float64, the
dtype of the values that travel and of ``decode``'s output). ``encode(x, seed)`` returns
the payload: a 1-D ``numpy.uint8`` array, exactly the bytes that travel, whose length is
``payload_nbytes()``; ``payload_bits()`` is the information-theoretic size the paper
counts (sections are padded to whole bytes, so bits <= 8 nbytes < bits + 8 sections).
Random compressors need an explicit uint64 ``seed`` (derive it from run seed, step and
rank, or share it between ranks for Rand-k); they never touch NumPy's global RNG.

x may be a NumPy or a CuPy array: payload and decoded vector then live where x lives, and
the kernels are picked by ``mpitrain.backend.kernels_for`` (Cython or CuPy, same payload).
"""
import importlib

import numpy as np

from mpitrain import backend
from mpitrain._native import compress_random

DTYPES = (np.float32, np.float64)
_NDARRAY = np.ndarray
_HOST_KERNELS = {}  # name -> mpitrain._native.<name>: the host path skips backend.kernels_for


def host_kernels(name):
    """The Cython kernel module ``name`` (imported once)."""
    module = _HOST_KERNELS.get(name)
    if module is None:
        module = _HOST_KERNELS[name] = importlib.import_module(f"mpitrain._native.{name}")
    return module


def check_positive_int(name, value):
    """value as an int, or ValueError naming the parameter when it is not an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def resolve_k(d, k=None, ratio=None):
    """k from k or ratio (a fraction of d, k = max(1, round(ratio d))); ValueError names
    the bad parameter: k < 1 or k > d, ratio outside (0, 1], both or neither given."""
    if (k is None) == (ratio is None):
        raise ValueError(f"give exactly one of k or ratio, got k={k!r}, ratio={ratio!r}")
    if ratio is not None:
        if not 0.0 < float(ratio) <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
        k = max(1, int(round(float(ratio) * d)))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= d:
        raise ValueError(f"k must be an integer with 1 <= k <= d = {d}, got k={k!r}")
    return int(k)


def check_levels(levels, maximum=None):
    """levels (the paper's s) as an int >= 1 (and <= maximum), or a ValueError naming s."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels (s) must be an integer >= 1, got {levels!r}")
    if maximum is not None and levels > maximum:
        raise ValueError(f"levels (s) must be <= {maximum}, got {levels!r}")
    return int(levels)


def index_bits(d):
    """Bits per index in [0, d): ceil(log2 d) (0 when d = 1)."""
    return (int(d) - 1).bit_length()


class Compressor:
    """Base class: holds d and dtype, checks inputs, states the class constants.

    Subclasses set ``unbiased``, ``summable``, ``random`` and implement ``omega`` or
    ``delta``, ``payload_bits``, ``payload_nbytes``, ``encode``, ``decode``.
    """

    unbiased = False  # True: class U(omega); False: class B3(delta)
    summable = False  # payloads of ranks (same seed) can be summed by an Allreduce
    random = False  # encode needs a seed
    _nbytes = None  # payload_nbytes(), for subclasses that compute it once in __init__

    def __init__(self, d, dtype=np.float32):
        self.d = check_positive_int("d", d)
        dtype = np.dtype(dtype)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self.dtype = dtype
        self.width = 8 * dtype.itemsize  # bits of one value that travels

    @property
    def omega(self):
        """U(omega) constant (unbiased compressors), else None."""
        return None

    @property
    def delta(self):
        """B3(delta) constant, delta >= 1 (biased compressors), else None."""
        return None

    def payload_bits(self):
        raise NotImplementedError

    def payload_nbytes(self):
        raise NotImplementedError

    def encode(self, x, seed=None):
        raise NotImplementedError

    def decode(self, payload):
        raise NotImplementedError

    def __call__(self, x, seed=None):
        """decode(encode(x, seed)): the compressed vector C(x)."""
        return self.decode(self.encode(x, seed))

    def __repr__(self):
        return f"{type(self).__name__}(d={self.d}, dtype={self.dtype.name})"

    # helpers for subclasses
    # A NumPy array (type exactly np.ndarray) takes the host path without asking mpitrain.backend:
    # these run several times per step, and the CuPy check costs more than the kernels at small d.
    def _xp(self, a):
        """numpy or cupy: where a lives (payloads and outputs are made there)."""
        return np if type(a) is _NDARRAY else backend.array_module(a)

    def _kernels(self, a, name):
        """The kernel module ``name`` (Cython or CuPy) for arrays like a."""
        if type(a) is _NDARRAY:
            return _HOST_KERNELS.get(name) or host_kernels(name)
        return backend.kernels_for(a, name)

    def _input(self, x):
        if (type(x) is _NDARRAY and x.dtype == self.dtype and x.shape == (self.d,)
                and x.flags.c_contiguous):
            return x  # what ascontiguousarray would return
        x = self._xp(x).ascontiguousarray(x, dtype=self.dtype)
        if x.shape != (self.d,):
            raise ValueError(f"x must have shape ({self.d},), got {x.shape}")
        return x

    def _seed(self, seed):
        if seed is None:
            if self.random:
                raise ValueError(f"seed is required: {type(self).__name__} is random")
            return 0
        return int(seed) & 0xFFFFFFFFFFFFFFFF

    def _payload(self, payload):
        nbytes = self._nbytes if self._nbytes is not None else self.payload_nbytes()
        if (type(payload) is _NDARRAY and payload.dtype == np.uint8 and payload.flags.c_contiguous
                and payload.shape == (nbytes,)):
            return payload  # what the checks below would return
        xp = self._xp(payload)
        payload = xp.asarray(payload)
        if payload.dtype != np.uint8 or payload.shape != (self.payload_nbytes(),):
            raise ValueError(
                f"payload must be uint8 of shape ({self.payload_nbytes()},), "
                f"got {payload.dtype} {payload.shape}"
            )
        return xp.ascontiguousarray(payload)

    def _header(self, payload, count):
        """The first count values of the payload, as the dtype (a view)."""
        return payload[: count * self.dtype.itemsize].view(self.dtype)


def derive_seed(seed, tag):
    """Independent uint64 sub-stream seed for (seed, tag) (see compress_random)."""
    return compress_random.derive_seed(seed, tag)
