"""The ``supernas`` command line (typer). It only wires the stages together; every SupernasError
becomes one line on stderr and exit code 2."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from typer.exceptions import TyperException
from rich.console import Console

from .errors import PreflightError, SupernasError, SupernasWarning

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hardware-aware neural architecture search over elastic super-networks.")
bench_app = typer.Typer(no_args_is_help=True, help="Ground truth: exhaustive tables and strategy comparisons.")
app.add_typer(bench_app, name="bench")
store_app = typer.Typer(no_args_is_help=True, help="Check and repair result stores (results.db).")
app.add_typer(store_app, name="store")
console = Console()
_python_showwarning = warnings.showwarning


def _load(config: Optional[Path], out: Optional[Path]):
    from .config import load_config
    from .run import default_config

    cfg = load_config(config) if config is not None else default_config()
    if out is not None:
        cfg.out = str(out)
    return cfg


ConfigArg = typer.Argument(..., help="YAML run file (see `supernas run --dump-config`).", show_default=False)
OutOpt = typer.Option(None, "--out", "-o", help="Run directory (default: the run file's `out`).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")


@app.command()
def run(config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML run file; default: the "
                                               "embedded default (digits, offline, minutes on a CPU)."),
        out: Optional[Path] = OutOpt,
        dump_config: bool = typer.Option(False, "--dump-config", help="Print the full run file and exit."),
        fresh: bool = typer.Option(False, "--fresh", help="Delete what the run directory holds and start over."),
        quiet: bool = QuietOpt) -> None:
    """Train the supernet, search it, export the chosen sub-networks and write the report.

    A killed run resumes where it stopped when started again with the same run directory."""
    from .config import dump_config as dump
    from .run import run_all

    cfg = _load(config, out)
    if dump_config:
        typer.echo(dump(cfg), nl=False)
        return
    run_all(cfg, fresh=fresh, progress=not quiet, console=console)


@app.command()
def train(config: Path = ConfigArg, out: Optional[Path] = OutOpt,
          fresh: bool = typer.Option(False, "--fresh", help="Delete what the run directory holds (checkpoints "
                                     "and results) and start over."),
          quiet: bool = QuietOpt) -> None:
    """Train the supernet of a run file (resumes from the last complete checkpoint)."""
    from .run import open_run, train_step

    cfg = _load(config, out)
    paths = open_run(cfg, fresh=fresh, console=console)
    train_step(cfg, paths, progress=not quiet, console=console)


@app.command()
def search(config: Path = ConfigArg, out: Optional[Path] = OutOpt,
           resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue the run's search "
                                       "from its result store (default), or refuse to touch a run that holds results."),
           quiet: bool = QuietOpt) -> None:
    """Search the trained supernet of a run (needs `supernas train` first)."""
    from .run import open_run, search_step

    cfg = _load(config, out)
    paths = open_run(cfg, console=console)
    search_step(cfg, paths, resume=resume, progress=not quiet, console=console)


@app.command()
def measure(config: Optional[Path] = typer.Argument(None, help="YAML run file (default: the embedded default)."),
            out: Optional[Path] = OutOpt,
            configs: str = typer.Option("largest,smallest", "--configs", help="Comma-separated presets "
                                        "(largest, smallest, median, family presets) or JSON config files."),
            objectives: Optional[str] = typer.Option(None, "--objectives", help="Comma-separated metric "
                                                     "columns, e.g. macs,params,latency_ms@cpu (default: the "
                                                     "run file's)."),
            untrained: bool = typer.Option(False, "--untrained", help="Measure a freshly built supernet "
                                           "instead of the run's checkpoint (costs and latency only).")) -> None:
    """Measure given sub-networks on the run's targets and print a table."""
    from .run import measure_step

    cfg = _load(config, out)
    cols = [c.strip() for c in objectives.split(",") if c.strip()] if objectives else None
    names = [c.strip() for c in configs.split(",") if c.strip()]
    if not names:
        raise typer.BadParameter("give at least one preset or JSON config file", param_hint="--configs")
    measure_step(cfg, names, columns=cols,
                 untrained=untrained, console=console)


@app.command()
def space(config: Optional[Path] = typer.Argument(None, help="YAML run file (default: the embedded default)."),
          check: bool = typer.Option(True, "--check/--no-check", help="For a custom model: prove that every "
                                     "choice changes the network and the elastic forward equals the extracted one.")
          ) -> None:
    """Print the run's search space: every choice, its options and when it is active (nothing is trained)."""
    from rich.table import Table

    from .run import build_supernet, load_data, search_space

    cfg = _load(config, None)
    net = build_supernet(cfg, load_data(cfg))
    choices = search_space(cfg, net)
    table = Table(title=f"{cfg.supernet.family} search space: {choices.size():,} sub-networks")
    for column in ("choice", "options", "active when"):
        table.add_column(column)
    for c in choices.choices:
        when = f"{c.active_if[0]} > {c.active_if[1]}" if c.active_if else "always"
        table.add_row(c.name, ", ".join(map(str, c.options)), when)
    console.print(table)
    if check and net.family == "custom":
        net.check()  # type: ignore[operator]
        console.print(f"check passed: the largest sub-network is the model, each of the {len(choices.choices)} "
                      f"choices changes the network, the elastic forward equals the extracted one")


