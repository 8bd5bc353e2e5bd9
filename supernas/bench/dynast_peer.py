"""DyNAS-T's own LINAS (the method's reference implementation, package ``dynast``) as a peer on a table.

Its search loop, encoding, predictors and inner-loop evolutionary search run unchanged, with their defaults
(population 50, ``LINAS_INNERLOOP_EVALS`` = 5,000 predictor evaluations per loop for the generic supernet
type, pymoo's U-NSGA-III for three objectives / NSGA-II for two). Only the evaluation is replaced: DyNAS-T's
generic ("BootstrapNAS") supernet interface hands the chosen sub-network to user metric functions, which
look the config up in the table. Every table choice becomes one DyNAS-T parameter whose values are the
option indices.

``dynast`` 1.6 imports every supernet runner it ships (torchvision, fairseq, and Hugging Face's removed GLUE
processors among them); while it is imported, those third-party packages and the two runner modules for
other supernets that load them (machine translation, SST-2 data) are stand-ins. None of them is on the path
LINAS takes here. Install it with ``pip install --no-deps dynast``: its declared dependencies would replace
this environment's torch.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import io
import importlib.machinery
import logging
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from .tabular import TabularEvaluator

DYNAST_NAME = "dynast-linas"
SUPERNET = "bootstrapnas_image_classification"  # DyNAS-T's generic supernet type (user metric functions)
METRICS = {"accuracy": "accuracy_top1", "macs": "macs", "params": "params"}  # + latency_ms@<target> -> latency
STAND_IN_PACKAGES = ("torchvision", "fairseq", "torchprofile", "sacremoses", "gdown")
STAND_IN_MODULES = ("dynast.supernetwork.machine_translation.transformer_interface",
                    "dynast.supernetwork.text_classification.sst2_dataloader")


class _StandIn(types.ModuleType):
    """A module whose every attribute is another stand-in (imports and decorators at import time pass)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _stand_in(f"{self.__name__}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> "_StandIn":
        return self

    def __mro_entries__(self, bases: tuple) -> tuple:
        return (object,)


def _stand_in(name: str) -> _StandIn:
    mod = sys.modules.get(name)
    if not isinstance(mod, _StandIn):
        mod = _StandIn(name)
        mod.__path__ = []  # type: ignore[attr-defined]
        mod.__file__ = f"<stand-in for {name}>"
        sys.modules[name] = mod
    return mod


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] in STAND_IN_PACKAGES or name in STAND_IN_MODULES:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _stand_in(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def dynast_problem() -> str | None:
    """Why DyNAS-T's LINAS cannot run here (one line), or None when it can."""
    try:
        _import_dynast()
    except ImportError as e:
        return f"the dynast package is not installed (pip install --no-deps dynast): {e}"
    return None


def _import_dynast() -> Any:
    """``dynast.search.search_tactic`` imported with the stand-ins, which are removed from sys.modules after."""
    if "dynast.search.search_tactic" in sys.modules:
        return sys.modules["dynast.search.search_tactic"]
    finder = _StandInFinder()
    before = set(sys.modules)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)  # dynast reconfigures the root logger on import
    sys.meta_path.insert(0, finder)
    try:
        import dynast.search.search_tactic as tactic  # noqa: PLC0415 - optional peer, imported on use
    finally:
        sys.meta_path.remove(finder)
        root.setLevel(level)
        root.handlers[:] = handlers
        for name in set(sys.modules) - before:
            if isinstance(sys.modules[name], _StandIn) and name.split(".")[0] in STAND_IN_PACKAGES:
                del sys.modules[name]  # dynast keeps its references; nothing else sees a fake torchvision
    return tactic


class _Budget(Exception):
    """Raised from a metric function once the budget of distinct sub-networks is spent."""


class _TableSupernet:
    """What DyNAS-T's generic runner asks of a supernet: its space, and a "sub-network" per pymoo vector
    (here the config key, which the metric functions look up)."""

    def __init__(self, evaluate: TabularEvaluator) -> None:
        self.space = evaluate.space
        self.active: str | None = None

    def get_search_space(self) -> dict[str, Any]:
        return {"width": {i: list(range(len(c.options))) for i, c in enumerate(self.space.choices)}}

    def get_config_from_pymoo(self, vector: Sequence[float]) -> dict[str, Any]:
        return {c.name: c.options[int(round(v))] for c, v in zip(self.space.choices, vector)}

    def activate_config(self, config: dict[str, Any]) -> None:
        self.active = self.space.key(config)

    def get_active_subnet(self) -> "_Key":
        assert self.active is not None
        return _Key(self.active)


class _Key(str):
    def to(self, device: Any) -> "_Key":  # the runner moves the "model" to its device
        return self


def run_dynast_linas(evaluate: TabularEvaluator, columns: Sequence[str], budget: int, seed: int,
                     inner_evals: int | None = None, **options: Any) -> list[dict[str, float]]:
    """DyNAS-T's LINAS on the table: the values of the first ``budget`` distinct configs it evaluated, in
    order (a config it evaluates again is free, as with supernas's store). ``options`` go to its LINAS;
    ``inner_evals`` replaces its predictor evaluations per loop (default: its own, 5,000; tests use fewer)."""
    tactic = _import_dynast()
    metrics = []
    for c in columns:
        name = "latency" if c.startswith("latency_ms") else METRICS.get(c)
        if name is None:
            raise ConfigError(f"DyNAS-T's LINAS optimises accuracy, macs, params and one latency; not {c!r}")
        metrics.append(name)
    if not 2 <= len(metrics) <= 3 or len(set(metrics)) != len(metrics):
        raise ConfigError(f"DyNAS-T's LINAS takes 2 or 3 distinct objectives, got {', '.join(columns)}")
    column_of = dict(zip(metrics, columns))
    seen: dict[str, dict[str, float]] = {}

    budget = min(budget, len(evaluate))

    def lookup(key: str) -> dict[str, float]:
        if key not in seen:
            seen[key] = evaluate(evaluate.space.from_key(key))
            if len(seen) >= budget:
                raise _Budget()
        return seen[key]

    def value(metric: str) -> Any:
        return lambda key: lookup(key)[column_of[metric]] if metric in column_of else 0.0

    fns = {"accuracy_top1": value("accuracy_top1"), "macs": value("macs"), "params": value("params"),
           "latency": lambda key: (value("latency")(key), 0.0)}
    population = int(options.pop("population", 50))
    with tempfile.TemporaryDirectory() as tmp:
        linas = tactic.LINAS(supernet=SUPERNET, optimization_metrics=metrics, measurements=list(metrics),
                             num_evals=10 * max(budget, population), results_path=str(Path(tmp) / "results.csv"),
                             population=population, seed=seed, bootstrapnas_supernetwork=_TableSupernet(evaluate),
                             metric_eval_fns=fns, verbose=False, **options)
        inner = tactic.LINAS_INNERLOOP_EVALS
        own_inner = inner[SUPERNET]
        if inner_evals is not None:
            inner[SUPERNET] = int(inner_evals)
        encoding = tactic.BootstrapNASEncoding
        convert = encoding.__dict__["convert_subnet_config_to_bootstrapnas"]
        # the final population is converted to NNCF's config types (nncf is not installed); keep it as is
        encoding.convert_subnet_config_to_bootstrapnas = staticmethod(lambda config: config)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # its inner loop prints a dot per generation
                linas.search()
        except _Budget:
            pass
        finally:
            encoding.convert_subnet_config_to_bootstrapnas = convert
            inner[SUPERNET] = own_inner
    return list(seen.values())
