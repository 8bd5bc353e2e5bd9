"""Evaluate configs by looking them up in a benchmark table (no measurement)."""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import ConfigError
from .table import Table


class TabularEvaluator:
    """``evaluate(cfg) -> {column: value}`` from a :class:`Table`, keyed by ``space.key``; picklable.

    A config missing from the table raises ``KeyError`` (the search driver records it as failed).
    ``calls`` counts lookups made in this process."""

    def __init__(self, table: Table) -> None:
        if len(table) == 0:
            raise ConfigError("the benchmark table is empty")
        self.space = table.space
        self.columns = list(table.columns)
        self.lookup: dict[str, dict[str, float]] = table.values()
        self.calls = 0

    def __call__(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        key = self.space.key(cfg)
        self.calls += 1
        try:
            return dict(self.lookup[key])
        except KeyError:
            raise KeyError(f"config {key} is not in the benchmark table") from None

    def __len__(self) -> int:
        return len(self.lookup)

    def __repr__(self) -> str:
        return f"TabularEvaluator({len(self.lookup)} configs, columns={self.columns})"
