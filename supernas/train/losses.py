"""Losses of the sandwich rule: label-smoothed cross-entropy for the teacher, KD for the students."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def per_token(logits: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(batch, length, classes)`` logits (a decoder's) as ``(batch * length, classes)`` rows, labels to match;
    2-D logits unchanged."""
    if logits.dim() <= 2:
        return logits, labels
    return logits.reshape(-1, logits.shape[-1]), None if labels is None else labels.reshape(-1)


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy per example, or per token for a decoder's logits (targets ``-100`` are ignored)."""
    logits, labels = per_token(logits, labels)
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """In-place distillation: KL(teacher || student) of temperature-softened predictions, times T^2 so
    gradients keep their scale (Hinton et al.); the teacher is detached (no gradient flows into it). A
    decoder's logits are distilled token by token."""
    student_logits, teacher_logits = per_token(student_logits)[0], per_token(teacher_logits)[0]
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits.detach() / t, dim=-1),
                    reduction="batchmean", log_target=True) * (t * t)


def student_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                 temperature: float = 1.0, label_weight: float = 0.0, label_smoothing: float = 0.0) -> torch.Tensor:
    """A student's loss: ``(1 - label_weight) * KD + label_weight * label-smoothed cross-entropy``
    (``label_weight`` 0: KD only, as in BigNAS; 1: labels only)."""
    kd = distillation_loss(student_logits, teacher_logits, temperature)
    if not label_weight:
        return kd
    ce = token_cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return (1 - label_weight) * kd + label_weight * ce
