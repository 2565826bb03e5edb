"""What a worker compresses and how the decoded average becomes a step: no feedback, EF, EF21.

Each rule is one worker's memory with three verbs, run around one compressed exchange:

    p = rule.compensate(v, lr)        # the vector that gets compressed (wire dtype, shape (d,))
    rule.update(p, decoded)           # after encoding: decoded = C(p), this worker's own part
    s = rule.direction(mean, lr)      # mean = sum_k w_k C(p_k) (model dtype); x <- x - s
    rule.descend(x, mean, lr)         # or that step taken at once: x <- x - direction(mean, lr)

- ``none``:  x <- x - lr sum_k w_k C(v_k)                                   (docs/papers.md s.2)
- ``ef``:    v_k = C(e_k + lr g_k); e_k <- e_k + lr g_k - v_k; x <- x - sum_k w_k v_k
             (Beznosikov et al. 2020, docs/papers.md s.2; mpitrain.compress.ErrorFeedback)
- ``ef21``:  Richtarik, Sokolov, Fatkhullin 2021 (arXiv 2106.05203), Algorithm 1:
             c_k = C(g_k(x^t) - h_k); h_k <- h_k + c_k; h <- h + sum_k w_k c_k; x <- x - lr h.
             With h_k = h = 0 at the start, step 0 sets h_k^0 = C(g_k(x^0)) (the paper's
             initialisation, sent as a normal round) before the first move.

For the model change of compressed Local SGD the same rules run with v = x_k - x_anchor and
lr = 1 (``ef`` and ``none`` only; see compressed_local_sgd).

Steady memory: ``compensate`` and ``direction`` write into (d,) buffers each rule allocates
once (the vector to compress, in the wire dtype, and the step, in the model dtype; EF and EF21
allocate the first at construction, the rest on first use), so a step allocates no
parameter-sized temporary here; each returned array is overwritten by the next call of the
same method. ``compensate`` returns v itself when v already has the wire dtype and there is
nothing to add (``none``).
"""
from __future__ import annotations

import numpy as np

from .._native.vector import cast_copy
from ..compress import ErrorFeedback
from .base import update


class NoFeedback:
    """C(v) alone: no memory."""

    needs_decoded = False

    def __init__(self, compressor, model_dtype):
        self.wire = compressor.dtype
        self.model = np.dtype(model_dtype)
        self.d = compressor.d
        self._compensated = None  # (d,) wire dtype, allocated on first use
        self._direction = None  # (d,) model dtype, allocated on first use
        self._cast_from = None  # the dtype compensate cast from last

    def _wire_buffer(self):
        """This rule's compensation buffer ((d,), wire dtype)."""
        if self._compensated is None:
            self._compensated = np.empty(self.d, dtype=self.wire)
        return self._compensated

    def _wire_copy(self, v):
        """v cast to the wire dtype, in this rule's compensation buffer (the bits of
        ``buffer[...] = v``; a kernel for host vectors: NumPy's cast costs several times more
        at small d)."""
        buffer = self._wire_buffer()
        cast_copy(buffer, v)  # (anything but two host vectors: NumPy's assignment)
        return buffer

    def _scaled(self, v, lr):
        """lr * v (model dtype), in this rule's direction buffer."""
        if self._direction is None:
            self._direction = np.empty(self.d, dtype=self.model)
        return np.multiply(v, self.model.type(lr), out=self._direction)

    def compensate(self, v, lr):
        if type(v) is not np.ndarray:
            v = np.asarray(v)
        dtype = v.dtype
        if dtype is self._cast_from:  # what the last call cast (a gradient of the model's dtype)
            cast_copy(self._compensated, v)
            return self._compensated
        if dtype == self.wire:
            return v
        self._cast_from = dtype  # (dtype objects compared by identity above: no compare every step)
        return self._wire_copy(v)

    def update(self, compensated, decoded):
        pass

    def direction(self, mean, lr):
        return self._scaled(mean, lr)

    def descend(self, x, mean, lr):
        """x <- x - direction(mean, lr), the same bits in one pass (no direction vector)."""
        update(x, mean, -lr)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ErrorFeedbackRule(NoFeedback):
    """EF: the error memory e_k (mpitrain.compress.ErrorFeedback) absorbs what C dropped."""

    needs_decoded = True

    def __init__(self, compressor, model_dtype):
        super().__init__(compressor, model_dtype)
        self.memory = ErrorFeedback(compressor)
        self._compensated = np.empty(self.d, dtype=self.wire)  # used every step: allocated now

    @property
    def error(self) -> np.ndarray:
        """e_k (wire dtype, shape (d,))."""
        return self.memory.error

    def compensate(self, v, lr):
        return self.memory.compensate(v, lr, out=self._compensated)

    def update(self, compensated, decoded):
        self.memory.update(compensated, decoded)

    def direction(self, mean, lr):
        return mean

    def descend(self, x, mean, lr):
        update(x, mean, -1.0)  # x - 1.0 * mean: x - mean, bit for bit

    def state_dict(self) -> dict:
        return self.memory.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.memory.load_state_dict(state)


class EF21(NoFeedback):
    """EF21: h_k (wire dtype) tracks this worker's gradient, h (model dtype) their average."""

    needs_decoded = True

    def __init__(self, compressor, model_dtype):
        super().__init__(compressor, model_dtype)
        self.local = np.zeros(compressor.d, dtype=self.wire)  # h_k
        self.average = np.zeros(compressor.d, dtype=self.model)  # h = sum_k w_k h_k
        self._compensated = np.empty(self.d, dtype=self.wire)  # used every step: allocated now

    def compensate(self, v, lr):
        p = self._wire_copy(v)
        p -= self.local
        return p

    def update(self, compensated, decoded):
        self.local += decoded

    def direction(self, mean, lr):
        self.average += mean
        return self._scaled(self.average, lr)

    def descend(self, x, mean, lr):
        self.average += mean
        update(x, self.average, -lr)

    def state_dict(self) -> dict:
        return {"local": self.local.copy(), "average": self.average.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.local[...] = state["local"]
        self.average[...] = state["average"]


FEEDBACKS = {"none": NoFeedback, "ef": ErrorFeedbackRule, "ef21": EF21}
