"""Losses of the sandwich rule: label-smoothed cross-entropy for the teacher, KD for the students."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """In-place distillation: KL(teacher || student) of temperature-softened predictions, times T^2 so
    gradients keep their scale (Hinton et al.); the teacher is detached (no gradient flows into it)."""
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
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return (1 - label_weight) * kd + label_weight * ce
