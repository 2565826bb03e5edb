"""Stopping a run whose iterates turned NaN or Inf, without losing the last good checkpoint.

A diverged run (a step size too large, a NaN gradient) must stop, say at which step it was
seen, and never overwrite a good checkpoint with NaN. :class:`DivergenceGuard` is checked

- at every evaluation (the loss and ||grad F|| over all ranks must be finite), and
- before every checkpoint write: each rank checks every floating array of its algorithm's
  state (parameters, local models, error-feedback residuals, iterate averages), and the ranks
  agree (one ``allgather`` of a short list per rank). A checkpoint is written only when every
  rank's state is finite.

It remembers the last step at which a check passed and the last checkpoint written (or
resumed from), so the error (exit code :data:`EXIT_DIVERGED`) names both, e.g.::

    training diverged: the algorithm state is not finite at step 30 (rank 1: algorithm/x);
    it was finite at step 20; no checkpoint was written from it; the last good checkpoint
    is runs/x/checkpoints/step-00000020 (step 20); --resume runs/x/checkpoints continues from it;
    lower the step size if it is too large

(on one line). A resumed run must have the checkpoint's configuration, step size included.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .runtime import JobError

#: exit code of a run stopped because its iterates are not finite
EXIT_DIVERGED = 3


def nonfinite_arrays(tree: dict, prefix: str = "algorithm") -> list:
    """Names (``prefix/key/...``) of the floating arrays in a nested state dict holding NaN or Inf."""
    found = []
    for key, value in tree.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            found += nonfinite_arrays(value, name)
        elif isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.inexact):
            if not np.isfinite(value).all():
                found.append(name)
        elif isinstance(value, (float, np.floating)) and not np.isfinite(value):
            found.append(name)
    return found


class DivergenceGuard:
    """What the loop knows about the last finite state and the last good checkpoint."""

    def __init__(self, comm, checkpoints_root):
        self.comm = comm
        self.root = Path(checkpoints_root)
        self.last_finite_step = None  # the last step a check found finite
        self.checkpoint = None  # (step, folder) of the last checkpoint written or resumed from

    def passed(self, step: int) -> None:
        self.last_finite_step = step

    def kept(self, step: int, folder) -> None:
        self.checkpoint = (int(step), Path(folder))

    def check_state(self, state: dict, step: int) -> None:
        """Collective: raise the divergence error on every rank if any rank's state is not finite."""
        mine = nonfinite_arrays(state)
        everyone = self.comm.allgather(mine)
        bad = {rank: names for rank, names in enumerate(everyone) if names}
        if not bad:
            self.passed(step)
            return
        where = "; ".join(f"rank {rank}: {', '.join(names)}" for rank, names in bad.items())
        raise self.error(f"the algorithm state is not finite at step {step} ({where})", writing=True)

    def error(self, what: str, writing: bool = False) -> JobError:
        parts = [f"training diverged: {what}"]
        if self.last_finite_step is not None:
            parts.append(f"it was finite at step {self.last_finite_step}")
        if writing:
            parts.append("no checkpoint was written from it")
        if self.checkpoint is None:
            parts.append("no checkpoint was kept (run.checkpoint_every = 0)")
        else:
            step, folder = self.checkpoint
            parts.append(f"the last good checkpoint is {folder} (step {step}); --resume {self.root} continues from it")
        parts.append("lower the step size if it is too large")
        return JobError("; ".join(parts), code=EXIT_DIVERGED)
