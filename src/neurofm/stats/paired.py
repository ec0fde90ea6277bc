"""Paired comparison of two models scored on the same cases.

Two pieces of evidence, both one-sided in the direction "model a is better than model b":

- bootstrap difference: ``metric(a) - metric(b)`` on every shared resample (the same index
  matrix for both models), its percentile interval, and ``p_bootstrap`` = the fraction of valid
  resamples where a is *not* better (difference <= 0 after orienting by ``higher_is_better``);
  this works for every metric, set-level ones included;
- Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped) on per-case
  values — only for metrics that are means of per-case values. Set-level metrics (AUROC, Pearson
  r, …) have no per-case values, so for them ``p_wilcoxon`` is None and only the bootstrap is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import wilcoxon

from neurofm.errors import NeuroFMError
from neurofm.stats.bootstrap import (
    DegenerateFn,
    MetricFn,
    bootstrap_values,
    percentile_interval,
    point_estimate,
)


@dataclass(frozen=True)
class PairedComparison:
    """Model a versus model b on the same cases (difference = a - b, in metric units)."""

    difference: float
    ci_low: float
    ci_high: float
    p_bootstrap: float
    """One-sided: fraction of valid resamples where a is not better than b."""
    p_wilcoxon: float | None
    """One-sided Wilcoxon signed-rank p that a is better, on per-case values; None if set-level."""
    n_cases: int
    n_valid_resamples: int

    def a_better(self, alpha: float = 0.05) -> bool:
        """Significant win of a: Wilcoxon where available, otherwise the bootstrap."""
        p = self.p_wilcoxon if self.p_wilcoxon is not None else self.p_bootstrap
        return p < alpha


def wilcoxon_greater(a: ArrayLike, b: ArrayLike, higher_is_better: bool = True) -> float:
    """One-sided Wilcoxon signed-rank p-value that per-case values ``a`` are better than ``b``.

    Cases with equal values are dropped (Wilcoxon's zero method); if all are equal, p = 1.0.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not higher_is_better:
        d = -d
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d, alternative="greater").pvalue)


def p_not_better(diffs: ArrayLike, higher_is_better: bool = True) -> float:
    """One-sided bootstrap p: fraction of resampled differences a - b where a is not better.

    1.0 when there are no (valid) resamples, so nothing counts as significant without evidence.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        return 1.0
    return float(np.mean((d if higher_is_better else -d) <= 0))


def paired_comparison(
    metric_fn: MetricFn,
    a: Sequence[ArrayLike],
    b: Sequence[ArrayLike],
    indices: np.ndarray,
    *,
    higher_is_better: bool = True,
    case_values: tuple[ArrayLike, ArrayLike] | None = None,
    alpha: float = 0.05,
    degenerate: DegenerateFn | None = None,
    batched: bool = False,
) -> PairedComparison:
    """Compare models a and b: ``metric_fn(*a)`` against ``metric_fn(*b)``.

    ``a`` and ``b`` are the per-case arrays ``metric_fn`` takes (e.g. ``(labels, probs_a)`` and
    ``(labels, probs_b)``); ``indices`` the shared bootstrap indices. ``case_values`` — the per-case
    metric values of a and b — enables the Wilcoxon test; leave it None for set-level metrics.
    A resample is valid only if it is valid for both models. ``batched`` as in
    :func:`~neurofm.stats.bootstrap.bootstrap_values`.
    """
    n_cases = indices.shape[1]
    arrays_a = [np.asarray(x) for x in a]
    arrays_b = [np.asarray(x) for x in b]
    point = point_estimate(metric_fn, arrays_a, batched) - point_estimate(
        metric_fn, arrays_b, batched
    )
    values_a, valid_a = bootstrap_values(
        metric_fn, *arrays_a, indices=indices, degenerate=degenerate, batched=batched
    )
    values_b, valid_b = bootstrap_values(
        metric_fn, *arrays_b, indices=indices, degenerate=degenerate, batched=batched
    )
    valid = valid_a & valid_b
    diffs = (values_a - values_b)[valid]
    low, high = percentile_interval(diffs, alpha, point)
    p_boot = p_not_better(diffs, higher_is_better)
    p_wil = None
    if case_values is not None:
        ca, cb = (np.asarray(v, dtype=np.float64) for v in case_values)
        if ca.shape != (n_cases,) or cb.shape != (n_cases,):
            raise NeuroFMError("paired comparison", f"per-case values must have {n_cases} entries")
        p_wil = wilcoxon_greater(ca, cb, higher_is_better)
    return PairedComparison(point, low, high, p_boot, p_wil, n_cases, int(valid.sum()))
