"""Natural compression C_nat (Horvath et al. 2019), U(1/8); docs/papers.md s.2."""
import math

import numpy as np

from mpitrain._native import compress_pack
from mpitrain.compress.base import Compressor


class NaturalCompression(Compressor):
    """Round |x_i| in [2^a, 2^(a+1)] to 2^a with probability (2^(a+1) - |x_i|) / 2^a,
    else to 2^(a+1); keep the sign. Unbiased, omega = 1/8.

    Payload: one code of 1 + E bits per entry (sign and the E-bit IEEE exponent of the
    rounded power of two: E = 8 for float32, so 9 d bits as in the paper; E = 11 for
    float64), packed LSB first. Subnormals round between 0 and the smallest normal;
    inf stays inf, NaN gives inf.

    Input range. The code holds the normal powers of two only, and C_nat is in U(1/8)
    (Beznosikov et al., "On biased compression for distributed learning") only
    where both neighbours 2^a, 2^(a+1) of |x_i| are codes. ``encode`` therefore raises
    ValueError (after encoding, from the largest finite |x_i| and a subnormal flag that the
    kernel gathers in the same pass) for finite inputs outside that range:

    - ``top``: a finite |x_i| that could round up past the largest finite power
      2^(emax) (2^127 for float32, 2^1023 for float64) to inf: |x_i| > 2^emax here,
      |x_i| >= 1.5 2^emax for biased rounding (the only ones it rounds up).
    - ``tiny``: a nonzero subnormal x_i rounds between 0 and the smallest normal N with
      variance |x_i| (N - |x_i|), not <= |x_i|^2 / 8, so E||C(x) - x||^2 may exceed
      (1/8) ||x||^2 by up to sum over subnormals of |x_i| N < d N^2. That excess is below
      eps ||x||^2 (eps: the dtype's machine epsilon, a rounding's worth) whenever
      max|x_i| >= N sqrt(d / eps); vectors holding a subnormal and with a smaller maximum
      are refused. (The same bound covers biased rounding's B3(9/8).)

    C_nat commutes with scaling by a power of two inside the range, C(2^k x) = 2^k C(x),
    so the way out of either error is to scale x by 2^k and the result back.
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

    def input_range(self):
        """(top, tiny) of the class docstring for this d and dtype: finite |x_i| above
        ``top`` (or at it, for biased rounding) are refused, and so are vectors with a
        nonzero subnormal entry whose largest |x_i| is below ``tiny``."""
        info = np.finfo(self.dtype)
        top = math.ldexp(1.0, int(info.maxexp) - 1)  # 2^emax
        if self.deterministic:
            top *= 1.5
        return top, float(info.smallest_normal) * math.sqrt(self.d / float(info.eps))

    def check_range(self, largest, subnormal):
        """ValueError when the largest finite |x_i| and the subnormal flag (as returned by
        the kernel) put x outside the input range of the class docstring."""
        top, tiny = self.input_range()
        name = type(self).__name__
        over = largest >= top if self.deterministic else largest > top
        if over:
            raise ValueError(
                f"{name} ({self.dtype.name}): max|x_i| = {largest:g} would round up past "
                f"the largest finite power of two {math.ldexp(1.0, np.finfo(self.dtype).maxexp - 1):g} "
                f"to inf (finite |x_i| must be {'<' if self.deterministic else '<='} {top:g}); "
                "scale x down by a power of two 2^k and the result back up")
        if subnormal and largest < tiny:
            raise ValueError(
                f"{name} ({self.dtype.name}): x has subnormal entries and max|x_i| = "
                f"{largest:g} < {tiny:g} = N sqrt(d / eps) (N the smallest normal): the code "
                "has no subnormal powers of two, so the variance bound would not hold; "
                "scale x up by a power of two 2^k and the result back down")

    def encode(self, x, seed=None):
        x = self._input(x)
        seed = self._seed(seed)
        payload = self._xp(x).empty(self.payload_nbytes(), dtype=np.uint8)
        largest, subnormal = self._kernels(x, "compress_round").natural_encode(
            x, seed, self.deterministic, payload)
        self.check_range(float(largest), bool(subnormal))  # one host read on a GPU
        return payload

    def decode(self, payload):
        payload = self._payload(payload)
        out = self._xp(payload).empty(self.d, dtype=self.dtype)
        self._kernels(payload, "compress_round").natural_decode(payload, out)
        return out
