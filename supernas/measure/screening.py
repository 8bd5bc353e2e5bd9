"""The evaluator's cheap first tier: accuracy on a seeded random sample of the evaluation data, latency from a
few timed calls, each with a margin.

A screen's sample and the rest of the evaluation set partition it exactly, so a full evaluation that follows a
screen scores only the rest and pools the counts (:func:`pooled`): screening accuracy for a sub-network that
goes on to a full evaluation costs nothing extra. Its margin is ``z`` binomial standard errors of the sample's
accuracy (Agresti-Coull, so it is not zero at 0 % or 100 %), finite-population corrected: 0 when the sample is
the whole set. A latency screen is the median of a few calls; its margin reaches the order statistics that hold
the true median with the confidence of ``z`` (:func:`median_interval`); a full evaluation that follows times only
the calls still missing from its target's repeats and takes the median of all. How a search uses screens:
``supernas.search.tiered``.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from scipy.stats import binom, norm
from torch.utils.data import DataLoader, SequentialSampler, Subset

from ..errors import ConfigError

#: the columns a screen estimates on the sample (every other column it measures in full)
SCREENED = ("accuracy", "top5")


@dataclass(frozen=True)
class ScreenSplit:
    """The evaluation set (its first ``size`` items) cut into the screen's ``sample`` and the ``rest``."""

    sample: DataLoader
    rest: DataLoader | None
    n: int
    size: int


def screen_split(loader: Any, eval_batches: int | None, screen_samples: int, seed: int = 0) -> ScreenSplit:
    """``screen_samples`` of the items ``loader`` evaluates (all, or its first ``eval_batches`` batches), drawn at
    random by ``seed``, and the rest, as loaders with ``loader``'s batch size and collation."""
    if not isinstance(loader, DataLoader) or loader.batch_size is None or not hasattr(loader.dataset, "__len__"):
        raise ConfigError("screening samples the evaluation data: it needs a DataLoader with a batch_size")
    size = len(loader.dataset)  # type: ignore[arg-type]
    if eval_batches is not None:
        if not isinstance(loader.sampler, SequentialSampler):
            raise ConfigError("screening with eval_batches needs an evaluation loader in order (not shuffled)")
        size = min(size, eval_batches * loader.batch_size)
    if loader.drop_last:
        size -= size % loader.batch_size
    n = min(size, screen_samples)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    pick, rest = sorted(order[:n]), sorted(order[n:])

    def part(idx: list[int]) -> DataLoader:
        return DataLoader(Subset(loader.dataset, idx), batch_size=loader.batch_size, collate_fn=loader.collate_fn,
                          num_workers=loader.num_workers)

    return ScreenSplit(part(pick), part(rest) if rest else None, n, size)


def binomial_margin(p: float, n: int, size: int, z: float) -> float:
    """Half-width of a ``z``-sigma interval for a proportion measured as ``p`` on ``n`` of ``size`` items."""
    if n < 1:
        raise ConfigError("a screen needs at least one sample")
    adj = (p * n + z * z / 2) / (n + z * z)  # Agresti-Coull
    fpc = math.sqrt(max(size - n, 0) / max(size - 1, 1))
    return z * math.sqrt(adj * (1 - adj) / (n + z * z)) * fpc


def pooled(a: Mapping[str, float], b: Mapping[str, float] | None) -> dict[str, float]:
    """The scores of two disjoint parts of one set (``evaluate_accuracy`` dicts with ``count``) as one."""
    if b is None:
        return dict(a)
    na, nb = a["count"], b["count"]
    return {k: (a[k] * na + b[k] * nb) / (na + nb) for k in a if k != "count" and k in b} | {"count": na + nb}


def median_interval(times: Sequence[float], z: float) -> tuple[float, float]:
    """(median of ``times``, margin): the distance from the median to the farther of the order statistics
    ``x_(k)``, ``x_(n-k+1)`` with the largest ``k`` whose interval holds the true median with the two-sided
    confidence of ``z`` standard normal errors (``[min, max]`` when no narrower one does)."""
    x = sorted(float(t) for t in times)
    n = len(x)
    if n == 0:
        raise ConfigError("a latency screen needs at least one timed call")
    alpha = 2 * float(norm.sf(z))
    k = 1
    while k + 1 <= n // 2 and binom.cdf(k, n, 0.5) <= alpha / 2:  # P(median < x_(k+1)) small enough
        k += 1
    med = float(statistics.median(x))
    return med, max(med - x[k - 1], x[n - k] - med)
