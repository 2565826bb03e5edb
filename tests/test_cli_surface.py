"""The user's surface: --version, `list`, the choices in --help, --print-config (TOML that reads
back to the same config), --dry-run (sizes, nothing written), "did you mean", TOML hints, the
unused-section warning, and docs/config.md generated from the dataclasses."""
import subprocess
import sys
import tomllib

import pytest

from mpi_run import ROOT, mpi_env, run_mpi
from mpitrain.catalogue import KINDS, config_reference, listing
from mpitrain.config import ConfigError, config_from_dict, load_config

SMALL = ["data.n_samples=2000", "data.n_features=50", "train.steps=60", "run.reference=false"]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mpitrain", *args], capture_output=True, text=True, timeout=120,
                          env=mpi_env(), cwd=cwd or ROOT)


def test_version():
    from mpitrain import __version__

    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"mpitrain {__version__}"


@pytest.mark.parametrize("kind", KINDS)
def test_list_names_every_choice_with_a_line(kind):
    result = cli("list", kind)
    assert result.returncode == 0, result.stderr
    rows = listing(kind)
    assert len(rows) >= 2
    for name, text in rows.items():
        assert name in result.stdout
        assert text.strip(), f"{kind} {name} has no description"


@pytest.mark.parametrize("command,kind", [(["bench"], "benches"), (["experiment"], "experiments"),
                                          (["train"], "algorithms"), (["train"], "objectives"),
                                          (["train"], "datasets"), (["train"], "compressors")])
def test_help_lists_the_choices(command, kind):
    result = cli(*command, "--help")
    assert result.returncode == 0
    for name, text in listing(kind).items():
        assert f"  {name}  " in result.stdout or f"  {name} " in result.stdout, name
        assert text.split()[0] in result.stdout  # with its line


def test_commands_that_print_no_choices_do_not_import_the_algorithms():
    """``train --help``'s list of choices is made when it is printed: ``plot --help`` (or any
    command that is not ``train``) does not pay for importing every algorithm and objective."""
    probe = ("import sys; from mpitrain.cli import build_parser; build_parser(); "
             "print(sorted(m for m in sys.modules if m.startswith(('mpitrain.algorithms', 'mpitrain.objectives'))))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            env=mpi_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("action", ["render", "submit"])
def test_job_help_lists_the_templates_with_a_line_each(action):
    from mpitrain.jobs import TEMPLATES

    result = cli("job", action, "--help")
    assert result.returncode == 0
    for name, text in TEMPLATES.items():
        assert (ROOT / "jobs" / f"{name}.sbatch").exists()
        assert f"  {name}" in result.stdout and text in result.stdout


def test_print_config_is_toml_that_reads_back_to_the_same_config(tmp_path):
    result = cli("train", "--print-config", "--set", "train.algorithm=local_sgd", "--set", "local_sgd.period=5")
    assert result.returncode == 0, result.stderr
    tree = tomllib.loads(result.stdout)
    assert tree["local_sgd"]["period"] == 5 and tree["run"]["stall_timeout"] == 300.0
    again = config_from_dict(tree)
    assert again.to_dict() == load_config(None, ["train.algorithm=local_sgd", "local_sgd.period=5"]).to_dict()


def test_dry_run_reports_sizes_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result = run_mpi(2, ["-m", "mpitrain", "train", "--dry-run", "--set", f"run.output_dir={out}",
                         *[a for o in SMALL for a in ("--set", o)]], timeout=60)
    assert result.returncode == 0, result.output
    assert "2000 samples x 50 features" in result.stdout and "rows per rank 1000..1000" in result.stdout
    assert f"output folder: {out} (not created)" in result.stdout
    assert not out.exists()


@pytest.mark.parametrize("override,words", [
    ("train.stepz=4", "unknown field (did you mean 'steps'?)"),
    ("train.algorithm=local_sdg", "unknown algorithm 'local_sdg' (did you mean 'local_sgd'?)"),
    ("compresed_sgd.k=3", "unknown section [compresed_sgd] (did you mean 'compressed_sgd'?)"),
    ("step_size.schedule=stitch", "got 'stitch' (did you mean 'stich'?)"),
    ("step_size.value=.5", "TOML numbers need digits on both sides of the point: 0.5"),
    ("run.progress=False", "TOML booleans are lowercase: false"),
    ('train.steps="100"', "100 is quoted, so it is a string: drop the quotes"),
])
def test_misspellings_and_toml_slips_get_a_hint(override, words):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert words in str(info.value)


def test_a_toml_file_slip_gets_a_hint(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[step_size]\nvalue = .5\n")
    with pytest.raises(ConfigError, match="not valid TOML.*at line 2.*digits on both sides of the point: 0.5"):
        load_config(path)


def test_a_section_the_algorithm_does_not_read_is_warned_about(tmp_path):
    result = run_mpi(2, ["-m", "mpitrain", "train", "--set", f"run.output_dir={tmp_path / 'run'}",
                         "--set", "local_sgd.period=4", "--set", "run.progress=false",
                         *[a for o in SMALL for a in ("--set", o)]], timeout=60)
    assert result.returncode == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == ["mpitrain: warning: [local_sgd] is given but train.algorithm = 'sync_sgd' does not read it"]


def test_docs_config_md_is_generated_from_the_dataclasses():
    assert (ROOT / "docs" / "config.md").read_text() == config_reference(), (
        "docs/config.md is out of date: python -m mpitrain list fields --markdown > docs/config.md")


def test_every_config_field_is_documented():
    undocumented = [name for name, text in listing("fields").items() if ": " not in text]
    assert not undocumented, f"fields without a comment beside them: {undocumented}"


def test_the_command_line_freezes_the_heap_before_it_exits(monkeypatch):
    """``python -m mpitrain`` skips the exit's collection of cyclic garbage (0.08 s with numpy,
    scipy and matplotlib loaded): gc.freeze() once the command is done, then the exit code."""
    import gc

    from mpitrain import __main__ as entry
    from mpitrain import cli

    frozen = []
    monkeypatch.setattr(entry, "install_abort_hook", lambda: None)
    monkeypatch.setattr(cli, "main", lambda: frozen.append(gc.get_freeze_count()) or 3)
    monkeypatch.setattr(entry.sys, "argv", ["mpitrain", "list"])
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as exit_:
            entry.run()
        assert exit_.value.code == 3
        assert frozen == [0] and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_ctrl_c_before_any_command_handles_it_is_one_line_and_exit_130(monkeypatch, capsys):
    """A Ctrl-C while the package still imports (the first half second of a command) used to
    print the import's traceback."""
    from mpitrain import __main__ as entry
    from mpitrain import cli

    def interrupted():
        raise KeyboardInterrupt

    def exit_now(code):
        raise SystemExit(code)

    monkeypatch.setattr(entry, "install_abort_hook", lambda: None)
    monkeypatch.setattr(cli, "main", interrupted)
    monkeypatch.setattr(entry.os, "_exit", exit_now)
    with pytest.raises(SystemExit) as exit_:
        entry.run()
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "mpitrain: interrupted (SIGINT)\n"
