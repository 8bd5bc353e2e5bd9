"""The run file: one YAML document describing a whole run, validated with pydantic.

Every section is strict (an unknown key is an error); ``load_config`` turns any problem into one
``ConfigError`` line naming the key, e.g. ``config error at train.epochs: must be greater than 0``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, validation_problem
from .measure.targets import TargetSpec, make_target
from .train import TrainConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SupernetSection(Section):
    """Which family to build and its constructor arguments (see ``supernas.create_supernet``)."""

    family: str = "mbv3"
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("family")
    @classmethod
    def _known_family(cls, v: str) -> str:
        from .supernets import list_families

        if v not in list_families():
            raise ValueError(f"unknown supernet family {v!r}; known: {', '.join(list_families())}")
        return v


class DataSection(Section):
    """``dataset``: ``digits`` (embedded), or a path to an image-folder tree or CIFAR batch folder."""

    dataset: str = "digits"
    kind: Literal["digits", "folder", "cifar"] | None = None
    image_size: int | None = Field(default=None, gt=0)
    channels: int | None = Field(default=None, gt=0)


class SearchSection(Section):
    """What to optimise and how: objectives are metric columns such as ``latency_ms@cpu``."""

    strategy: str = "linas"
    objectives: list[str] = Field(default_factory=lambda: ["accuracy", "macs", "latency_ms@cpu"], min_length=1)
    evaluations: int = Field(default=60, gt=0)
    constraints: dict[str, Any] = Field(default_factory=dict)
    workers: int = Field(default=1, gt=0)
    ray_address: str | None = None
    calib_batches: int = Field(default=10, gt=0)
    options: dict[str, Any] = Field(default_factory=dict, description="the strategy's own options")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        from .search import list_strategies

        if v not in list_strategies():
            raise ValueError(f"unknown search strategy {v!r}; known: {', '.join(list_strategies())}")
        return v

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, v: list[str]) -> list[str]:
        from .measure.objectives import get_objective

        for col in v:
            try:
                get_objective(col)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        if len(set(v)) != len(v):
            raise ValueError("objectives must be distinct")
        return v


class ExportSection(Section):
    picks: list[str] = Field(default_factory=lambda: ["knee", "best-accuracy"])
    formats: list[Literal["onnx", "torch"]] = Field(default_factory=lambda: ["onnx", "torch"])


class RunConfig(Section):
    """A whole run: supernet, data, training, targets, search, export."""

    name: str = "supernas"
    out: str = "runs/default"
    seed: int = 0
    supernet: SupernetSection = Field(default_factory=SupernetSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainConfig = Field(default_factory=TrainConfig)
    targets: dict[str, TargetSpec] = Field(default_factory=lambda: {"cpu": make_target("cpu")})
    search: SearchSection = Field(default_factory=SearchSection)
    export: ExportSection = Field(default_factory=ExportSection)

    @field_validator("targets", mode="before")
    @classmethod
    def _targets(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError("targets must map target names to their settings")
        try:
            return {name: make_target(spec if spec is not None else {}, name) for name, spec in v.items()}
        except ConfigError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _targets_exist(self) -> "RunConfig":
        for col in self.search.objectives + list(self.search.constraints):
            target = col.partition("@")[2]
            if target and target not in self.targets:
                raise ValueError(f"objective {col!r} names target {target!r}, which is not in targets "
                                 f"({', '.join(self.targets) or 'none'})")
        return self


def _one_line(err: ValidationError) -> str:
    where, what = validation_problem(err)
    return f"config error at {where}: {what}"


def parse_config(doc: Any, source: str = "config") -> RunConfig:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a run file must be a YAML mapping, got {type(doc).__name__}")
    try:
        return RunConfig.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_one_line(e)}") from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"run file not found: {p}")
    try:
        doc = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise ConfigError(f"{p}: not valid YAML" + (f" (line {line + 1})" if line is not None else "")) from None
    return parse_config(doc, str(p))


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
