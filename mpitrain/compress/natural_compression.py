"""Natural compression C_nat (Horvath et al. 2019), U(1/8); PAPERS.md s.2."""
import numpy as np

from mpitrain._native import compress_pack
from mpitrain.compress.base import Compressor


class NaturalCompression(Compressor):
    """Round |x_i| in [2^a, 2^(a+1)] to 2^a with probability (2^(a+1) - |x_i|) / 2^a,
    else to 2^(a+1); keep the sign. Unbiased, omega = 1/8.

    Payload: one code of 1 + E bits per entry (sign and the E-bit IEEE exponent of the
    rounded power of two: E = 8 for float32, so 9 d bits as in the paper; E = 11 for
    float64), packed LSB first. Subnormals round between 0 and the smallest normal;
    overflow past the largest finite power gives inf, NaN gives inf.
    """

    unbiased = True
    random = True
    deterministic = False

    def __init__(self, d, dtype=np.float32):
        super().__init__(d, dtype)
        self.code_bits = 1 + (8 if self.dtype == np.float32 else 11)

    @property
    def omega(self):
        return 1.0 / 8.0

    def payload_bits(self):
        return self.d * self.code_bits

    def payload_nbytes(self):
        return compress_pack.packed_nbytes(self.d, self.code_bits)

    def encode(self, x, seed=None):
        x = self._input(x)
        seed = self._seed(seed)
        payload = self._xp(x).empty(self.payload_nbytes(), dtype=np.uint8)
        self._kernels(x, "compress_round").natural_encode(x, seed, self.deterministic, payload)
        return payload

    def decode(self, payload):
        payload = self._payload(payload)
        out = self._xp(payload).empty(self.d, dtype=self.dtype)
        self._kernels(payload, "compress_round").natural_decode(payload, out)
        return out
