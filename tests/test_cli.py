"""Command line: help, one-line errors with exit code 2, the default run file."""
import pytest
import yaml

from supernas.cli import main
from supernas.config import parse_config


def run_cli(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_commands(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for cmd in ("run", "train", "search", "measure", "export", "report", "bench"):
        assert cmd in out


@pytest.mark.parametrize("argv, needle", [
    (["nope"], "No such command"),
    (["report", "/nonexistent/run"], "is not a supernas run directory"),
    (["export", "/nonexistent/run", "--pick", "knee"], "is not a supernas run directory"),
    (["train", "/nonexistent/run.yaml"], "run file not found"),
])
def test_bad_input_one_line_exit_2(argv, needle, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err + out


def test_bad_run_file_names_the_key(tmp_path, capsys):
    p = tmp_path / "run.yaml"
    p.write_text("train:\n  epochz: 3\n")
    code, _, err = run_cli(["train", str(p)], capsys)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "train.epochz: unknown key" in lines[0]


def test_dump_config_is_the_valid_default(capsys):
    code, out, _ = run_cli(["run", "--dump-config"], capsys)
    assert code == 0
    cfg = parse_config(yaml.safe_load(out))
    assert cfg.data.dataset == "digits"


def test_import_and_help_do_not_load_torch():
    import subprocess
    import sys

    code = ("import sys, supernas, supernas.cli; heavy = [m for m in ('torch', 'sklearn', 'tokenizers', 'ray') "
            "if m in sys.modules]; assert not heavy, heavy; "
            "from supernas.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_train_again_reports_the_epochs_the_checkpoint_holds(tmp_path, capsys):
    from test_reliability_inputs import run_file

    p = run_file(tmp_path, "again")  # one epoch of a tiny mbv3 on digits
    for _ in range(2):  # trained, then resumed from the finished checkpoint: one epoch both times, not two
        code, out, err = run_cli(["train", str(p), "-q"], capsys)
        assert code == 0, err
        assert "trained supernet: 1 of 1 epochs" in " ".join(out.split())
