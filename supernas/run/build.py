"""The run's building blocks from its run file: data, supernet (fresh or trained), search space, evaluator."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..config import RunConfig
from ..errors import CheckpointError
from ..supernets import Supernet, supernet_arch
from .paths import RunPaths
from .tasks import task_of


def load_data(cfg: RunConfig, progress: bool = False) -> Any:
    """The run's data bundle (``progress``: a bar while an image cache is built)."""
    return task_of(cfg).load_data(cfg, progress=progress)


def supernet_args(cfg: RunConfig, bundle: Any) -> dict[str, Any]:
    """The run's supernet constructor arguments, completed from the data (classes, channels, image size,
    vocabulary, sequence length: whatever the task takes from it)."""
    return task_of(cfg).supernet_args(cfg, bundle)


def build_supernet(cfg: RunConfig, bundle: Any) -> Supernet:
    """The run's supernet before training (text: from the pretrained model when there is one); its random
    initialisation follows the run's seed, and the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return task_of(cfg).build_supernet(cfg, supernet_args(cfg, bundle))


def trained_supernet(cfg: RunConfig, paths: RunPaths):
    """The run's trained supernet from its last checkpoint, and the data; the checkpoint must hold the
    supernet the run file describes."""
    from ..train import load_supernet
    from ..train.checkpoint import plain

    last = paths.checkpoints / "last.pt"
    if not last.exists():
        raise CheckpointError(f"no trained supernet in {paths.checkpoints}; run `supernas train` first")
    bundle = load_data(cfg)
    net = load_supernet(last)
    args = supernet_args(cfg, bundle)
    if cfg.supernet.checkpoint_file:  # the sizes came from the file: the run file's arguments must hold
        loader = cfg.supernet.args.keys() - cfg.supernet.constructor_args().keys()
        fits = net.arch.get("family") == cfg.supernet.family and all(
            plain(net.arch.get(k)) == plain(v) for k, v in args.items() if k not in loader)
    else:
        fits = plain(net.arch) == plain(supernet_arch(cfg.supernet.family, **args))
    if not fits:
        raise CheckpointError(f"{last} belongs to another supernet ({net.arch.get('family')}) than the run file's "
                              f"({cfg.supernet.family} {cfg.supernet.args}); train it again or use --out")
    if net.trained_epochs is not None and net.trained_epochs < cfg.train.epochs:
        raise CheckpointError(f"the supernet in {last} has trained {net.trained_epochs} of {cfg.train.epochs} epochs; "
                              f"run `supernas train` (or `supernas run`) to finish its training first")
    return net, bundle


def quantization(cfg: RunConfig):
    """The run's :class:`~supernas.quantize.QuantizationSpec` (policy ``none`` when not set)."""
    from ..quantize import quantization_spec

    return quantization_spec(cfg.search.quantization)


def search_space(cfg: RunConfig, net: Supernet):
    """The space the run searches: the supernet's, plus a precision per block with ``quantization.policy:
    per-block``."""
    from ..quantize import policy_space

    spec = quantization(cfg)
    return policy_space(net, spec) if spec.enabled else net.space


def make_evaluator(cfg: RunConfig, net: Supernet, bundle: Any, columns: Sequence[str] | None = None,
                   paths: RunPaths | None = None, quantized: bool = True):
    """The run's evaluator (with a screen when ``search.screen_samples`` or ``screen_repeats`` is set); with ``search.quantization``
    it measures INT8 graphs in ONNX Runtime (calibrated ranges cached in the run's ``calibration/`` folder when
    ``paths`` are given); ``quantized=False`` gives the plain FP32 evaluator whatever the run file says."""
    from ..data import loaders
    from ..measure import Evaluator

    cols = list(columns or cfg.search.objectives)
    train_loader, val_loader = loaders(bundle, batch_size=cfg.train.batch_size, seed=cfg.seed)[:2]
    kw = dict(calib_loader=train_loader, eval_loader=val_loader, targets=dict(cfg.targets),
              calib_batches=cfg.search.calib_batches, screen_samples=cfg.search.screen_samples,
              screen_repeats=cfg.search.screen_repeats, screen_z=cfg.search.screen_z)
    spec = quantization(cfg)
    if spec.enabled and quantized:
        from ..quantize import QuantizedEvaluator

        return QuantizedEvaluator(net, cols, quantization=spec, cache_dir=paths.root / "calibration" if paths else None,
                                  **kw)
    return Evaluator(net, cols, **kw)


def strategy_options(options: dict[str, Any], net: Supernet) -> dict[str, Any]:
    """The config's ``search.options`` for the strategy; ``features`` (names of
    :class:`~supernas.predict.FeatureMap` parts) becomes a feature map of the supernet's space, with a cost table
    counted from the supernet when ``costs`` is among them."""
    out = dict(options)
    if out.get("features") is not None:
        from ..predict import as_feature_map

        out["features"] = as_feature_map(net.space, out["features"], supernet=net)
    return out
