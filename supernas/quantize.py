"""INT8 sub-networks with ONNX Runtime's own quantization tooling, and the quantization policy as a search choice.

A sub-network is exported to ONNX (node names carry module paths, see :func:`~supernas.measure.onnx_model.
onnx_bytes`), pre-processed (``quant_pre_process``: shape inference, graph optimisation) and quantized:

* ``static`` families (convolutional: mbv3, resnet): QDQ format, per-channel INT8 weights, INT8 activations
  whose ranges are calibrated on ``calib_batches`` training batches (``minmax``, ``entropy`` or
  ``percentile``). Calibrated ranges are cached per graph (the key hashes the FP32 graph, its weights and
  the calibration inputs), so the policies of one sub-network share one calibration.
* ``dynamic`` families (transformers: bert, vit): INT8 weights of the matrix products, activations quantized
  per batch at run time.

A *policy* gives every block of the sub-network (:meth:`Supernet.block_modules`: ``stem``, ``stage2.block1``,
``layer3``, ``head`` ...) a precision, ``int8`` or ``fp32``; the nodes of FP32 blocks are excluded from
quantization. With ``policy: per-block`` the search space gains one choice ``<block>.precision`` per block,
active exactly when the block is, so every strategy searches architecture and policy together.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from .errors import ConfigError, SupernasError, validation_problem
from .measure.evaluator import Evaluator
from .measure.machine import cpu_flags
from .measure.objectives import get_objective, split_column
from .measure.onnx_model import OnnxModel, onnx_bytes
from .measure.targets import TargetSpec
from .space import Choice, Config, SearchSpace
from .supernets import Supernet

PRECISIONS = ("int8", "fp32")  # smallest first, like every option list
PRECISION = "precision"  # the choice suffix: ``stage2.block1.precision``


class QuantizationError(SupernasError):
    """A sub-network could not be quantized (or its quantized graph could not be built)."""


class QuantizationSpec(BaseModel):
    """How sub-networks are quantized (``search.quantization`` in a run file).

    ``policy``: ``none`` (FP32), ``int8`` (every block INT8 except ``keep_fp32``) or ``per-block`` (a searched
    precision per block). ``mode`` ``auto`` takes the family's (static for convolutions, dynamic for
    transformers). ``calib_batches`` training batches calibrate static activation ranges with ``method``.
    ``activations`` ``uint8`` (with INT8 weights: ONNX Runtime's fast U8S8 kernels on x86; on the development
    VM a CIFAR ResNet's INT8 graph ran 2.8x faster than FP32 with uint8 activations, 0.9x with int8).
    ``fp32_share`` (``per-block``): the probability that a random sample keeps a block FP32 (the precision
    choices' prior; default one block per sub-network on average): INT8 is the default a search departs from,
    not a coin flip per block (uniform precisions left half the blocks FP32 and the co-search behind all-INT8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["none", "int8", "per-block"] = "none"
    mode: Literal["auto", "static", "dynamic"] = "auto"
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calib_batches: int = Field(8, ge=1, le=10_000)
    per_channel: bool = True
    activations: Literal["uint8", "int8"] = "uint8"
    keep_fp32: tuple[str, ...] = ()
    fp32_share: float | None = Field(None, ge=0, le=1)

    @property
    def enabled(self) -> bool:
        return self.policy != "none"


def quantization_spec(spec: QuantizationSpec | Mapping[str, Any] | str | None) -> QuantizationSpec:
    """A validated spec from a spec, a mapping or a policy name; bad values raise one-line ConfigErrors."""
    if isinstance(spec, QuantizationSpec):
        return spec
    data = {"policy": spec} if isinstance(spec, str) else dict(spec or {})
    try:
        return QuantizationSpec(**data)
    except ValidationError as e:
        where, what = validation_problem(e, "quantization")
        raise ConfigError(f"quantization: {where}: {what} (got {e.errors()[0].get('input')!r})") from None


# ------------------------------------------------------------------------------------------ the policy
def family_mode(supernet: Supernet, spec: QuantizationSpec) -> str:
    """``static`` or ``dynamic`` for ``supernet``; a family that cannot be quantized raises one ConfigError."""
    if supernet.quantization is None:
        raise ConfigError(f"supernet family {supernet.family!r} cannot be quantized (families that can: "
                          f"mbv3, resnet, bert, vit)")
    return supernet.quantization if spec.mode == "auto" else spec.mode


def precision_choices(supernet: Supernet, spec: QuantizationSpec | None = None) -> list[Choice]:
    """One ``<block>.precision`` choice per block of the largest sub-network, active when the block is,
    sampled FP32 with probability ``spec.fp32_share`` (default 1 / blocks)."""
    blocks = supernet.block_modules(supernet.space.largest())
    share = spec.fp32_share if spec is not None and spec.fp32_share is not None else 1 / max(len(blocks), 1)
    prior = (1 - share, share)  # the order of PRECISIONS
    out = []
    for block in blocks:
        conds = {c.active_if for c in supernet.space.choices if c.name.startswith(block + ".")}
        out.append(Choice(f"{block}.{PRECISION}", PRECISIONS, next(iter(conds)) if len(conds) == 1 else None,
                          prior))
    return out


def policy_space(supernet: Supernet, spec: QuantizationSpec) -> SearchSpace:
    """The space a search explores: the supernet's, plus a precision per block with ``per-block``."""
    family_mode(supernet, spec)
    blocks = supernet.block_modules(supernet.space.largest())
    unknown = set(spec.keep_fp32) - set(blocks)
    if unknown:
        raise ConfigError(f"quantization.keep_fp32: unknown block {sorted(unknown)[0]!r}; blocks: "
                          f"{', '.join(blocks)}")
    if spec.policy != "per-block":
        return supernet.space
    return SearchSpace(list(supernet.space.choices) + precision_choices(supernet, spec))


def column_problem(columns: Sequence[str], targets: Mapping[str, TargetSpec]) -> str | None:
    """Why a quantized model cannot be measured for one of metric ``columns`` (``targets`` by name), or None:
    ``peak_mem`` is measured on PyTorch models, and per-target columns need an ``onnxruntime`` target."""
    for col in columns:
        name, target = split_column(col)
        if name == "peak_mem":
            return "peak_mem is not measured for quantized models; leave it out of the objectives"
        if get_objective(col).per_target and target in targets and targets[target].backend != "onnxruntime":
            return (f"{col!r} times PyTorch ({targets[target].backend}); INT8 models are timed on an "
                    f"onnxruntime target (e.g. latency_ms@onnxruntime)")
    return None


def split_config(supernet: Supernet, cfg: Mapping[str, Any]) -> tuple[Config, dict[str, str]]:
    """(the architecture part of ``cfg``, ``{block: precision}`` from its ``<block>.precision`` choices)."""
    arch = {k: v for k, v in cfg.items() if k in supernet.space}
    policy = {k[: -len(PRECISION) - 1]: v for k, v in cfg.items() if k not in supernet.space}
    return arch, policy


def fp32_blocks(supernet: Supernet, arch: Config, policy: Mapping[str, str], spec: QuantizationSpec) -> list[str]:
    """The blocks of sub-network ``arch`` kept in FP32 under ``policy`` (and ``spec.keep_fp32``)."""
    blocks = supernet.block_modules(arch)
    if spec.policy == "per-block":
        return [b for b in blocks if policy.get(b, "int8") == "fp32" or b in spec.keep_fp32]
    return [b for b in blocks if b in spec.keep_fp32]


def scope_paths(node_name: str) -> list[str]:
    """The module paths on a TorchScript-exported node's scope, outermost first. The exporter names each scope
    relative to the nearest enclosing module that is not a container, so containers repeat their parent's
    prefix: ``/1/blocks/blocks.0/dw/dw.0/Conv`` -> ``1``, ``1.blocks``, ``1.blocks.0``, ``1.blocks.0.dw``,
    ``1.blocks.0.dw.0``."""
    paths: list[str] = []
    base = prev = ""
    for part in node_name.split("/")[1:-1]:
        if not (prev and part.startswith(prev + ".")):  # named inside the previous scope, not beside it
            base = paths[-1] if paths else ""
        paths.append(f"{base}.{part}" if base else part)
        prev = part
    return paths


def block_nodes(model_bytes: bytes, blocks: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """``{block: names of its graph nodes}``: a node belongs to the block one of whose module paths is on its
    scope (``/blocks/blocks.0/conv/Conv`` is in the block of module ``blocks.0``; ``/1/blocks/blocks.0/...``
    in that of ``1.blocks.0``, a network behind a resolution's ``InputResize``)."""
    import onnx

    out: dict[str, list[str]] = {b: [] for b in blocks}
    owner = {path: b for b, paths in blocks.items() for path in paths}
    for node in onnx.load_from_string(model_bytes).graph.node:
        for path in scope_paths(node.name):
            if path in owner:
                out[owner[path]].append(node.name)
                break
    return out


# ---------------------------------------------------------------------------------------- quantizing
def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:24]


class _Batches:
    """ONNX Runtime's CalibrationDataReader over a list of input arrays."""

    def __init__(self, name: str, arrays: Sequence[np.ndarray]) -> None:
        self.name, self.arrays, self.i = name, list(arrays), 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.arrays):
            return None
        self.i += 1
        return {self.name: self.arrays[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def calibration_inputs(loader: Iterable, batches: int) -> list[np.ndarray]:
    """The inputs of the first ``batches`` batches of ``loader`` (training split, evaluation transforms)."""
    out = []
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        out.append(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
    if not out:
        raise ConfigError("static quantization needs calibration batches; the calibration loader is empty")
    return out


def quantize_graph(fp32: bytes, mode: str, spec: QuantizationSpec, exclude: Sequence[str],
                   calib: Sequence[np.ndarray] | None, cache_dir: str | Path | None = None) -> bytes:
    """The INT8 graph of the FP32 graph ``fp32`` (nodes ``exclude`` left in FP32). Static mode calibrates on
    ``calib``; with ``cache_dir`` the calibrated ranges are kept there, keyed by graph and inputs."""
    import inspect

    import onnx
    from onnxruntime import quantization as q

    methods = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
               "percentile": q.CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="supernas-q-") as tmp:
        src, pre, dst = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(src).write_bytes(fp32)
        try:
            q.quant_pre_process(src, pre, skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - optimisation is an aid; quantize the exported graph as it is
            pre = src
        try:
            if mode == "dynamic":
                q.quantize_dynamic(pre, dst, weight_type=q.QuantType.QInt8, per_channel=spec.per_channel,
                                   nodes_to_exclude=list(exclude), op_types_to_quantize=["MatMul", "Gemm"])
            else:
                if calib is None:
                    raise ConfigError("static quantization needs calibration inputs")
                kw: dict[str, Any] = {}
                if cache_dir is not None and "calibration_cache_path" in inspect.signature(q.quantize_static).parameters:
                    arrays = b"".join(a.tobytes() for a in calib)
                    key = _digest(fp32, arrays, spec.method.encode(), str(spec.per_channel).encode())
                    Path(cache_dir).mkdir(parents=True, exist_ok=True)
                    kw["calibration_cache_path"] = str(Path(cache_dir) / f"{key}.json")
                name = onnx.load(pre, load_external_data=False).graph.input[0].name
                q.quantize_static(pre, dst, _Batches(name, calib), quant_format=q.QuantFormat.QDQ,
                                  per_channel=spec.per_channel, activation_type=q.QuantType.QUInt8 if spec.activations == "uint8"
                                  else q.QuantType.QInt8,
                                  weight_type=q.QuantType.QInt8, nodes_to_exclude=list(exclude),
                                  calibrate_method=methods[spec.method], **kw)
        except SupernasError:
            raise
        except Exception as e:  # ONNX Runtime raises many kinds; the user gets one line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise QuantizationError(f"ONNX Runtime could not quantize the sub-network: {first}") from e
        return Path(dst).read_bytes()


def quantize_subnet(supernet: Supernet, arch: Mapping[str, Any], model: nn.Module, spec: QuantizationSpec, *,
                    policy: Mapping[str, str] | None = None, calib: Sequence[np.ndarray] | None = None,
                    cache_dir: str | Path | None = None) -> OnnxModel:
    """The quantized :class:`OnnxModel` of sub-network ``arch`` (``model``: its prepared, BN-recalibrated
    static module) under ``policy`` ``{block: precision}``."""
    arch = supernet.space.validate(arch)
    mode = family_mode(supernet, spec)
    example = supernet.example_input(arch, batch=2)
    dynamic = {0: "batch", **{ax: name for ax, (name, _, _) in supernet.dynamic_axes().items()}}
    fp32 = onnx_bytes(model, example, dynamic=dynamic)  # at the sub-network's resolution: no resize inside
    resize = supernet.input_resize(arch)
    blocks = supernet.block_modules(arch)
    keep = fp32_blocks(supernet, arch, policy or {}, spec)
    nodes = block_nodes(fp32, blocks) if keep else {}
    if keep and not any(nodes.values()):
        raise QuantizationError("cannot find the sub-network's blocks in its ONNX graph (node names carry no "
                                "module paths), so a per-block policy cannot be applied")
    exclude = [n for b in keep for n in nodes[b]]
    if len(keep) == len(blocks):
        graph, precision = fp32, "fp32"
    else:
        if mode == "static" and calib is not None and resize is not None:  # calibrate at the graph's input size
            with torch.no_grad():
                calib = [resize(torch.from_numpy(a)).numpy() for a in calib]
        graph = quantize_graph(fp32, mode, spec, exclude, calib if mode == "static" else None, cache_dir)
        precision = "mixed" if keep else "int8"
    info = {"mode": mode, "method": spec.method if mode == "static" else None, "per_channel": spec.per_channel,
            "activations": spec.activations if mode == "static" else "dynamic",
            "fp32_blocks": keep, "blocks": list(blocks), "cpu_flags": cpu_flags()}
    return OnnxModel(graph, model, precision, threads=torch.get_num_threads(), info=info, input_adapter=resize)


def agreement(reference: nn.Module, deployed: nn.Module, inputs: Iterable[torch.Tensor]) -> dict[str, float]:
    """How a deployed (e.g. INT8) model agrees with its FP32 ``reference`` on ``inputs``: the fraction of
    samples with the same top-1 class and the max absolute logit difference (reported, not asserted)."""
    same = total = 0
    diff = 0.0
    with torch.inference_mode():
        for x in inputs:
            want, got = reference.eval()(x), deployed(x)
            same += int((want.argmax(-1) == got.argmax(-1)).sum())
            total += int(want.shape[0])
            diff = max(diff, float((want.float() - got.float()).abs().max()))
    if total == 0:
        raise ConfigError("agreement needs at least one input batch")
    return {"top1_agreement": same / total, "max_logit_diff": diff}


# ------------------------------------------------------------------------------------------ evaluating
class QuantizedEvaluator(Evaluator):
    """An :class:`Evaluator` of quantized sub-networks: each config (architecture, plus ``<block>.precision``
    choices with ``per-block``) is extracted, BN-recalibrated, quantized, and every column is measured on
    the INT8 graph in ONNX Runtime (accuracy on the evaluation split, ``latency_ms`` on ``onnxruntime``
    targets, ``bytes`` of its initialisers; MACs and parameters of the architecture). ``space`` is the space
    to search. Calibrated ranges are cached under ``cache_dir`` when given."""

    def __init__(self, supernet: Supernet, columns: Sequence[str], *,
                 quantization: QuantizationSpec | Mapping[str, Any] | str = "int8",
                 cache_dir: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(supernet, columns, **kwargs)
        self.spec = quantization_spec(quantization)
        if not self.spec.enabled:
            raise ConfigError("QuantizedEvaluator needs a quantization policy (int8 or per-block), not none")
        self.space = policy_space(supernet, self.spec)
        self.mode = family_mode(supernet, self.spec)
        self.cache_dir = cache_dir
        problem = column_problem(self.columns, self.targets)
        if problem:
            raise ConfigError(problem)
        if self.mode == "static" and self.calib_loader is None:
            raise ConfigError("static quantization needs calibration data (data= or calib_loader=)")
        self._calib: list[np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_calib": None}

    @property
    def needs_weights(self) -> bool:
        return True  # activation ranges and INT8 rounding depend on the (recalibrated) weights

    def calibration(self) -> list[np.ndarray] | None:
        if self.mode != "static":
            return None
        if self._calib is None:
            self._calib = calibration_inputs(self.calib_loader, self.spec.calib_batches)  # type: ignore[arg-type]
        return self._calib

    def deploy(self, cfg: Mapping[str, Any]) -> tuple[Config, OnnxModel]:
        """(architecture config, quantized model) of ``cfg``, a config of ``space``; an architecture without
        ``<block>.precision`` choices (a preset of the supernet, say) is quantized all-INT8."""
        if self.spec.policy == "per-block":
            cfg = {**{c.name: "int8" for c in self.space.choices if c.name not in self.supernet.space}, **cfg}
        arch, policy = split_config(self.supernet, self.space.validate(cfg))  # type: ignore[arg-type]
        model = self.prepare(arch)
        return arch, quantize_subnet(self.supernet, arch, model, self.spec, policy=policy,  # type: ignore[arg-type]
                                     calib=self.calibration(), cache_dir=self.cache_dir)

    def model(self, cfg: Mapping[str, Any]) -> tuple[Config, nn.Module, nn.Module | None]:
        """(architecture config, the quantized graph, the prepared float sub-network it was made from)."""
        arch, deployed = self.deploy(cfg)
        return arch, deployed, deployed.float_model
