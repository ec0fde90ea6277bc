"""Case-bootstrap confidence intervals with resampling indices shared by every compared model.

Cases are resampled with replacement (``bootstrap_indices``, seeded, so a seed reproduces the
intervals exactly). The same index matrix is passed to every model of a comparison, so the models
are scored on the same resampled case sets and their differences and ranks are paired. A set-level
metric (AUROC, Pearson r, …) is recomputed on each resample; a per-case metric's mean is.

Intervals are plain percentile intervals ``[q(alpha/2), q(1 - alpha/2)]`` (linear interpolation)
over the resample values. Degenerate resamples — where the metric is undefined, e.g. a single
class for AUROC — are dropped from the percentiles (counted in ``n_valid``), rather than scored
with the metric's fallback value, which would drag the interval towards chance. If every
resample is degenerate the interval collapses to the point estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from neurofm.errors import NeuroFMError

MetricFn = Callable[..., Any]
"""A metric of per-case arrays: a float, or one value per row when used ``batched``."""
DegenerateFn = Callable[..., Any]
"""True where the metric is undefined: a bool, or one bool per row when ``batched``."""


def bootstrap_indices(n_cases: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_cases)`` case indices drawn with replacement by ``default_rng(seed)``."""
    if n_cases < 1 or n_boot < 1:
        raise NeuroFMError("bootstrap", f"need >= 1 case and resample, got {n_cases}, {n_boot}")
    return np.random.default_rng(seed).integers(0, n_cases, size=(n_boot, n_cases))


def _arrays(arrays: tuple[ArrayLike, ...], indices: np.ndarray) -> list[np.ndarray]:
    out = [np.asarray(a) for a in arrays]
    if not out or any(a.shape[:1] != (indices.shape[1],) for a in out):
        shapes = [a.shape for a in out]
        raise NeuroFMError("bootstrap", f"arrays {shapes} do not match {indices.shape[1]} cases")
    return out


MAX_BLOCK_ELEMENTS = 4_000_000
"""Resamples are gathered in blocks of at most this many values per array (memory bound)."""


def bootstrap_values(
    metric_fn: MetricFn,
    *arrays: ArrayLike,
    indices: np.ndarray,
    degenerate: DegenerateFn | None = None,
    batched: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The metric on every resample, and whether each resample is valid (not degenerate).

    ``arrays`` are per-case arrays (first axis = case) passed to ``metric_fn`` in order.
    With ``batched=True``, ``metric_fn`` and ``degenerate`` take 2-D arrays (one resample per
    row) and return one value per row, so blocks of resamples are scored in one vectorised call;
    otherwise they are called once per resample. Degenerate resamples keep ``metric_fn``'s own
    fallback value but are marked invalid.
    """
    data = _arrays(arrays, indices)
    n_boot, n_cases = indices.shape
    values = np.empty(n_boot)
    valid = np.ones(n_boot, dtype=bool)
    if batched:
        block = max(1, MAX_BLOCK_ELEMENTS // n_cases)
        for start in range(0, n_boot, block):
            idx = indices[start : start + block]
            sample = [a[idx] for a in data]
            values[start : start + block] = metric_fn(*sample)
            if degenerate is not None:
                valid[start : start + block] = ~np.asarray(degenerate(*sample), dtype=bool)
        return values, valid
    for b, idx in enumerate(indices):
        sample = [a[idx] for a in data]
        values[b] = metric_fn(*sample)
        if degenerate is not None:
            valid[b] = not degenerate(*sample)
    return values, valid


def percentile_interval(values: np.ndarray, alpha: float, fallback: float) -> tuple[float, float]:
    """Two-sided percentile interval of ``values``; ``(fallback, fallback)`` if there are none."""
    if not 0 < alpha < 1:
        raise NeuroFMError("bootstrap", f"alpha must be within (0, 1), got {alpha}")
    if values.size == 0:
        return fallback, fallback
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def point_estimate(metric_fn: MetricFn, data: list[np.ndarray], batched: bool) -> float:
    """The metric on all cases (a batched kernel gets them as one row)."""
    if batched:
        return float(np.asarray(metric_fn(*[a[None] for a in data])).ravel()[0])
    return float(metric_fn(*data))


class ConfidenceInterval(NamedTuple):
    """Point estimate on all cases and its bootstrap percentile interval."""

    point: float
    low: float
    high: float


def bootstrap_ci(
    metric_fn: MetricFn,
    *arrays: ArrayLike,
    indices: np.ndarray,
    alpha: float = 0.05,
    degenerate: DegenerateFn | None = None,
    batched: bool = False,
) -> ConfidenceInterval:
    """``(point, low, high)``: the metric on all cases and its ``1 - alpha`` percentile interval.

    ``batched`` as in :func:`bootstrap_values`.
    """
    data = _arrays(arrays, indices)
    point = point_estimate(metric_fn, data, batched)
    values, valid = bootstrap_values(
        metric_fn, *data, indices=indices, degenerate=degenerate, batched=batched
    )
    low, high = percentile_interval(values[valid], alpha, point)
    return ConfidenceInterval(point, low, high)
