"""What a run prints: the front and the exported picks as rich tables."""
from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from ..config import RunConfig
from ..measure.objectives import direction


def print_front(console: Console, front: Sequence[Any], columns: Sequence[str], knee: Any = None) -> None:
    table = Table(title=f"Pareto front ({len(front)} sub-networks)")
    table.add_column("#")
    for c in columns:
        table.add_column(f"{c} ({'max' if direction(c) == 'max' else 'min'})", justify="right")
    for i, p in enumerate(front):
        mark = " knee" if knee is not None and p.key == knee.key else ""
        table.add_row(f"{i}{mark}", *(fmt_number(p.values[c]) for c in columns))
    console.print(table)


def fmt_number(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"


def print_picks(console: Console, cfg: RunConfig, picks: Sequence[dict[str, Any]]) -> None:
    table = Table(title="exported sub-networks")
    cols = cfg.search.objectives
    for c in ["pick", *cols, "test accuracy"]:
        table.add_column(c, justify="left" if c == "pick" else "right")
    for info in picks:
        test = info.get("test_accuracy")
        table.add_row(info["pick"], *(fmt_number(info["metrics"].get(c, float("nan"))) for c in cols),
                      "-" if test is None else f"{test:.4f}")
    console.print(table)
