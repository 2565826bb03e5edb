"""Steady memory of compressed Local SGD (mpitrain.algorithms.compressed_local_sgd): a step,
averaging round included, makes no parameter-sized temporary but the float32 vector the
compressor's decode returns. Fresh (d,) temporaries every round grow a rank's resident
memory under MPICH's ch4:ucx (see CompressedAverager and ``bench scale steady``)."""
import pytest

from step_memory import worst_step_peak


@pytest.mark.parametrize("feedback", ["ef", "none"])
def test_compressed_local_step_allocates_only_the_decoded_vector(tmp_path, feedback):
    """2 ranks, Top-k + natural dithering, H = 2, so every other step is an averaging round.
    The old round made the model change x - x_a (8d bytes) and held it while decoding: 1.5 x 8d."""
    worst = worst_step_peak(
        tmp_path, "compressed_local_sgd.toml",
        ["step_size.value=0.5", "train.steps=1000", "compressed_local_sgd.period=2",
         f"compressed_local_sgd.error_feedback={feedback}"],
        warm_steps=10, measured_steps=20,
        check="assert trainer.algorithm.syncs == 15, trainer.algorithm.syncs\n")
    assert worst < 0.6, worst  # one float32 decode is 0.5 x 8d; Top-k selects in O(k + 4096)
