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


@pytest.mark.parametrize("feedback", sorted(FEEDBACKS))
def test_compensate_casts_each_gradient_as_numpy_does_whatever_came_before(feedback):
    """The rules cast a gradient into the wire dtype with a kernel, remembering the dtype they
    cast from; a gradient of another dtype, shape or layout afterwards is still cast (or, for
    ``none``, passed through) exactly as ``buffer[...] = v`` / ``v`` itself."""
    rng = np.random.default_rng(5)
    compressor = make_compressor("top_k", 30, k=3)  # float32 on the wire
    rule, reference = FEEDBACKS[feedback](compressor, np.float64), FEEDBACKS[feedback](compressor, np.float64)
    gradients = [rng.standard_normal(30), rng.standard_normal(30), rng.standard_normal(30).astype(np.float32),
                 rng.standard_normal(60)[::2], rng.standard_normal(30) * 1e300, rng.standard_normal(30)]
    for v in gradients:
        with np.errstate(over="ignore"):
            got = rule.compensate(v, 0.5).copy()
            if feedback == "none":
                expected = v if v.dtype == np.float32 else v.astype(np.float32)
            else:
                expected = reference.compensate(np.array(v, dtype=np.float32), 0.5).copy()
        assert got.dtype == np.float32 and got.tobytes() == np.asarray(expected).tobytes()
        if feedback == "none" and v.dtype == np.float32:
            assert rule.compensate(v, 0.5) is v
    with pytest.raises(ValueError):
        rule.compensate(np.ones(31), 0.5)
