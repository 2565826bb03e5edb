"""Memory a run will need, checked before it is allocated.

A size the machine cannot hold (``data.n_samples = 1e10``, ``train.batch_size = 1e30``)
would otherwise end in a MemoryError or a NumPy "maximum dimension" traceback on every
rank, after minutes of work. The estimates here are measured peaks of the code that
allocates (rounded up), compared with the machine's physical memory: a generous bound,
so that a refused size is one that surely cannot run, not one that merely might be slow.
"""
import os

from .synthetic import BLOCK_ROWS, TEACHER_HIDDEN

# Peak bytes of the generators (mpitrain.data.synthetic), measured with ru_maxrss:
# classification about 45 per stored entry (row, column, value, CSR and COO copies) plus
# a few float64 vectors of n_samples; least squares about 40 per cell of the n x d design
# (the Gaussian draw, its QR factor, the scaled product, the lstsq copy).
CLASSIFICATION_BYTES_PER_ENTRY = 48
CLASSIFICATION_BYTES_PER_SAMPLE = 40
LEAST_SQUARES_BYTES_PER_CELL = 40
# multiclass: the n x d features (8 per cell in float64) and the float64 n x C logits with one
# temporary of their size (16 per sample and class), argmax and labels (16 per sample), and
# a float64 block of BLOCK_ROWS rows with its hidden layer and logits (twice); rounded up to
# 10, 20, 24 and 16 (measured 0.8x of this estimate at 200000 x 300, C = 10).
MULTICLASS_BYTES_PER_CELL = 10
MULTICLASS_BYTES_PER_SAMPLE_CLASS = 20
MULTICLASS_BYTES_PER_SAMPLE = 24
MULTICLASS_BYTES_PER_BLOCK_CELL = 16

# The sampler (mpitrain.sampling.BatchSampler) keeps an int64 index buffer of batch_size
# entries, and each draw makes another one before copying it in.
SAMPLER_BYTES_PER_ROW = 16


def machine_memory():
    """Physical memory of this machine in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(count):
    """'512 MB', '23.4 GB', '1.6e+13 TB' (units of 10^3, three significant digits)."""
    for unit, scale in (("B", 1), ("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if count < 1000 * scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count / 1e12:.3g} TB"


def synthetic_bytes(name, options):
    """Peak bytes one rank needs to generate the synthetic set ``name`` with ``options``
    (every rank generates the whole set, also for a partitioned read). A name no generator
    has is estimated as classification, as it always was (opening it refuses the name)."""
    estimate = GENERATOR_BYTES.get(name, classification_bytes)
    return int(estimate(int(options["n_samples"]), int(options["n_features"]), options))


def classification_bytes(n, d, options):
    entries = n * d * float(options.get("density", 1.0))
    return CLASSIFICATION_BYTES_PER_ENTRY * entries + CLASSIFICATION_BYTES_PER_SAMPLE * n


def least_squares_bytes(n, d, options):
    return LEAST_SQUARES_BYTES_PER_CELL * n * d


def multiclass_bytes(n, d, options):
    classes, hidden = int(options.get("n_classes", 10)), int(options.get("hidden", TEACHER_HIDDEN))
    block = MULTICLASS_BYTES_PER_BLOCK_CELL * min(n, BLOCK_ROWS) * (d + 2 * hidden + classes)
    return (MULTICLASS_BYTES_PER_CELL * n * d + MULTICLASS_BYTES_PER_SAMPLE_CLASS * n * classes
            + MULTICLASS_BYTES_PER_SAMPLE * n + block)


GENERATOR_BYTES = {  # generator name -> peak bytes(n_samples, n_features, options)
    "synthetic-classification": classification_bytes,
    "synthetic-least-squares": least_squares_bytes,
    "synthetic-multiclass": multiclass_bytes,
}


def sampler_bytes(batch_size):
    """Bytes one rank's mini-batch sampler holds for ``batch_size`` rows."""
    return SAMPLER_BYTES_PER_ROW * int(batch_size)


def beyond_memory(per_rank, ranks_on_node, available=None):
    """Why ``per_rank`` bytes on each of ``ranks_on_node`` ranks cannot fit this machine
    (the end of a one-line message), or None when they fit or the memory is unknown."""
    available = machine_memory() if available is None else available
    need = per_rank * ranks_on_node
    if available is None or need <= available:
        return None
    node = f", {format_bytes(need)} for the {ranks_on_node} ranks on this machine" if ranks_on_node > 1 else ""
    return f"needs about {format_bytes(per_rank)} per rank{node}; this machine has {format_bytes(available)}"
