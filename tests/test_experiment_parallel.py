"""An experiment's runs on several processes (mpitrain.experiments.parallel), and the runs the
compression experiment cuts short (compression_bits.GammaSearch): the tables must not change."""
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mpitrain.experiments.parallel import RunPool

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def square(x):
    return x * x


def mpi_state(_):
    from mpi4py import MPI

    return MPI.Is_initialized(), os.getpid()


def fail(x):
    raise ValueError(f"bad input {x}")


@pytest.mark.parametrize("jobs", [1, 2])
def test_every_call_comes_back_once_with_its_key_including_calls_queued_meanwhile(jobs):
    seen = {}
    with RunPool(jobs) as pool:
        for x in range(6):
            pool.submit(("first", x), square, x)
        for key, value in pool.results():
            seen[key] = value
            if key[0] == "first" and key[1] % 2 == 0:
                pool.submit(("then", key[1]), square, value)
    assert seen == {**{("first", x): x * x for x in range(6)}, **{("then", x): x ** 4 for x in (0, 2, 4)}}


def test_children_do_not_start_mpi():
    with RunPool(2) as pool:
        for x in range(4):
            pool.submit(x, mpi_state, x)
        states = [value for _, value in pool.results()]
    children = [state for state in states if state[1] != os.getpid()]
    assert children, "no call ran in a child"
    assert all(state[0] is False for state in children), children


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_error_in_a_call_is_raised_by_results(jobs):
    with RunPool(jobs) as pool:
        for x in range(4):
            pool.submit(x, fail if x == 2 else square, x)
        with pytest.raises(ValueError, match="bad input 2"):
            for _ in pool.results():
                pass


def die_in_a_child(parent):
    if os.getpid() != parent:
        os._exit(3)  # a child killed outright (the OOM killer, a segfault): no exception to send back
    return "ran here"


def test_a_child_that_dies_ends_the_results_with_an_error_not_a_hang():
    from concurrent.futures.process import BrokenProcessPool

    with RunPool(2) as pool:
        pool.submit("dies", die_in_a_child, os.getpid())  # the first call goes to the idle child
        with pytest.raises(BrokenProcessPool):
            for _ in pool.results():
                pass


def module_state(name):
    import sys

    return name in sys.modules, os.getpid()


def module_state_after(seconds, name):
    time.sleep(seconds)
    return module_state(name)


def test_started_children_take_calls_only_once_set_up_with_the_modules_imported():
    with RunPool(2) as pool:
        pool.start("colorsys")  # a module nothing here imports
        for i in range(40):
            pool.submit(i, module_state_after, 0.05, "colorsys")
        states = [state for _, state in pool.results()]
    children = [imported for imported, pid in states if pid != os.getpid()]
    here = len(states) - len(children)
    assert children and all(children)  # every call a child ran found the module imported
    assert here >= 1  # this process ran calls while the child was setting up: the first at least


def test_a_child_started_ahead_is_taken_over_by_the_next_pool(monkeypatch):
    """The command line spawns the first child before it imports the experiment (start_ahead);
    the experiment's pool takes that child, set up with the same modules, instead of a new one."""
    from mpitrain.experiments import parallel

    monkeypatch.setattr(parallel, "default_jobs", lambda: 2)  # (the pool's jobs on any machine)
    parallel.start_ahead("colorsys")
    try:
        executor = parallel._ahead[1]
        with RunPool(2) as pool:
            pool.start("colorsys")
            assert pool._executor is executor and parallel._ahead is None
            for i in range(20):
                pool.submit(i, module_state_after, 0.05, "colorsys")
            states = [state for _, state in pool.results()]
            children = {pid for _, pid in states if pid != os.getpid()}
            assert children and all(imported for imported, pid in states if pid != os.getpid())
            assert len(children) == 1 and children <= {p.pid for p in executor._processes.values()}
            assert len(executor._processes) == 1  # no second child spawned for the same one job
    finally:
        parallel.discard_ahead()


@pytest.mark.parametrize("extra_jobs, modules", [(-1, ("colorsys",)), (0, ("json",)), (1, ("colorsys",))])
def test_a_child_started_ahead_that_no_pool_can_use_is_ended(monkeypatch, extra_jobs, modules):
    """One job (no children), a pool for other modules, or for more children than the default
    (``--jobs``): the child spawned ahead is ended at once, not left to run (or hold the exit)
    until the pool shuts down, and the pool makes its own."""
    from mpitrain.experiments import parallel

    monkeypatch.setattr(parallel, "default_jobs", lambda: 2)
    jobs = 2 + extra_jobs
    parallel.start_ahead("colorsys")
    processes = list(parallel._ahead[1]._processes.values())
    assert processes
    with RunPool(jobs) as pool:
        pool.start(*modules)
        assert parallel._ahead is None
        for process in processes:
            process.join(timeout=30)
            assert not process.is_alive()
        pool.submit("x", square, 3)
        assert dict(pool.results()) == {"x": 9}


