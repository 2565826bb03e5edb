"""The problem ``bench bridge`` times, shared by its command (mpitrain.bench.bridge, which starts
``mpiexec`` and never starts MPI itself) and its ranks (mpitrain.bench.bridge_worker)."""

N_ROWS = 4096  # rows of the synthetic data set (all ranks together)
N_FEATURES = 128  # d: dense float32 rows, standard normal
N_CLASSES = 10  # C: labels uniform over the classes
BATCH = 32  # b, rows per step per rank
STEP_SIZE = 0.05  # constant eta; no weight decay, objective.l2 = 0
PERIOD = 8  # Local SGD's H; blocks are a multiple of it
N_BATCHES = 64  # batches drawn per rank before timing, used in turn by plain and DDP
INIT_SEED = 0  # torch seed of the initial weights (every copy the same)
DATA_SEED = 0
TOLERANCE = 1e-4  # relative, float32: of the agreement check's loss and gradient
STEPS = 1_000_000_000  # train.steps: never reached
