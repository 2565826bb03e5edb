"""Identity: the uncompressed baseline (U(0)); the payload is the raw values."""
import numpy as np

from mpitrain.compress.base import Compressor


class Identity(Compressor):
    """C(x) = x. Payload: d values of the dtype (32 d bits for float32). Summable."""

    unbiased = True
    summable = True

    @property
    def omega(self):
        return 0.0

    def payload_bits(self):
        return self.d * self.width

    def payload_nbytes(self):
        return self.d * self.dtype.itemsize

    def encode(self, x, seed=None):
        return self._input(x).copy().view(np.uint8)

    def values(self, payload):
        """The summable section of a payload (a view of the dtype)."""
        return payload.view(self.dtype)

    def decode(self, payload):
        return self._payload(payload).view(self.dtype).copy()
