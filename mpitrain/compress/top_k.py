"""Top-k: keep the k entries of largest magnitude (B3(d/k)); docs/papers.md s.2."""
import numpy as np

from mpitrain._native import compress_pack
from mpitrain._native.compress_pack import pack_into, unpack_bits
from mpitrain._native.compress_select import topk_decode, topk_encode, topk_indices
from mpitrain.compress.base import Compressor, index_bits, resolve_k


class TopK(Compressor):
    """Top-k sparsifier, class B3(d / k).

    Selection: exact, O(d) (``compress_select.topk_indices``); among equal magnitudes the
    smaller index wins. Payload: k values (dtype) then the k ascending indices packed at
    ceil(log2 d) bits: k (32 + ceil(log2 d)) bits for float32, as in the paper's table.
    Not summable (supports differ between ranks): payloads travel by Allgather.
    """

    def __init__(self, d, k=None, ratio=None, dtype=np.float32):
        super().__init__(d, dtype)
        self.k = resolve_k(self.d, k, ratio)
        self.index_bits = index_bits(self.d)
        self._cut = self.k * self.dtype.itemsize  # payload bytes of the values section
        self._nbytes = self._cut + self.support_nbytes()  # payload_nbytes()

    def __repr__(self):
        return f"TopK(d={self.d}, k={self.k}, dtype={self.dtype.name})"

    @property
    def delta(self):
        return self.d / self.k

    # support protocol (used by Composition)
    def select(self, x, seed=None):
        """int64[k], ascending: the kept indices of x."""
        if type(x) is np.ndarray:
            return topk_indices(x, self.k)
        return self._kernels(x, "compress_select").topk_indices(x, self.k)

    def support_bits(self):
        return self.k * self.index_bits

    def support_nbytes(self):
        return compress_pack.packed_nbytes(self.k, self.index_bits)

    def write_support(self, indices, seed, out):
        if type(out) is np.ndarray:
            pack_into(indices, self.index_bits, out)
            return
        self._kernels(out, "compress_pack").pack_into(indices, self.index_bits, out)

    def read_support(self, buf):
        if type(buf) is np.ndarray:
            return unpack_bits(buf, self.k, self.index_bits)
        return self._kernels(buf, "compress_pack").unpack_bits(buf, self.k, self.index_bits)

    # payload
    def payload_bits(self):
        return self.k * self.width + self.support_bits()

    def payload_nbytes(self):
        return self._nbytes

    def encode(self, x, seed=None):
        x = self._input(x)
        if type(x) is np.ndarray:  # host: select, gather and pack in one call, the same bytes
            return topk_encode(x, self.k, self.index_bits, np.empty(self._nbytes, dtype=np.uint8))
        cut = self._cut
        payload = self._xp(x).empty(self._nbytes, dtype=np.uint8)
        indices = self.select(x)
        x.take(indices, out=payload[:cut].view(self.dtype))  # the method: np.take adds two Python calls
        self.write_support(indices, None, payload[cut:])
        return payload

    def decode(self, payload):
        payload = self._payload(payload)
        if type(payload) is np.ndarray:  # host: unpack and scatter in one call
            return topk_decode(payload, self.k, self.index_bits, np.empty(self.d, dtype=self.dtype))
        cut = self._cut
        out = self._xp(payload).zeros(self.d, dtype=self.dtype)
        out[self.read_support(payload[cut:])] = payload[:cut].view(self.dtype)
        return out
