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
