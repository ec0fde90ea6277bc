"""Uncertainty over seeds *and* cases: a two-level (hierarchical) bootstrap, and Holm's method.

A study trains every arm once per seed, and each seed brings its own benchmark draw, few-shot
subset and training randomness. A case bootstrap within one seed ignores all of that, so its
interval is too narrow for the claim "pretraining helps". The hierarchical bootstrap resamples
what varies at each level:

1. draw ``S`` seeds with replacement from the ``S`` seeds run;
2. for every drawn seed (each copy independently), draw its cases with replacement;
3. compute the metric per drawn seed on its drawn cases (set-level metrics such as AUROC are
   recomputed per seed, never pooled across seeds), and average over the drawn seeds.

The point estimate is the mean over seeds of the metric on all of a seed's cases. For paired
comparisons the same draws serve both arms (their cases are the same within a seed), so the
difference's distribution is paired at both levels. With one seed the procedure is the plain
case bootstrap. A replicate in which any drawn seed is degenerate for either arm (one class
for AUROC) is dropped, as in :mod:`neurofm.stats.bootstrap`.

Two-sided p-values come from the bootstrap distribution of the difference:
``p = min(1, 2 * min(#{d <= 0} + 1, #{d >= 0} + 1) / (B + 1))`` (the +1 keeps a finite number
of replicates from claiming p = 0). Holm's step-down method adjusts a family of p-values; it is
five lines, so it is written here rather than pulling in statsmodels for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from neurofm.errors import NeuroFMError

RowsFn = Callable[..., np.ndarray]
"""A metric on 2-D inputs (one resample per row) returning one value per row."""

SeedArrays = Sequence[Sequence[np.ndarray]]
"""Per seed, the per-case input arrays of a metric (first axis = case)."""


@dataclass(frozen=True)
class HierarchicalDraws:
    """Seed draws ``(B, S)`` and, per seed run, case draws ``(B, S, n_cases_of_that_seed)``.

    Slot ``j`` of replicate ``b`` uses seed ``seeds[b, j]`` with cases
    ``cases[seeds[b, j]][b, j]``, so every copy of a seed gets its own case resample.
    """

    seeds: np.ndarray
    cases: tuple[np.ndarray, ...]

    @property
    def n_boot(self) -> int:
        return int(self.seeds.shape[0])


def hierarchical_draws(n_cases: Sequence[int], n_boot: int, seed: int) -> HierarchicalDraws:
    """Draw seeds, then cases within every drawn seed copy (``default_rng(seed)``)."""
    n_seeds = len(n_cases)
    if n_seeds < 1 or n_boot < 1 or min(n_cases) < 1:
        raise NeuroFMError(
            "hierarchical bootstrap", f"need >= 1 seed, case and resample, got {list(n_cases)}"
        )
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    cases = tuple(rng.integers(0, n, size=(n_boot, n_seeds, n)) for n in n_cases)
    return HierarchicalDraws(seeds, cases)


def _replicates(
    rows_fn: RowsFn,
    data: SeedArrays,
    draws: HierarchicalDraws,
    degenerate: RowsFn | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate: the mean over drawn seeds of the metric, and whether it is valid."""
    n_boot, n_seeds = draws.seeds.shape
    if len(data) != n_seeds:
        raise NeuroFMError("hierarchical bootstrap", f"{len(data)} seeds of data, {n_seeds} drawn")
    per_slot = np.empty((n_boot, n_seeds))
    bad = np.zeros((n_boot, n_seeds), dtype=bool)
    for s, arrays in enumerate(data):
        idx = draws.cases[s].reshape(n_boot * n_seeds, -1)
        sample = [np.asarray(a)[idx] for a in arrays]
        values = np.asarray(rows_fn(*sample), dtype=np.float64).reshape(n_boot, n_seeds)
        used = draws.seeds == s
        per_slot[used] = values[used]
        if degenerate is not None:
            deg = np.asarray(degenerate(*sample), dtype=bool).reshape(n_boot, n_seeds)
            bad[used] = deg[used]
    return per_slot.mean(axis=1), np.asarray(~bad.any(axis=1))


def seed_means(rows_fn: RowsFn, data: SeedArrays) -> np.ndarray:
    """The metric on all cases of each seed (one value per seed)."""
    return np.asarray(
        [float(np.asarray(rows_fn(*[np.asarray(a)[None] for a in arrays])).ravel()[0])
         for arrays in data]
    )  # fmt: skip


@dataclass(frozen=True)
class HierarchicalEstimate:
    """Mean over seeds with its hierarchical percentile interval."""

    value: float
    ci_low: float
    ci_high: float
    per_seed: tuple[float, ...]
    n_valid: int


def hierarchical_ci(
    rows_fn: RowsFn,
    data: SeedArrays,
    draws: HierarchicalDraws,
    *,
    alpha: float = 0.05,
    degenerate: RowsFn | None = None,
) -> HierarchicalEstimate:
    """Mean over seeds of ``rows_fn`` and its ``1 - alpha`` hierarchical bootstrap interval."""
    per_seed = seed_means(rows_fn, data)
    reps, valid = _replicates(rows_fn, data, draws, degenerate)
    point = float(per_seed.mean())
    kept = reps[valid]
    low, high = (
        np.percentile(kept, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if kept.size else (point,) * 2
    )
    return HierarchicalEstimate(point, float(low), float(high), tuple(per_seed), int(valid.sum()))


@dataclass(frozen=True)
class HierarchicalDifference:
    """Arm a minus arm b (metric units), its interval and a two-sided bootstrap p-value."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    per_seed: tuple[float, ...]
    n_valid: int


def two_sided_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value that the difference is not 0 (see the module docstring)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        return 1.0
    tail = min(int(np.sum(d <= 0)), int(np.sum(d >= 0))) + 1
    return float(min(1.0, 2.0 * tail / (d.size + 1)))


def hierarchical_difference(
    rows_fn: RowsFn,
    a: SeedArrays,
    b: SeedArrays,
    draws: HierarchicalDraws,
    *,
    alpha: float = 0.05,
    degenerate: RowsFn | None = None,
) -> HierarchicalDifference:
    """Paired hierarchical comparison: the same seed and case draws for arms ``a`` and ``b``."""
    seeds_a, seeds_b = seed_means(rows_fn, a), seed_means(rows_fn, b)
    reps_a, valid_a = _replicates(rows_fn, a, draws, degenerate)
    reps_b, valid_b = _replicates(rows_fn, b, draws, degenerate)
    diffs = (reps_a - reps_b)[valid_a & valid_b]
    point = float((seeds_a - seeds_b).mean())
    low, high = (
        np.percentile(diffs, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        if diffs.size
        else (point,) * 2
    )
    return HierarchicalDifference(
        point, float(low), float(high), two_sided_p(diffs), tuple(seeds_a - seeds_b), diffs.size
    )


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out
