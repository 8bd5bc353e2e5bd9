"""A rich progress bar for searches: evaluations done, best value per column, hypervolume."""
from __future__ import annotations

from typing import Any, Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..measure.objectives import sign


class SearchProgress:
    """Context manager; ``update`` after every evaluation. Disabled -> does nothing."""

    def __init__(self, total: int, columns: Sequence[str], enabled: bool = True) -> None:
        self.columns, self.enabled = list(columns), enabled
        self.progress = Progress(TextColumn("search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"), disable=not enabled, transient=False)
        self.task = self.progress.add_task("", total=total)

    def __enter__(self) -> "SearchProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def update(self, evaluation: Any, points: Sequence[Any], hypervolume: float) -> None:
        if not self.enabled:
            return
        parts = []
        for c in self.columns:
            vals = [p.values[c] for p in points]
            if vals:
                best = min(vals) if sign(c) > 0 else max(vals)
                parts.append(f"{c}={best:.4g}")
        failed = {"failed": " [red]failed[/red]", "screened": " [dim]screened out[/dim]"}.get(evaluation.status, "")
        self.progress.update(self.task, advance=1,
                             description=f"hv={hypervolume:.4f} best " + " ".join(parts) + failed)
