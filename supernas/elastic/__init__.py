"""Elastic operators (kernel, width, depth) and channel re-ordering helpers."""
from .ops import (ElasticBatchNorm2d, ElasticConv2d, ElasticDepth, ElasticLinear, ElasticSqueezeExcite,
                  ResidualBlock, SqueezeExcite, importance_order, make_divisible, permute_in, permute_out)

__all__ = ["ElasticBatchNorm2d", "ElasticConv2d", "ElasticDepth", "ElasticLinear", "ElasticSqueezeExcite",
           "ResidualBlock", "SqueezeExcite", "importance_order", "make_divisible", "permute_in", "permute_out"]
