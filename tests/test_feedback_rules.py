"""The feedback rules' two ways to move the model (mpitrain.algorithms.feedback): ``descend``
(x <- x - direction in one pass, what compressed SGD takes every step) gives the bits of
``x -= direction(mean, lr)`` and leaves the rule's memory as ``direction`` does."""
import numpy as np
import pytest

from mpitrain.algorithms.feedback import FEEDBACKS
from mpitrain.compress import make_compressor


@pytest.mark.parametrize("feedback", sorted(FEEDBACKS))
@pytest.mark.parametrize("model_dtype", [np.float32, np.float64])
def test_descend_is_x_minus_the_direction_bit_for_bit(feedback, model_dtype):
    rng = np.random.default_rng(3)
    compressor = make_compressor("top_k", 64, k=5)
    moved, stepped = FEEDBACKS[feedback](compressor, model_dtype), FEEDBACKS[feedback](compressor, model_dtype)
    x = rng.standard_normal(64).astype(model_dtype)
    x_moved, x_stepped = x.copy(), x.copy()
    for lr in (0.3, 1 / 3, 2.0):
        mean = (rng.standard_normal(64) * 10.0 ** rng.integers(-8, 8, 64)).astype(model_dtype)
        mean[:3] = [-0.0, 0.0, 1e-30]
        x_moved -= moved.direction(mean, lr)
        stepped.descend(x_stepped, mean, lr)
        assert x_moved.tobytes() == x_stepped.tobytes(), lr
        assert repr(moved.state_dict()) == repr(stepped.state_dict())


@pytest.mark.parametrize("gradient", [
    (np.arange(40, dtype=np.float64) / 7)[::2],  # strided
    np.arange(20, dtype=np.int64),  # integers
    np.arange(20, dtype=np.float32) / 3,  # already the wire dtype
])
def test_error_feedback_compensates_any_gradient_numpy_takes(gradient):
    """The one-pass compensation (a kernel) and NumPy's multiply-then-add give the same bits,
    and a gradient the kernel does not take (strided, integer) still works."""
    from mpitrain.compress import ErrorFeedback

    memory = ErrorFeedback(make_compressor("top_k", 20, k=3))
    memory.error[...] = np.linspace(-1, 1, 20, dtype=np.float32)
    out = np.empty(20, np.float32)
    expected = np.multiply(gradient, np.float32(0.3), dtype=np.float32) + memory.error
    assert memory.compensate(gradient, 0.3, out=out).tobytes() == expected.tobytes()
