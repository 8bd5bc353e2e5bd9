"""The result store's contract: :class:`Record` (one evaluated config of a run) and :class:`ResultStore`
(what the evaluation session, the picks and the report need from a store). ``sqlite.Store`` implements it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable


@dataclass
class Record:
    """One evaluated config of a run, with every column measured for it."""

    run: str
    key: str
    config: dict[str, Any]
    values: dict[str, float] = field(default_factory=dict)
    status: str = "ok"
    time: float = 0.0
    elapsed_s: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "key": self.key, "config": self.config, "values": self.values,
                "status": self.status, "time": self.time, "elapsed_s": self.elapsed_s, "error": self.error}


@runtime_checkable
class ResultStore(Protocol):
    """Runs (a name and a JSON-able ``meta`` dict) holding evaluations, each written once as it is measured."""

    path: Path

    def add_run(self, run: str, meta: Mapping[str, Any] | None = None) -> None:
        """Create ``run`` when missing and merge ``meta`` into its metadata."""

    def run_meta(self, run: str) -> dict:
        """The run's metadata (an error when there is no such run)."""

    def put(self, run: str, key: str, config: Mapping[str, Any], values: Mapping[str, float], *,
            status: str = "ok", elapsed_s: float | None = None, error: str | None = None) -> bool:
        """Record one evaluation; measurements already stored are kept. True when anything new was written."""

    def records(self, run: str | None = None) -> list[Record]:
        """Every readable evaluation (of ``run``, or of all runs) in insertion order."""

    def close(self) -> None:
        """Release the store's handles."""

