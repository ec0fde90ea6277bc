"""Challenge-style ranking methods (as in challengeR / Maier-Hein et al.), pure functions.

All work on :class:`neurofm.results.MetricScores` — one metric scored for every model on the same
cases and the same bootstrap resamples — and return a DataFrame indexed by model.

Ties: competition ("min") ranking everywhere, 1 = best, equal values share the smallest rank
(1, 2, 2, 4), challengeR's default. Values equal to :data:`TIE_DECIMALS` decimal places count as
equal, so means that differ only by floating-point summation order tie.

- aggregate-then-rank: the metric on all cases (mean for per-case metrics), ranked;
- rank-then-aggregate: models ranked within each case, mean rank per model, ranked again. A
  set-level metric (AUROC, Pearson r) has no per-case values, so models are ranked within each
  valid bootstrap resample instead (mean rank over resamples); with no valid resample it falls
  back to aggregate-then-rank;
- test-based: for every ordered pair, a counts a win over b if a is significantly better,
  one-sided at ``alpha`` (Wilcoxon signed-rank on per-case values, or the paired bootstrap p for
  set-level metrics); models ranked by their number of wins;
- bootstrap rank stability: how often each model holds each aggregate-then-rank rank over the
  valid resamples;
- the final multi-task ranking: mean of per-task ranks, ranked again with the same tie rule.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import kendalltau, rankdata

from neurofm.errors import NeuroFMError
from neurofm.results import MetricScores
from neurofm.stats.paired import p_not_better, wilcoxon_greater

TIE_DECIMALS = 10
"""Values equal to this many decimals share a rank."""


def competition_rank(goodness: ArrayLike, axis: int = 0) -> np.ndarray:
    """Ranks along ``axis`` with larger = better: 1 for the best, ties share the smallest rank."""
    g = np.round(np.asarray(goodness, dtype=np.float64), TIE_DECIMALS)
    return np.asarray(rankdata(-g, method="min", axis=axis), dtype=np.int64)


def aggregate_then_rank(scores: MetricScores) -> pd.DataFrame:
    """Columns ``value`` (metric on all cases) and ``rank``."""
    ranks = competition_rank(scores.spec.goodness(scores.point))
    return pd.DataFrame(
        {"value": scores.point, "rank": ranks}, index=pd.Index(scores.models, name="model")
    )


def rank_then_aggregate(scores: MetricScores) -> pd.DataFrame:
    """Columns ``mean_rank`` (over cases, or over resamples for set-level metrics) and ``rank``."""
    if scores.case_values is not None:
        per_unit = competition_rank(scores.spec.goodness(scores.case_values), axis=0)
    elif scores.valid.any():
        per_unit = competition_rank(scores.spec.goodness(scores.boot[:, scores.valid]), axis=0)
    else:
        per_unit = competition_rank(scores.spec.goodness(scores.point))[:, None]
    mean_rank = per_unit.mean(axis=1)
    return pd.DataFrame(
        {"mean_rank": mean_rank, "rank": competition_rank(-mean_rank)},
        index=pd.Index(scores.models, name="model"),
    )


def pairwise_wins(scores: MetricScores, alpha: float = 0.05) -> np.ndarray:
    """(n_models, n_models) bool: row model significantly better than column model."""
    n = len(scores.models)
    wins = np.zeros((n, n), dtype=bool)
    boot = scores.spec.goodness(scores.boot[:, scores.valid])
    cases = None if scores.case_values is None else scores.spec.goodness(scores.case_values)
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            if cases is not None:
                p = wilcoxon_greater(cases[a], cases[b])
            else:
                p = p_not_better(boot[a] - boot[b])
            wins[a, b] = p < alpha
    return wins


def test_based_ranking(scores: MetricScores, alpha: float = 0.05) -> pd.DataFrame:
    """Columns ``wins`` (significant one-sided wins over other models) and ``rank``."""
    wins = pairwise_wins(scores, alpha).sum(axis=1)
    return pd.DataFrame(
        {"wins": wins, "rank": competition_rank(wins)},
        index=pd.Index(scores.models, name="model"),
    )


test_based_ranking.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def rank_stability(scores: MetricScores) -> pd.DataFrame:
    """Fraction of valid resamples in which each model (row) holds each rank (column 1..n)."""
    n = len(scores.models)
    if scores.valid.any():
        ranks = competition_rank(scores.spec.goodness(scores.boot[:, scores.valid]), axis=0)
    else:
        ranks = competition_rank(scores.spec.goodness(scores.point))[:, None]
    freq = np.stack([(ranks == r).mean(axis=1) for r in range(1, n + 1)], axis=1)
    return pd.DataFrame(
        freq,
        index=pd.Index(scores.models, name="model"),
        columns=pd.Index(range(1, n + 1), name="rank"),
    )


def kendall_tau(a: pd.Series, b: pd.Series) -> float:
    """Kendall's tau-b between two rankings of the same models (``scipy.stats.kendalltau``).

    Undefined cases are given values, never NaN: fewer than two models, or two identical
    rankings, give 1.0; a ranking with every model tied against a different one gives 0.0.
    """
    if set(a.index) != set(b.index):
        raise NeuroFMError(
            "kendall_tau", f"rankings of different models: {list(a.index)}, {list(b.index)}"
        )
    b = b.reindex(a.index)
    if len(a) < 2 or np.array_equal(a.to_numpy(), b.to_numpy()):
        return 1.0
    tau = float(kendalltau(a.to_numpy(), b.to_numpy()).statistic)
    return 0.0 if np.isnan(tau) else tau


def final_ranking(task_ranks: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Multi-task ranking: one column per task rank, ``mean_rank`` and ``rank``.

    A model without results for a task gets rank (number of models ranked in that task) + 1
    there, i.e. behind every model that took part.
    """
    models = sorted(set().union(*(set(r.index) for r in task_ranks.values())))
    table = pd.DataFrame(index=pd.Index(models, name="model"))
    for task, ranks in task_ranks.items():
        table[task] = ranks.reindex(models).fillna(len(ranks) + 1).astype(np.int64)
    table["mean_rank"] = table[list(task_ranks)].mean(axis=1)
    table["rank"] = competition_rank(-table["mean_rank"].to_numpy())
    return table.sort_values(["rank", "mean_rank"], kind="mergesort")
