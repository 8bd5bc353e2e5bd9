"""Measurement: cost counts, accuracy, latency per hardware target, memory."""
from .counting import count, count_bytes, count_macs, count_params

__all__ = ["count", "count_bytes", "count_macs", "count_params"]
