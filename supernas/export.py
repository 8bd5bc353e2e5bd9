"""Export a chosen sub-network as ordinary, static deployable files, each verified on the spot.

Files written for a sub-network named ``<name>`` (default ``model``):

* ``<name>.onnx``       ONNX with a dynamic batch axis (``batch``), via ``torch.onnx.export``
* ``<name>.pt2``        a ``torch.export`` program; load it with ``torch.export.load(p).module()``
* ``<name>.ts.pt``      TorchScript (only with format ``"torchscript"``); load it with ``torch.jit.load(p)``
* ``<name>.state.pt``   the sub-network's ``state_dict`` (plain tensors, ``torch.load(p, weights_only=True)``)
* ``<name>.json``       the Config, its key, the supernet's arguments, the input shape and the checks

None of them needs supernas to load. One ``torch.export`` trace feeds both the ``.pt2`` program and the
ONNX converter. Every exported file is run on random inputs of two batch sizes and compared with the
PyTorch sub-network (ONNX through ONNX Runtime); a max abs difference above ``atol`` raises ExportError.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, SupernasError
from .supernets import Supernet

FORMATS = ("onnx", "torch", "torchscript")
_SUFFIXES = {"onnx": ".onnx", "torch": ".pt2", "torchscript": ".ts.pt"}
_ONNX_EXTERNAL_DATA_BYTES = 1 << 30  # ONNX protobufs are limited to 2 GiB; keep weights inline below 1 GiB


class ExportError(SupernasError):
    """Exporting a sub-network failed, or an exported file disagrees with the PyTorch sub-network."""


@dataclass(frozen=True)
class ExportCheck:
    """One verification: ``format`` run on ``batch_sizes`` against the PyTorch sub-network."""

    format: str
    runtime: str
    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    max_abs_output: float
    atol: float

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_diff <= self.atol)

    def line(self) -> str:
        batches = ",".join(map(str, self.batch_sizes))
        relation, verdict = ("<=", "ok") if self.passed else (">", "FAILED")
        return (f"{self.format} ({self.runtime}) vs PyTorch on batch {batches}: "
                f"max |diff| {self.max_abs_diff:.2e} {relation} {self.atol:.0e} {verdict}")


@dataclass
class ExportResult:
    """What ``export`` wrote and how each file was verified."""

    name: str
    out_dir: Path
    files: dict[str, Path]
    config: dict[str, Any] | None
    input_shape: tuple[int, ...]
    checks: list[ExportCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.checks), default=0.0)

    @property
    def summary(self) -> str:
        """One line for a human: what was written and the worst check."""
        fmts = ", ".join(p.name for k, p in self.files.items() if k in FORMATS)
        checked = "/".join(c.format for c in self.checks) or "nothing"
        verdict = "ok" if self.passed else "FAILED"
        return (f"exported {self.name} -> {fmts} in {self.out_dir}; checked {checked} on batch "
                f"{','.join(map(str, self.checks[0].batch_sizes)) if self.checks else '-'}: "
                f"max |diff| {self.max_abs_diff:.2e} {verdict}")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "files": {k: p.name for k, p in self.files.items()},
                "config": self.config, "input_shape": list(self.input_shape),
                "checks": [{**asdict(c), "batch_sizes": list(c.batch_sizes), "passed": c.passed}
                           for c in self.checks]}


# --------------------------------------------------------------------------------------------- helpers
def _resolve_target(out: str | Path, name: str | None) -> tuple[Path, str]:
    """``dir/`` -> (dir, name or 'model'); ``dir/knee.onnx`` -> (dir, 'knee')."""
    path = Path(out)
    for suffix in sorted(_SUFFIXES.values(), key=len, reverse=True) + [".json"]:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.parent, name or path.name[: -len(suffix)]
    return path, name or "model"


def _resolve_model(model: nn.Module, cfg: Mapping[str, Any] | None,
                   input_shape: Sequence[int] | None) -> tuple[nn.Module, dict[str, Any] | None,
                                                                  dict[str, Any], tuple[int, ...]]:
    """The static sub-network, its config, a metadata dict and the example input shape."""
    meta: dict[str, Any] = {}
    if isinstance(model, Supernet):
        config = model.space.validate(cfg if cfg is not None else model.active)
        sub = model.extract(config)
        meta = {"key": model.space.key(config), "supernet": _jsonable(model.arch)}
        shape = tuple(input_shape) if input_shape is not None else model.input_shape(config)
    elif isinstance(model, nn.Module):
        sub = model
        config = dict(cfg) if cfg is not None else getattr(model, "supernas_config", None)
        if config is not None:
            meta = {"key": json.dumps(config, sort_keys=True, separators=(",", ":"))}
        if input_shape is None:
            raise ConfigError("export of a plain nn.Module needs input_shape, e.g. (1, 3, 32, 32)")
        shape = tuple(int(s) for s in input_shape)
    else:
        raise ConfigError(f"export needs a Supernet or an nn.Module, got {type(model).__name__}")
    if len(shape) < 1 or any(int(s) < 1 for s in shape):
        raise ConfigError(f"input_shape must be positive integers with a batch axis first, got {shape}")
    return sub, config, meta, shape


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, (tuple, set)) else str(o)))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress prints, warnings and log lines (errors still raise)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _as_numpy(out: Any) -> np.ndarray:
    if isinstance(out, (tuple, list)):
        if len(out) != 1:
            raise ExportError(f"export supports models with one output tensor, got {len(out)}")
        out = out[0]
    return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


# ---------------------------------------------------------------------------------------------- writers
def _torch_export(sub: nn.Module, example: torch.Tensor, dynamic: Mapping[int, tuple[str, int, int]]
                  ) -> torch.export.ExportedProgram:
    axes = {0: torch.export.Dim("batch", min=1, max=1 << 16),
            **{ax: torch.export.Dim(n, min=lo, max=hi) for ax, (n, lo, hi) in dynamic.items()}}
    try:
        with _quiet():
            return torch.export.export(sub, (example,), dynamic_shapes=(axes,))
    except Exception as e:  # torch raises many kinds; the user gets one line
        raise ExportError(f"torch.export could not trace the sub-network: {_first_line(e)}") from e


def _write_onnx(program: torch.export.ExportedProgram, example: torch.Tensor, path: Path,
                opset: int | None, n_bytes: int) -> None:
    import onnx

    try:
        with _quiet():
            torch.onnx.export(program, (example,), str(path), input_names=["input"], output_names=["output"],
                              opset_version=opset, external_data=n_bytes > _ONNX_EXTERNAL_DATA_BYTES,
                              optimize=True, verbose=False)
    except Exception as e:
        raise ExportError(f"ONNX conversion failed: {_first_line(e)}") from e
    model = onnx.load(str(path), load_external_data=False)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    old = dim.dim_param
    if old and old != "batch":  # give the dynamic axis a readable name everywhere it appears
        for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
            for d in value.type.tensor_type.shape.dim:
                if d.dim_param == old:
                    d.dim_param = "batch"
        onnx.save(model, str(path))
    onnx.checker.check_model(str(path))


def _write_torchscript(sub: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        with _quiet():
            try:
                scripted = torch.jit.script(sub)
            except Exception:  # modules using Python features TorchScript lacks: trace instead
                scripted = torch.jit.trace(sub, example, check_trace=False)
            torch.jit.save(scripted, str(path))
    except Exception as e:
        raise ExportError(f"TorchScript export failed: {_first_line(e)}") from e


# ------------------------------------------------------------------------------------------------ check
def _runner(fmt: str, path: Path) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """Load an exported file the way a user would and return (runtime name, run function)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return f"onnxruntime {ort.__version__}", lambda x: session.run(None, {name: x})[0]
    if fmt == "torch":
        with _quiet():
            module = torch.export.load(str(path)).module()
    else:
        with _quiet():  # torch 2.13 marks torch.jit deprecated; loading still works
            module = torch.jit.load(str(path))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return _as_numpy(module(torch.from_numpy(x)))

    return ("torch.export" if fmt == "torch" else "torch.jit"), run


