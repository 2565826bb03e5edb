"""The worst tracemalloc peak of one training step, in units of the parameter vector (8d bytes),
measured in a 2-rank mpiexec run: used by the steady-memory tests of the algorithms."""
import textwrap

from mpi_run import ROOT, run_mpi_script

D = 400_000  # features; the data is tiny so parameter-sized vectors dominate


def worst_step_peak(tmp_path, config_name, overrides, warm_steps, measured_steps, check=""):
    """Max over ranks and over ``measured_steps`` steps (after ``warm_steps``) of the bytes a
    step allocates at its peak, divided by 8d. ``check`` is code run after the steps (it may
    assert on ``trainer``)."""
    overrides = ["data.dataset=synthetic-classification", f"data.n_features={D}", "data.n_samples=200",
                 "data.density=2.5e-5", "run.reference=false", "run.progress=false",
                 "run.save_parameters=false", f"run.output_dir={tmp_path}/run", *overrides]
    script = textwrap.dedent(f"""
        import tracemalloc
        from mpi4py import MPI
        from mpitrain.config import load_config
        from mpitrain.train import Trainer

        config = load_config("{ROOT}/jobs/configs/{config_name}", {overrides!r})
        trainer = Trainer(config, MPI.COMM_WORLD)
        step = trainer.algorithm.step
        for t in range({warm_steps}):
            step(t)
        worst = 0
        tracemalloc.start()
        for t in range({warm_steps}, {warm_steps + measured_steps}):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            step(t)
            worst = max(worst, tracemalloc.get_traced_memory()[1] - before)
        tracemalloc.stop()
    """) + textwrap.dedent(check) + textwrap.dedent(f"""
        worst = MPI.COMM_WORLD.allreduce(worst, op=MPI.MAX)
        if MPI.COMM_WORLD.Get_rank() == 0:
            print("WORST", worst / (8 * {D}))
    """)
    result = run_mpi_script(2, script, tmp_path, timeout=60)
    assert result.returncode == 0, result.output
    return float(result.stdout.split("WORST")[1])