def test_a_child_started_ahead_and_not_taken_is_ended_by_discard(monkeypatch):
    from mpitrain.experiments import parallel

    monkeypatch.setattr(parallel, "default_jobs", lambda: 2)
    parallel.start_ahead("colorsys")
    processes = list(parallel._ahead[1]._processes.values())
    parallel.discard_ahead()
    assert parallel._ahead is None
    for process in processes:
        process.join(timeout=30)
        assert not process.is_alive()
    parallel.discard_ahead()  # nothing left: a no-op


@pytest.mark.parametrize("fails", ["executor", "spawn"])
def test_a_child_that_cannot_be_started_ahead_is_left_to_the_pool(monkeypatch, fails):
    """Starting a child ahead is only a head start: if its executor cannot be made (no POSIX
    semaphores, say) or the spawn fails (no processes left), nothing is raised and the pool
    later spawns, or reports the failure, as without it."""
    from mpitrain.experiments import parallel

    def fail(*args):
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(parallel, "default_jobs", lambda: 2)
    monkeypatch.setattr(parallel, "_executor" if fails == "executor" else "_submit_quietly", fail)
    parallel.start_ahead("colorsys")
    assert parallel._ahead is None


@pytest.mark.parametrize("outcome", ["returns", "raises"])
def test_the_command_line_starts_a_pool_experiments_first_child_ahead_and_ends_it_after(monkeypatch, outcome):
    from mpitrain import cli
    from mpitrain.experiments import EXPERIMENTS, RUN_POOL, parallel

    calls = []
    monkeypatch.setattr(parallel, "start_ahead", lambda *modules: calls.append(("ahead", modules)))
    monkeypatch.setattr(parallel, "discard_ahead", lambda: calls.append(("discard",)))

    def experiment(registry, kind, args):
        calls.append(("run", args.name))
        if outcome == "raises":
            raise KeyboardInterrupt
        return 0

    monkeypatch.setattr(cli, "_registry_command", experiment)
    name = sorted(RUN_POOL)[0]
    args = SimpleNamespace(name=name, rest=[])
    if outcome == "raises":
        with pytest.raises(KeyboardInterrupt):
            cli.cmd_experiment(args)
    else:
        assert cli.cmd_experiment(args) == 0
    assert calls == [("ahead", (EXPERIMENTS[name].split(":")[0],)), ("run", name), ("discard",)]
    calls.clear()
    other = next(n for n in EXPERIMENTS if n not in RUN_POOL)
    outcome = "returns"
    assert cli.cmd_experiment(SimpleNamespace(name=other, rest=[])) == 0
    assert calls == [("run", other)]  # no pool, no child ahead


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="the kernel's parent-death signal is Linux's")
@pytest.mark.parametrize("how", ["SIGKILL", "os._exit"])
def test_children_end_when_their_parent_is_killed_outright(how):
    """A parent killed with no chance to end its pool (SIGKILL; os._exit, as after Ctrl-C) left
    its children waiting forever on their call queues; now the kernel ends them."""
    import signal
    import subprocess
    import sys

    script = f"""
import os, signal, sys, time
from mpitrain.experiments import parallel
from mpitrain.experiments.parallel import RunPool, start_ahead
parallel.default_jobs = lambda: 3  # so that the pool takes the child started ahead over
start_ahead("colorsys")
pool = RunPool(3)
pool.start("colorsys")
deadline = time.time() + 60
while pool._ready < 2 and time.time() < deadline:
    time.sleep(0.01)
print(*[p.pid for p in pool._executor._processes.values()], flush=True)
{"os.kill(os.getpid(), signal.SIGKILL)" if how == "SIGKILL" else "os._exit(130)"}
"""
    # (the children inherit the pipe: read the line, wait for the parent, not for end of file)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    children = []
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]
        parent.wait(timeout=120)
        assert len(children) == 2
        deadline = time.time() + 30
        alive = children
        while alive and time.time() < deadline:
            alive = [pid for pid in alive if os.path.exists(f"/proc/{pid}") and
                     open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"]
            time.sleep(0.05)
        assert not alive, f"children {alive} outlived their parent"
    finally:
        parent.kill()
        parent.stdout.close()
        for pid in children:  # whatever outlived the test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def sleep_then_return(seconds):
    time.sleep(seconds)
    return seconds


def test_an_error_inside_the_pool_ends_its_children_at_once_not_after_their_runs():
    started = time.perf_counter()
    with pytest.raises(ValueError, match="bad config"):
        with RunPool(2) as pool:
            pool.submit("long", sleep_then_return, 60)  # to the child
            time.sleep(0.5)
            raise ValueError("bad config")
    assert time.perf_counter() - started < 30  # not the 60 s of the child's run


def fake_run(bits_to_target, bits_per_exchange=100):
    return SimpleNamespace(bits_to_target=bits_to_target, bits_per_exchange=bits_per_exchange, final=0.5)


def child_signal_state(_):
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_a_ctrl_c_during_a_submit_is_delivered_after_it_not_lost():
    """A SIGINT that arrives while a call is handed to the children (which may spawn one) waits
    for the hand-over and then interrupts this process; it used to be ignored, and the run went on."""
    import signal
    import time

    class Handover:
        def submit(self, function, *args):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the hand-over
            time.sleep(0.05)
            return "future"

    pool = RunPool(2)
    pool._executor = Handover()
    # Python's own Ctrl-C handler, whatever this test run inherited (an ignored SIGINT, in a
    # shell's background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            assert pool._submit_to_children(square, (3,)) == "future"
            time.sleep(0.05)  # a pending signal is handled at once; never past here
    finally:
        pool._executor = None
        signal.signal(signal.SIGINT, previous)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # this thread's mask restored
    with RunPool(2) as pool:  # a real child ignores SIGINT, and no longer blocks it
        pool.submit("child", child_signal_state, None)
        pool.submit("here", square, 2)
        results = dict(pool.results())
    assert results["child"] == (True, False)


def test_a_later_run_stops_after_the_last_check_that_could_still_send_fewer_bits():
    from mpitrain.experiments.compression_bits import GammaSearch

    search = GammaSearch([16, 8, 4], steps=4000, check=50)
    assert search.budget(1) == 4000  # nothing before it is known yet
    search.add(0, fake_run(None))
    assert search.budget(1) == search.budget(2) == 4000  # not reached: the final values decide
    search = GammaSearch([16, 8, 4], steps=4000, check=50)
    search.add(0, fake_run(40000))  # reached at step 400 with 100 bits a step
    assert search.budget(1) == 350  # 350 * 100 < 40000 <= 400 * 100: a tie goes to the earlier run
    search.add(1, fake_run(30000))
    assert search.budget(2) == 250
    search = GammaSearch([16, 8], steps=300, check=50)
    search.add(0, fake_run(10 ** 9))
    assert search.budget(1) == 300  # never more than the run's steps


@pytest.mark.skipif(not (DATA / "w8a").exists(), reason="w8a not available")
def test_cut_runs_pick_the_same_best_run_as_whole_runs(monkeypatch):
    from mpitrain.experiments import compression_bits as cb

    monkeypatch.setenv("MPITRAIN_DATA", str(DATA))
    args = SimpleNamespace(steps=600, check=50, target=0.05, seed=0)
    problem = cb.problem_for("w8a", cb.Problem("w8a", cb.DEFAULTS["batch_size"]).f_star)
    gammas = [16.0, 4.0, 1.0]
    cut_any = False
    for name, feedback in (("top_k", "ef"), ("top_k_natural_dithering", "none"), ("scaled_sign", "ef")):
        whole = [cb.Run(problem, name, feedback, gamma, args) for gamma in gammas]
        search = cb.GammaSearch(gammas, args.steps, args.check)
        search.add(0, whole[0])
        for index in (1, 2):
            budget = search.budget(index)
            cut_any |= budget < args.steps
            search.add(index, cb.Run(problem, name, feedback, gammas[index], args, budget=budget))
        chosen, expected = search.best(), cb.best(whole)
        assert (chosen.gamma, chosen.bits_to_target, chosen.curve) == (expected.gamma, expected.bits_to_target,
                                                                       expected.curve), name
    assert cut_any, "no run was cut: the test shows nothing"


@pytest.mark.skipif(not (DATA / "w8a").exists(), reason="w8a not available")
def test_the_tables_do_not_depend_on_the_number_of_processes(tmp_path, monkeypatch):
    from mpitrain.experiments.compression_bits import main

    monkeypatch.setenv("MPITRAIN_DATA", str(DATA))
    common = ["--steps", "150", "--check", "50", "--target", "0.2", "--tune-grid", "4,16"]
    for jobs in (1, 2):
        assert main([*common, "--jobs", str(jobs), "--out", str(tmp_path / str(jobs))]) == 0
    one, two = (json.loads((tmp_path / str(jobs) / "bits.json").read_text()) for jobs in (1, 2))
    assert one == two
    assert (tmp_path / "1" / "bits.md").read_text() == (tmp_path / "2" / "bits.md").read_text()
