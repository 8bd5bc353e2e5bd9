"""Training configuration (pydantic, validated: a bad value is one ConfigError line) and training errors."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError, SupernasError, validation_problem


class TrainingError(SupernasError):
    """Training cannot go on (non-finite loss, no data, ...); the last good checkpoint is kept."""


class TrainConfig(BaseModel):
    """Every knob of :func:`supernas.train.train`; embeddable in a run's YAML file."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=1)
    rule: Literal["sandwich", "largest", "random"] = "sandwich"
    num_random: int = Field(2, ge=0, description="random sub-networks per step besides largest and smallest")
    sampler: Literal["choice", "uniform"] = Field(
        "choice", description="'choice': every choice uniform on its own (OFA); 'uniform': uniform over "
                              "distinct sub-networks (favours the deepest ones)")
    distill: bool = True
    distill_temperature: float = Field(1.0, gt=0)
    distill_label_weight: float = Field(
        0.0, ge=0, le=1, description="students learn (1 - w) * KD + w * label-smoothed cross-entropy")
    progressive: bool = False
    phase_epochs: list[int] | None = Field(
        None, description="epochs per progressive phase (full, kernel, depth, expand); default: equal parts")
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(4e-5, ge=0)
    no_decay_bn_bias: bool = True
    zero_init_residual: bool = Field(
        False, description="start every residual block as the identity (last batch-norm scale 0; BigNAS); "
                           "for training from scratch, not for pretrained weights")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    warmup_epochs: float = Field(0.0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    grad_clip: float | None = Field(None, gt=0)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    num_threads: int | None = Field(None, ge=1, le=1024, description="torch CPU threads (default: leave as is)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="mixed precision on CUDA (float16 with loss scaling)")
    cpu_amp: Literal["off", "bf16", "auto"] = Field(
        "off", description="bfloat16 autocast on CPU: 'bf16' always, 'auto' where the CPU has native bfloat16 (AMX "
                           "or AVX-512 BF16: there convolutions train ~1.9-2.6x faster; without it bf16 is slower "
                           "than float32). "
                           "Dense convolutions stay bit-reproducible; PyTorch's bf16 depthwise backward (mbv3) is not")
    channels_last: bool = Field(
        True, description="train with NHWC activations and weights (about 2x faster convolutions on CPUs "
                          "and on GPUs with AMP); the trained weights are returned in the usual layout")
    eval_every: int = Field(1, ge=0, description="validate largest/smallest every N epochs (0: never)")
    bn_calib_batches: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.phase_epochs is not None and sum(self.phase_epochs) != self.epochs:
            raise ValueError(f"phase_epochs {self.phase_epochs} must sum to epochs={self.epochs}")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} must be below epochs={self.epochs}")
        return self

    @classmethod
    def make(cls, config: "TrainConfig | dict[str, Any] | None" = None, **overrides: Any) -> "TrainConfig":
        """Build from a config object/dict plus keyword overrides; invalid values raise ConfigError."""
        base = config.model_dump() if isinstance(config, TrainConfig) else dict(config or {})
        base.update(overrides)
        try:
            return cls(**base)
        except ValidationError as e:
            where, what = validation_problem(e, "train config")
            raise ConfigError(f"invalid training setting {where}: {what}") from None
