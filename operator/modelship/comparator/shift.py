"""Output shift: how far canary's answers moved from stable's over a window, as a population stability index.

PSI = sum over bins of (c - s) * ln(c / s), with s and c the shares of stable's and canary's values in each bin.
Why PSI: it is the statistic model-monitoring teams already gate on (credit risk, feature drift), it is symmetric,
bounded for a fixed bin count, and has thresholds people know: < 0.1 no real change, 0.1-0.25 a moderate one,
> 0.25 a major shift. A Kolmogorov-Smirnov test would flag tiny, harmless moves once the window holds a few
thousand values; PSI measures how much mass moved, not how sure we are that something moved.

Numeric outputs: ten bins at the deciles of stable's values (edges deduplicated, so a constant stable output
gives two bins: at or below the value, above it); canary's values are counted in the same bins.
Class outputs (Argmax/TopK mode) and BYTES: one bin per category seen on either side.
Each share is smoothed by `SMOOTHING` so an empty bin does not make the index infinite.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BINS = 10
SMOOTHING = 1e-4
MIN_VALUES = 20
"""Fewer values on either side and there is no index: a handful of answers cannot show a distribution."""


def _index(stable: npt.NDArray[np.float64], canary: npt.NDArray[np.float64]) -> float:
    stable_share = (stable + SMOOTHING) / (stable.sum() + SMOOTHING * stable.size)
    canary_share = (canary + SMOOTHING) / (canary.sum() + SMOOTHING * canary.size)
    return float(np.sum((canary_share - stable_share) * np.log(canary_share / stable_share)))


def decile_edges(stable: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Inner bin edges: stable's deciles, deduplicated (values at an edge fall in the bin below it)."""
    edges: npt.NDArray[np.float64] = np.unique(np.quantile(stable, np.linspace(0.0, 1.0, BINS + 1)[1:-1]))
    return edges


def psi_numeric(stable: npt.NDArray[np.float64], canary: npt.NDArray[np.float64]) -> float | None:
    """PSI of canary's numeric values against stable's deciles; None while either side has too few finite values."""
    stable = stable[np.isfinite(stable)]
    canary = canary[np.isfinite(canary)]
    if stable.size < MIN_VALUES or canary.size < MIN_VALUES:
        return None
    edges = decile_edges(stable)
    bins = edges.size + 1
    stable_counts = np.bincount(np.searchsorted(edges, stable, side="left"), minlength=bins).astype(np.float64)
    canary_counts = np.bincount(np.searchsorted(edges, canary, side="left"), minlength=bins).astype(np.float64)
    return _index(stable_counts, canary_counts)


def psi_categorical(stable: Iterable[Hashable], canary: Iterable[Hashable]) -> float | None:
    """PSI over categories (predicted classes, BYTES values): one bin per category seen on either side."""
    stable_counts, canary_counts = Counter(stable), Counter(canary)
    if sum(stable_counts.values()) < MIN_VALUES or sum(canary_counts.values()) < MIN_VALUES:
        return None
    categories = sorted(set(stable_counts) | set(canary_counts), key=repr)
    return _index(
        np.array([stable_counts[c] for c in categories], dtype=np.float64),
        np.array([canary_counts[c] for c in categories], dtype=np.float64),
    )


@dataclass(frozen=True)
class Summary:
    """What a human reads to see how the answers moved: mean and p5/p50/p95 of one side's values."""

    count: int
    mean: float
    p5: float
    p50: float
    p95: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "p5": self.p5, "p50": self.p50, "p95": self.p95}


def summarize(values: npt.NDArray[np.float64]) -> Summary | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    p5, p50, p95 = np.quantile(finite, [0.05, 0.5, 0.95])
    return Summary(int(finite.size), float(finite.mean()), float(p5), float(p50), float(p95))
