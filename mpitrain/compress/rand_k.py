"""Rand-k with a seed shared by all ranks, scaled (U(d/k - 1)) or not (B3(d/k))."""
import numpy as np

from mpitrain import backend
from mpitrain._native.compress_select import randk_decode, randk_encode
from mpitrain.compress.base import Compressor, resolve_k

SEED_BYTES = 8


class RandK(Compressor):
    """Keep a uniformly random k-subset, times d/k when ``scaled`` (docs/papers.md s.2).

    The subset is the first k distinct draws floor(splitmix64(seed, j) d / 2^64),
    j = 0, 1, ... (the complement of the first d - k when k > d/2), sorted, in O(k) (see
    ``compress_select.randk_indices``): ranks that use the same seed keep the same
    subset, so the indices never travel. Payload: the uint64 seed (8 bytes, little
    endian) then the k kept values (dtype): 64 + 32 k bits for float32. The scale d/k is
    applied at decode, so payloads with the same seed are summable: ``values(payload)``
    is the section an Allreduce may sum.

    Range (scaled): the decoded (d/k) x_i must be a finite number of the dtype, so
    |x_i| <= max / (d/k) (float32: 3.4e38 k / d); otherwise E C(x) = x (Beznosikov et al.,
    "On biased compression for distributed learning", U(d/k - 1)) cannot hold. ``encode``
    raises ValueError when a kept finite value is beyond that (a check over the k kept
    values: O(k), as the rest of encode; a kept inf stays inf). Sums of several payloads
    are not checked: their decoded sum may overflow like any sum of floats.
    """

    random = True
    summable = True

    def __init__(self, d, k=None, ratio=None, scaled=True, dtype=np.float32):
        super().__init__(d, dtype)
        self.k = resolve_k(self.d, k, ratio)
        self.scaled = bool(scaled)
        self.unbiased = self.scaled
        self._nbytes = SEED_BYTES + self.k * self.dtype.itemsize  # payload_nbytes()
        # |value| up to which value * d/k cannot overflow (half the limit: no rounding question)
        self._surely_finite = float(np.finfo(self.dtype).max) / (self.d / self.k) / 2
        self._scale = float(self.scale)  # d/k or 1 in the dtype, as the float the kernel takes

    def __repr__(self):
        return f"RandK(d={self.d}, k={self.k}, scaled={self.scaled}, dtype={self.dtype.name})"

    @property
    def omega(self):
        return self.d / self.k - 1.0 if self.scaled else None

    @property
    def delta(self):
        return None if self.scaled else self.d / self.k

    @property
    def scale(self):
        """d/k (scaled) or 1, in the dtype."""
        return self.dtype.type(self.d / self.k if self.scaled else 1.0)

    # support protocol (used by Composition)
    def select(self, x, seed=None):
        return self._kernels(x, "compress_select").randk_indices(self._seed(seed), self.d, self.k)

    def support_bits(self):
        return 8 * SEED_BYTES

    def support_nbytes(self):
        return SEED_BYTES

    def write_support(self, indices, seed, out):
        if type(out) is np.ndarray:
            out.view("<u8")[0] = self._seed(seed)
            return
        out[:] = self._xp(out).asarray(np.array([self._seed(seed)], dtype="<u8").view(np.uint8))

    def read_support(self, buf):
        head = buf[:SEED_BYTES]
        seed = int((head if type(head) is np.ndarray else np.asarray(backend.to_host(head))).view("<u8")[0])
        return self._kernels(buf, "compress_select").randk_indices(seed, self.d, self.k)

    # payload
    def payload_bits(self):
        return self.support_bits() + self.k * self.width

    def payload_nbytes(self):
        return self._nbytes

    def values(self, payload):
        """The summable section (k values of the dtype, a view)."""
        return payload[SEED_BYTES:].view(self.dtype)

    def encode(self, x, seed=None):
        x = self._input(x)
        seed = self._seed(seed)
        if type(x) is np.ndarray:  # host: draw, gather and write in one call, the same bytes
            payload = np.empty(self._nbytes, dtype=np.uint8)
            top, bottom = randk_encode(x, seed, self.k, payload)
            if self.scaled and self.d > self.k and not (-self._surely_finite <= bottom
                                                        and top <= self._surely_finite):
                self.check_range(self.values(payload))  # (NaN fails the test: the exact path)
            return payload
        xp = self._xp(x)
        payload = xp.empty(self._nbytes, dtype=np.uint8)
        self.write_support(None, seed, payload[:SEED_BYTES])
        values = payload[SEED_BYTES:].view(self.dtype)  # values(payload)
        x.take(self.select(x, seed), out=values)  # the method: xp.take adds two Python calls
        if self.scaled and self.d > self.k:
            self.check_range(values)
        return payload

    def check_range(self, values):
        """ValueError when a finite kept value times d/k overflows the dtype (the largest
        magnitude decides: rounding is monotone). Max and min, no temporary. Compressed SGD's
        exchange in C runs the same test and raises this error through it (compressed_steps.pyx)."""
        xp = self._xp(values)
        if xp is np:  # the common case, in Python floats: no errstate, no array scalars
            top, bottom = float(values.max()), float(values.min())
            if -self._surely_finite <= bottom and top <= self._surely_finite:
                return  # (NaN fails both tests and takes the exact path below)
        big = xp.maximum(values.max(), -values.min())  # NaN propagates: then no error
        with np.errstate(over="ignore", invalid="ignore"):
            over = xp.isinf(big * self.scale)
        if not bool(over):  # one host read on a GPU
            return
        if not bool(xp.isfinite(big)):  # a kept inf: look at the finite ones only
            finite = values[xp.isfinite(values)]
            if finite.size == 0:
                return
            big = xp.abs(finite).max()
            with np.errstate(over="ignore"):
                if not bool(xp.isinf(big * self.scale)):
                    return
        raise ValueError(
            f"rand_k ({self.dtype.name}, d/k = {self.d / self.k:g}): a kept |x_i| = {float(big):g} "
            f"times d/k exceeds the largest {self.dtype.name} {float(np.finfo(self.dtype).max):g}; "
            f"scaled Rand-k needs |x_i| <= {float(np.finfo(self.dtype).max) * self.k / self.d:g} "
            "(scale x down by a power of two 2^k and the result back up, or use float64)")

    def decode(self, payload):
        payload = self._payload(payload)
        if type(payload) is np.ndarray:  # host: draw and scatter in one call
            return randk_decode(payload, self.k, self._scale, np.empty(self.d, dtype=self.dtype))
        out = self._xp(payload).zeros(self.d, dtype=self.dtype)
        out[self.read_support(payload[:SEED_BYTES])] = self.values(payload) * self.scale
        return out
