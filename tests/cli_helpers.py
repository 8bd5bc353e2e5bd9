"""Calling the CLI in-process and checking its one-line errors (shared by the CLI-facing test modules)."""
from __future__ import annotations

from supernas.cli import main


def cli(argv, capsys) -> tuple[int, str]:
    """Exit code and stderr of ``supernas <argv>``; never a traceback or an internal error."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and "internal error" not in out.err, out.err
    return code, out.err


def assert_one_line(code: int, err: str, *needles: str) -> None:
    """Exit code 2 and exactly one ``error: ...`` line holding every needle."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, (code, err)
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