def normal_input(shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """The default example/check input: standard normal values of ``shape``."""
    return torch.randn(tuple(shape), generator=generator)


def _check_shapes(input_shape: Sequence[int], batch_sizes: Sequence[int],
                  dynamic: Mapping[int, tuple[str, int, int]]) -> list[tuple[int, ...]]:
    """Every batch size at the example shape, plus each other dynamic axis at about half its size."""
    shapes = [(int(b), *map(int, input_shape[1:])) for b in batch_sizes]
    for ax, (_, lo, _hi) in dynamic.items():
        shape = list(shapes[-1])
        shape[ax] = max(lo, int(input_shape[ax]) // 2)
        shapes.append(tuple(shape))
    return list(dict.fromkeys(shapes))


def verify(sub: nn.Module, fmt: str, path: Path, input_shape: Sequence[int], *,
           batch_sizes: Sequence[int] = (1, 3), atol: float = 1e-4, seed: int = 0,
           make_input: Callable[[Sequence[int], torch.Generator], torch.Tensor] | None = None,
           dynamic: Mapping[int, tuple[str, int, int]] | None = None) -> ExportCheck:
    """Compare an exported file with the PyTorch sub-network on seeded random inputs (``make_input(shape,
    generator)``, default standard normal) of every batch size and dynamic axis size."""
    runtime, run = _runner(fmt, path)
    gen = torch.Generator().manual_seed(seed)
    make = make_input or normal_input
    diff, scale = 0.0, 0.0
    for shape in _check_shapes(input_shape, batch_sizes, dynamic or {}):
        b = shape[0]
        x = make(shape, gen)
        with torch.no_grad():
            want = _as_numpy(sub(x))
        try:
            got = np.asarray(run(x.numpy()))
        except Exception as e:
            raise ExportError(f"{path.name} failed to run on input {tuple(shape)}: {_first_line(e)}") from e
        if got.shape != want.shape:
            raise ExportError(f"{path.name} returned shape {got.shape} on input {tuple(shape)}, PyTorch gives "
                              f"{want.shape}")
        diff = max(diff, float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0)))
        scale = max(scale, float(np.max(np.abs(want), initial=0.0)))
    return ExportCheck(fmt, runtime, tuple(int(b) for b in batch_sizes), diff, scale, atol)


