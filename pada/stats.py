"""Paired bootstrap confidence intervals for "method minus baseline" on the same test items.

`compare` reports each method's test metric against vanilla fine-tuning. Both
were scored on the same fixed test set (validation and test do not depend on
the seed), so the right question is about the per-item differences: resample
test items with replacement, recompute the mean difference each time, and
take the 2.5th and 97.5th percentiles of those means (percentile bootstrap).

Several seeds: the differences form a (seeds x items) matrix, paired by seed
and item (method at seed s against vanilla at seed s, on item i). The
bootstrap resamples *items* and keeps every seed of a drawn item together
(a cluster bootstrap), which is the same as resampling the items' seed-
averaged differences. Why not pool the seeds' differences as if they were
independent items: one item is the same question at every seed, so its
differences are correlated across seeds, and pooling them would count one
question several times and make the interval too narrow. Why not resample
seeds too: with the 2-5 seeds a comparison can afford, a bootstrap over seeds
says little; the spread over seeds is reported as its own column (standard
deviation of the per-seed test metric). So the interval is about the choice of
test items, for the seeds that were run.

Deterministic: a fixed RNG seed, so a table is reproducible to the digit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000  # bootstrap resamples: percentiles of the 95% interval move by < 0.1 point beyond this
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0  # fixed, so the same scores always give the same interval
_CHUNK_CELLS = 4_000_000  # resamples x items drawn at once: bounds memory (~32 MB of indices) for big test sets


@dataclass(frozen=True)
class PairedInterval:
    """Mean of (method - baseline) over matched items (and seeds), with its bootstrap interval."""

    difference: float
    low: float
    high: float
    items: int  # test items matched in both methods at every paired seed
    seeds: int  # seeds paired (method and baseline both ran them)
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES


def bootstrap_means(values: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Means of `resamples` resamples (with replacement, same size) of the 1-d array `values`.

    Vectorised: each chunk draws a (chunk, n) matrix of item indices and averages along its rows.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        raise ValueError("cannot bootstrap an empty set of items")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // n)
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def paired_bootstrap(method: np.ndarray, baseline: np.ndarray, resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> PairedInterval:
    """Paired percentile bootstrap of mean(method - baseline).

    `method` and `baseline` are per-item scores (1/0 correctness, or a score such as F1) on the same items in
    the same order: 1-d arrays of n items, or (seeds x n) arrays paired by row (seed) and column (item). Items
    are resampled as whole columns (every seed of an item together; see the module docstring).
    """
    method, baseline = np.atleast_2d(np.asarray(method, float)), np.atleast_2d(np.asarray(baseline, float))
    if method.shape != baseline.shape:
        raise ValueError(f"paired scores need the same shape, got {method.shape} and {baseline.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    per_item = (method - baseline).mean(axis=0)  # each item's difference, averaged over seeds
    means = bootstrap_means(per_item, resamples, seed)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedInterval(float(per_item.mean()), float(low), float(high), items=method.shape[1],
                          seeds=method.shape[0], confidence=confidence, resamples=resamples)


def paired_by_id(method: Mapping[int, Mapping[str, float]], baseline: Mapping[int, Mapping[str, float]],
                 **kwargs) -> PairedInterval | None:
    """`paired_bootstrap` on per-item scores keyed {seed: {item id: score}}, matched by seed and item id.

    Only seeds both ran, and only items scored in every one of those runs, take part (a missing prediction
    is never read as wrong). None when nothing pairs up.
    """
    seeds = sorted(set(method) & set(baseline))
    if not seeds:
        return None
    ids = set.intersection(*(set(method[s]) & set(baseline[s]) for s in seeds))
    if not ids:
        return None
    order = sorted(ids)
    a = np.array([[method[s][i] for i in order] for s in seeds])
    b = np.array([[baseline[s][i] for i in order] for s in seeds])
    return paired_bootstrap(a, b, **kwargs)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1) across seeds; the std is None for a single seed."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)
