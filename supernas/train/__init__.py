"""Supernet training: sandwich rule, in-place distillation, progressive shrinking, BN recalibration."""
from .bn import recalibrate_bn

__all__ = ["recalibrate_bn"]
