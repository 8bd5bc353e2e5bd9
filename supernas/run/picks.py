"""Picking sub-networks from a run's search results and exporting them into the run directory.

Picks (``export.picks`` in the run file, ``supernas export --pick``): ``knee``, ``largest``, ``smallest``,
``best-<objective>`` or a row id of front.csv, optionally restricted to evaluated sub-networks with
``<objective> <= <value>`` (``<value>%``: percent of the largest sub-network's value), e.g.
``best-accuracy if params <= 50%``. Every exported sub-network's ``.json`` records its pick, its
objectives and its accuracy on the data's test split (text: the dev file), which the report lists.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from ..config import RunConfig, parse_pick
from ..errors import ConfigError
from ..measure.objectives import direction
from .build import make_evaluator, quantization, search_space, trained_supernet
from .facts import timed
from .paths import FP32_RUN, SEARCH_RUN, RunPaths
from ..space import Config
from ..supernets import Supernet


def evaluations_frame(cfg: RunConfig, paths: RunPaths, run: str = SEARCH_RUN):
    """One row per successfully evaluated config of the run's search (key, config, metric columns); ``run``
    names another run of results.db (``FP32_RUN``)."""
    from ..store import Store

    if not paths.results.exists():
        raise ConfigError(f"{paths.root} has no results yet; run `supernas search` first")
    with Store(paths.results, readonly=True) as db:
        df = db.dataframe(run)
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    missing = [c for c in cfg.search.objectives if c not in df.columns]
    if df.empty or missing:
        raise ConfigError(f"{paths.root} holds no complete evaluations of {', '.join(cfg.search.objectives)}"
                          + (f" in run {run!r}" if run != SEARCH_RUN else ""))
    return df.dropna(subset=cfg.search.objectives).reset_index(drop=True)


def reference_frame(cfg: RunConfig, paths: RunPaths) -> tuple[str, Any] | None:
    """(label, evaluations) of a quantized run's FP32 reference (``fp32_reference_step``), for the report;
    None when the run is not quantized or holds none."""
    if not quantization(cfg).enabled:
        return None
    try:
        return "FP32 (the INT8 front's architectures)", evaluations_frame(cfg, paths, FP32_RUN)
    except ConfigError:
        return None


def pick_config(cfg: RunConfig, paths: RunPaths, pick: str, supernet: Callable[[], tuple[Supernet, Any]]
                | None = None) -> tuple[str, Config]:
    """A pick (see ``config.parse_pick``: ``knee``, ``largest``, ``best-<column>``, a row id of front.csv,
    optionally ``if <column> <= <value>[%]``) -> (file stem, config). Every pick but ``largest`` and
    ``smallest`` comes from the front of the sub-networks that satisfy ``search.constraints`` (the front the
    search reported). ``supernet()`` gives the trained supernet and data when a pick needs them (default:
    loaded from the run's checkpoint)."""
    from ..report import front_table
    from ..search import parse_constraints

    p = parse_pick(pick)
    supernet = supernet or (lambda: trained_supernet(cfg, paths))
    if p.base in ("largest", "smallest"):
        space = search_space(cfg, supernet()[0])
        return p.name, space.largest() if p.base == "largest" else space.smallest()
    cols = cfg.search.objectives
    df = evaluations_frame(cfg, paths)
    if p.column is not None:
        limit = p.limit
        if p.relative:  # percent of the largest sub-network's value, measured now
            net, bundle = supernet()
            largest = search_space(cfg, net).largest()
            limit = make_evaluator(cfg, net, bundle, [p.column])(largest)[p.column] * p.limit / 100
        df = df[df[p.column] <= limit]
        if df.empty:
            raise ConfigError(f"pick {pick!r}: no evaluated sub-network has {p.column} <= {limit:.4g}")
    constraints = cfg.search.constraints or None
    front = front_table(df, cols, constraints).reset_index(drop=True)
    if front.empty:
        rule = ", ".join(str(c) for c in parse_constraints(constraints))
        raise ConfigError(f"pick {pick!r}: no evaluated sub-network satisfies the constraints ({rule})")
    if p.base == "knee":
        row = front[front["knee"]].iloc[0]
    elif p.base.startswith("best-"):
        col = p.base[len("best-"):]
        if col not in cols:
            raise ConfigError(f"cannot pick {pick!r}: {col!r} is not an objective ({', '.join(cols)})")
        row = front.sort_values(col, ascending=direction(col) == "min", kind="stable").iloc[0]
    elif int(p.base) < len(front):
        row = front.iloc[int(p.base)]
    else:
        raise ConfigError(f"unknown pick {pick!r}: the front has rows 0..{len(front) - 1}")
    return p.name, json.loads(row["config"])


def pick_metrics(cfg: RunConfig, paths: RunPaths, net: Supernet, bundle: Any, config: Config) -> dict[str, float]:
    """The search objectives of ``config``: its row in the result store, else measured now."""
    key = search_space(cfg, net).key(config)
    df = evaluations_frame(cfg, paths) if paths.results.exists() else None
    if df is not None and key in set(df["key"]):
        row = df[df["key"] == key].iloc[0]
        return {c: float(row[c]) for c in cfg.search.objectives}
    return make_evaluator(cfg, net, bundle)(config)


@timed("export")
def export_pick(cfg: RunConfig, paths: RunPaths, pick: str, formats: Sequence[str], net: Supernet | None = None,
                bundle: Any = None):
    """Export one picked sub-network (BN-recalibrated on training data) into the run directory; ``net``
    and ``bundle`` default to the run's trained supernet and data. Its ``.json`` records the pick, its
    objectives and, when the data has a test split, its test accuracy (text: the dev file's)."""
    from ..data import loaders
    from ..export import export
    from ..measure import evaluate_accuracy
    from ..train import recalibrate_bn

    loaded = [(net, bundle)] if net is not None and bundle is not None else []

    def supernet() -> tuple[Supernet, Any]:
        if not loaded:
            loaded.append(trained_supernet(cfg, paths))
        return loaded[0]

    name, config = pick_config(cfg, paths, pick, supernet)
    net, bundle = supernet()
    meta: dict[str, Any] = {"pick": pick, "metrics": pick_metrics(cfg, paths, net, bundle, config)}
    if quantization(cfg).enabled:
        return _export_quantized(cfg, paths, net, bundle, config, name, formats, meta)
    sub = net.extract(config)
    train_loader, _, test_loader = loaders(bundle, batch_size=cfg.train.batch_size, seed=cfg.seed)
    recalibrate_bn(sub, train_loader, cfg.search.calib_batches)
    if len(bundle.test):
        meta["test_accuracy"] = evaluate_accuracy(sub, test_loader)["accuracy"]
    return export(sub, config, paths.root, formats=formats, name=name, input_shape=net.input_shape(config),
                  make_input=net.random_input, dynamic=net.dynamic_axes(), meta=meta)


def _export_quantized(cfg: RunConfig, paths: RunPaths, net: Supernet, bundle: Any, config: Config, name: str,
                      formats: Sequence[str], meta: dict[str, Any]):
    """A quantized pick: its FP32 architecture exported as usual plus ``<name>.int8.onnx``, whose agreement
    with the FP32 sub-network (top-1 agreement, max logit difference) and test accuracy are recorded."""
    from ..data import loaders
    from ..export import export
    from ..measure import evaluate_accuracy
    from ..quantize import agreement

    evaluator = make_evaluator(cfg, net, bundle, ["bytes"], paths=paths)
    arch, deployed = evaluator.deploy(config)
    fp32 = deployed.float_model
    _, _, test_loader = loaders(bundle, batch_size=cfg.train.batch_size, seed=cfg.seed)
    check = test_loader if len(bundle.test) else evaluator.eval_loader
    int8_path = paths.root / f"{name}.int8.onnx"
    int8_path.write_bytes(deployed.model_bytes)
    meta = {**meta, "quantized": {"file": int8_path.name, "precision": deployed.precision, **deployed.info,
                                  "policy": {k: v for k, v in config.items() if k not in net.space},
                                  **agreement(fp32, deployed, (b[0] for b in check))}}
    if len(bundle.test):
        meta["test_accuracy_fp32"] = evaluate_accuracy(fp32, test_loader)["accuracy"]
        meta["test_accuracy"] = evaluate_accuracy(deployed, test_loader)["accuracy"]
    return export(fp32, arch, paths.root, formats=formats, name=name, input_shape=net.input_shape(arch),
                  make_input=net.random_input, dynamic=net.dynamic_axes(), meta=meta)


def exported_picks(paths: RunPaths) -> list[dict[str, Any]]:
    """The ``.json`` records of the sub-networks exported into the run directory (those with a pick)."""
    out = []
    for p in sorted(paths.root.glob("*.json")):
        try:
            info = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(info, dict) and "pick" in info:
            out.append(info)
    return out
