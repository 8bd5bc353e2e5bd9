"""Supernet training: sandwich rule, in-place distillation, progressive shrinking, BN recalibration,
atomic checkpoints with exact resume, torchrun/DDP."""
from .bn import recalibrate_bn, zero_init_residual
from .checkpoint import load_checkpoint, load_supernet, save_checkpoint
from .config import TrainConfig, TrainingError
from .evaluate import evaluate_accuracy, subnet_accuracy
from .losses import distillation_loss, student_loss
from .sampling import progressive_phases, restrict, sample_by_choice, step_configs
from .trainer import TrainResult, make_optimizer, make_scheduler, sandwich_step, train

__all__ = ["TrainConfig", "TrainResult", "TrainingError", "distillation_loss", "evaluate_accuracy", "load_checkpoint", "load_supernet",
           "make_optimizer", "make_scheduler", "progressive_phases", "recalibrate_bn", "restrict", "sample_by_choice",
           "sandwich_step", "save_checkpoint", "step_configs", "student_loss", "subnet_accuracy", "train",
           "zero_init_residual"]