# ------------------------------------------------------------------------------------------------ main
def export(model: nn.Module, cfg: Mapping[str, Any] | None, out: str | Path, *,
           formats: Sequence[str] = ("onnx", "torch"), input_shape: Sequence[int] | None = None,
           check: bool = True, opset: int | None = None, name: str | None = None,
           batch_sizes: Sequence[int] = (1, 3), atol: float = 1e-4, seed: int = 0,
           make_input: Callable[[Sequence[int], torch.Generator], torch.Tensor] | None = None,
           dynamic: Mapping[int, tuple[str, int, int]] | None = None,
           meta: Mapping[str, Any] | None = None) -> ExportResult:
    """Export sub-network ``cfg`` of a Supernet (or a static ``nn.Module``; ``cfg`` is then only recorded).

    ``out`` is a directory (files named ``name`` or ``model``) or a file path such as ``run/knee.onnx``
    (files named after its stem). ``formats`` picks from ``onnx``, ``torch`` (torch.export ``.pt2``) and
    ``torchscript``; the state_dict and the Config JSON are always written. ``input_shape`` includes the
    batch axis (its value is only an example; the batch is dynamic) and defaults to the supernet's.
    With ``check`` every file is compared with the PyTorch sub-network on random inputs of
    ``batch_sizes``; a max abs difference above ``atol`` raises ExportError after the files are written.
    ``make_input(shape, generator)`` makes example/check inputs and ``dynamic`` names input axes kept
    dynamic besides the batch (``{axis: (name, min, max)}``); for a Supernet both default to its
    ``random_input`` / ``dynamic_axes`` (text: token ids, dynamic sequence length). ``meta`` is added to
    the ``.json``.
    """
    fmts = tuple(dict.fromkeys(formats))
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ConfigError(f"unknown export format {bad[0] if bad else '(none)'!r}; known: {', '.join(FORMATS)}")
    if check and (len(batch_sizes) == 0 or min(batch_sizes) < 1):
        raise ConfigError(f"batch_sizes must be positive integers, got {tuple(batch_sizes)}")
    out_dir, stem = _resolve_target(out, name)
    sub, config, info_meta, shape = _resolve_model(model, cfg, input_shape)
    if isinstance(model, Supernet):
        make_input = make_input or model.random_input
        dynamic = dynamic if dynamic is not None else model.dynamic_axes()
    make = make_input or normal_input
    dynamic = dict(dynamic or {})
    was_training = sub.training
    sub.eval()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        example = make((max(2, shape[0]), *shape[1:]), torch.Generator().manual_seed(seed))
        if "onnx" in fmts or "torch" in fmts:
            program = _torch_export(sub, example, dynamic)
            if "torch" in fmts:
                files["torch"] = out_dir / f"{stem}{_SUFFIXES['torch']}"
                with _quiet():
                    torch.export.save(program, str(files["torch"]))
            if "onnx" in fmts:
                files["onnx"] = out_dir / f"{stem}{_SUFFIXES['onnx']}"
                n_bytes = sum(t.numel() * t.element_size() for t in sub.state_dict().values())
                _write_onnx(program, example, files["onnx"], opset, n_bytes)
                weights = files["onnx"].with_name(files["onnx"].name + ".data")
                if n_bytes > _ONNX_EXTERNAL_DATA_BYTES and weights.exists():  # weights beside the graph
                    files["onnx_data"] = weights
        if "torchscript" in fmts:
            files["torchscript"] = out_dir / f"{stem}{_SUFFIXES['torchscript']}"
            _write_torchscript(sub, example, files["torchscript"])
        files["state_dict"] = out_dir / f"{stem}.state.pt"
        torch.save({k: v.detach().cpu().clone() for k, v in sub.state_dict().items()}, files["state_dict"])
        files["config"] = out_dir / f"{stem}.json"
        result = ExportResult(stem, out_dir, files, _jsonable(config) if config is not None else None, shape)
        if check:
            result.checks = [verify(sub, f, files[f], shape, batch_sizes=batch_sizes, atol=atol, seed=seed + 1,
                                    make_input=make, dynamic=dynamic) for f in fmts]
        info = {**result.to_json(), **info_meta, "input_dtype": str(example.dtype).removeprefix("torch."),
                "dynamic_axes": {str(a): n for a, (n, _, _) in dynamic.items()}, **(meta or {}),
                "summary": result.summary, "torch": torch.__version__}
        files["config"].write_text(json.dumps(info, indent=2) + "\n")
    finally:
        sub.train(was_training)
    if not result.passed:
        failed = next(c for c in result.checks if not c.passed)
        raise ExportError(f"export check failed: {failed.line()}")
    return result
