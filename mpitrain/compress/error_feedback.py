"""Error feedback (EF) for compressed SGD: Beznosikov et al. 2020, docs/papers.md s.2.

Worker k keeps e_k (starts at 0):  v_k = C(e_k + gamma g_k);  e_k <- e_k + gamma g_k - v_k.
"""
import numpy as np

from mpitrain import backend
from mpitrain._native.vector import add_weighted, cast_copy


class ErrorFeedback:
    """The error memory e of one worker for one compressor.

    ``step(gradient, lr, seed)`` does compensate -> encode -> update and returns
    (payload, decoded): payload travels, decoded = v is this worker's contribution.
    Invariant: lr * g + e_old == decoded + e_new up to float rounding. In the dtype,
    e_new = p - decoded exactly as computed, p = e_old + lr g; the rounding of lr g, of
    p and of the subtraction gives, elementwise (eps = the dtype's machine epsilon),
    |lr g + e_old - decoded - e_new| <= 4 eps (|lr g| + |e_old| + |decoded|)
    (tested). ``state_dict`` / ``load_state_dict`` expose e for checkpoints.
    """

    def __init__(self, compressor):
        self.compressor = compressor
        self.dtype = compressor.dtype  # e's dtype, the compressor's
        self.error = np.zeros(compressor.d, dtype=compressor.dtype)  # e, shape (d,)

    def compensate(self, gradient, lr, out=None):
        """p = e + lr * g (dtype, shape (d,)): what gets compressed. g is cast to the dtype
        first; ``out``: a (d,) array of the dtype to write p into (a new array when None)."""
        dtype = self.dtype
        if type(gradient) is np.ndarray and type(self.error) is np.ndarray:
            xp = np  # host: no backend look-ups (this runs every step)
        else:
            xp = backend.array_module(gradient)  # the memory follows the gradient to a GPU
            if backend.array_module(self.error) is not xp:
                self.error = xp.asarray(self.error)
        if out is None:
            return self.error + dtype.type(lr) * xp.asarray(gradient, dtype=dtype)
        if xp is np:  # e + (g in the dtype) * lr, rounded as below, in one pass (a call every step)
            cast_copy(out, self.error)  # out[...] = self.error, without NumPy's dispatch
            try:
                add_weighted(out, gradient, lr)
                return out
            except (TypeError, ValueError):  # a strided, integer or mis-sized g: NumPy's way below
                pass
        xp.multiply(gradient, dtype.type(lr), out=out, dtype=dtype)
        out += self.error
        return out

    def update(self, compensated, decoded):
        """e <- compensated - decoded."""
        xp = np if type(self.error) is np.ndarray else backend.array_module(self.error)
        xp.subtract(compensated, decoded, out=self.error)

    def step(self, gradient, lr, seed=None):
        """(payload, decoded v) for this step; updates e."""
        p = self.compensate(gradient, lr)
        payload = self.compressor.encode(p, seed)
        decoded = self.compressor.decode(payload)
        self.update(p, decoded)
        return payload, decoded

    def state_dict(self):
        return {"error": backend.to_host(self.error).copy()}

    def load_state_dict(self, state):
        error = np.asarray(state["error"], dtype=self.compressor.dtype)
        if error.shape != (self.compressor.d,):
            raise ValueError(f"error must have shape ({self.compressor.d},), got {error.shape}")
        self.error = error.copy()