@app.command()
def export(run_dir: Path = typer.Argument(..., help="A run directory."),
           pick: str = typer.Option("knee", "--pick", help="knee, best-<objective column>, or a front row id."),
           format: str = typer.Option("onnx,torch", "--format", help="Comma-separated: onnx, torch, torchscript.")
           ) -> None:
    """Export one sub-network of a searched run, verified in ONNX Runtime / PyTorch."""
    from .run import run_from_dir
    from .run import export_pick

    cfg, paths = run_from_dir(run_dir)
    res = export_pick(cfg, paths, pick, [f.strip() for f in format.split(",") if f.strip()])
    console.print(res.summary)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """(Re)write the HTML report, plots and front table of a run."""
    from .run import run_from_dir
    from .run import report_step

    cfg, paths = run_from_dir(run_dir)
    console.print(f"report: {report_step(cfg, paths)}")


@bench_app.command("table")
def bench_table(config: Path = ConfigArg, out: Optional[Path] = OutOpt,
                table: Optional[Path] = typer.Option(None, "--table", help="Table CSV to write "
                                                     "(default: RUN_DIR/table.csv)."),
                quiet: bool = QuietOpt) -> None:
    """Evaluate EVERY sub-network of a small space with the run's trained supernet (resumable)."""
    from .run import bench_table_step, open_run

    cfg = _load(config, out)
    paths = open_run(cfg)
    path, t = bench_table_step(cfg, paths, table, progress=not quiet)
    console.print(f"table: {path} ({len(t)} sub-networks, {len(t.front)} on the true front)")


@bench_app.command("strategies")
def bench_strategies(table: Path = typer.Argument(..., help="A table CSV made by `supernas bench table`."),
                     strategies: Optional[str] = typer.Option(None, "--strategies", help="Comma-separated "
                                                              "(default: all, plus pymoo's NSGA-II)."),
                     seeds: int = typer.Option(5, "--seeds", min=1),
                     budgets: str = typer.Option("25,50,100,200", "--budgets", help="Evaluation counts."),
                     out: Path = typer.Option(Path("runs/bench"), "--out", "-o")) -> None:
    """Compare search strategies on a table: hypervolume relative to the true front after k evaluations
    and evaluations needed to reach 95% / 99% of it."""
    from .bench import DEFAULT_STRATEGIES, compare_strategies, load_table

    try:
        budget_list = [int(b) for b in budgets.split(",") if b.strip()]
    except ValueError:
        raise typer.BadParameter(f"budgets must be integers, got {budgets!r}", param_hint="--budgets") from None
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else list(DEFAULT_STRATEGIES)
    summary = compare_strategies(load_table(table), strategies=names, seeds=seeds, budgets=budget_list, out_dir=out)
    console.print(summary.to_string(index=False))
    console.print(f"written: {out}/summary.md, {out}/relative_hv.png")


StoreArg = typer.Argument(..., help="A result store (a run directory's results.db).", show_default=False)


@store_app.command("check")
def store_check(path: Path = StoreArg) -> None:
    """Say how much of a result store is readable (nothing is written); exit 2 when anything is lost."""
    from .store import scan_store

    scan = scan_store(path)
    typer.echo(f"{path}: {scan.summary()}")
    if scan.damaged:
        raise SupernasError(f"{path} is damaged; `supernas store repair {path}` copies the readable "
                            f"evaluations to a fresh store")


@store_app.command("repair")
def store_repair(path: Path = StoreArg,
                 out: Optional[Path] = typer.Option(None, "--out", "-o", help="The fresh store (default: "
                                                    "<name>.repaired.db beside it)."),
                 replace: bool = typer.Option(False, "--replace", help="Put the repaired store in place of the "
                                              "damaged one, which is kept as <name>.damaged.")) -> None:
    """Copy every readable evaluation of a damaged store to a fresh one (the damaged file is not written).
    Run it while no supernas process uses the store; a resumed search measures what was lost again."""
    from .store import repair_store

    dest, scan = repair_store(path, out, replace=replace)
    typer.echo(f"{path}: {scan.summary()}")
    typer.echo(f"repaired store: {dest}" + ("" if replace else f" (use --replace, or move it to {path})"))


def _error(line: str) -> None:
    """One unwrapped line on stderr (a long path must not be broken over two lines)."""
    typer.echo(" ".join(line.split()), err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    if issubclass(category, SupernasWarning):
        _error(f"warning: {message}")
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line and a non-zero exit for every known error, never a traceback."""
    warnings.showwarning = _show_warning
    try:
        code = app(args=argv, prog_name="supernas", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into a returned exit code 130 when not standalone
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _error("interrupted: results measured so far are kept; run the same command again to resume")
        sys.exit(130)
    except TyperException as e:  # usage errors: typer prints the usage line and the problem
        if hasattr(e, "show"):
            e.show()
        sys.exit(getattr(e, "exit_code", 2))
    except PreflightError as e:
        for problem in e.problems:
            _error(f"error: {problem}")
        sys.exit(2)
    except SupernasError as e:
        _error(f"error: {e}")
        sys.exit(2)
    except OSError as e:
        _error(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "))
        sys.exit(2)
    except Exception as e:  # a bug: say so in one line unless asked for the traceback
        if os.environ.get("SUPERNAS_DEBUG"):
            raise
        _error(f"internal error: {type(e).__name__}: {e} (set SUPERNAS_DEBUG=1 for the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    main()
