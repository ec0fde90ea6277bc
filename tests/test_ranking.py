"""Ranking methods, including a small example worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, wilcoxon

from neurofm.errors import NeuroFMError
from neurofm.ranking import (
    aggregate_then_rank,
    build_leaderboard,
    competition_rank,
    final_ranking,
    kendall_tau,
    pairwise_wins,
    rank_stability,
    rank_then_aggregate,
    test_based_ranking,
)
from neurofm.results import COLUMNS, MetricScores, case_table, score_models
from neurofm.stats.bootstrap import bootstrap_indices

# Hand-worked example: 3 models x 2 tasks x 4 cases.
#
# meningioma, Dice per case (higher is better)
#            m1   m2   m3   m4   mean
#   A       .9   .8   .7   .6   .75
#   B       .8   .8   .8   .6   .75   <- ties A on the mean
#   C       .7   .9   .5   .5   .65
# aggregate-then-rank: A 1, B 1 (tie: competition ranking), C 3
# per-case ranks (ties share the smaller rank):
#   m1: A1 B2 C3   m2: C1 A2 B2   m3: B1 A2 C3   m4: A1 B1 C3
#   mean rank: A (1+2+2+1)/4 = 1.5, B (2+2+1+1)/4 = 1.5, C (3+1+3+3)/4 = 2.5
# rank-then-aggregate: A 1, B 1, C 3
# test-based: with 4 cases the smallest one-sided Wilcoxon p is 1/16 = 0.0625 > 0.05, so nobody
#   wins anything: 0 wins each, all rank 1.
#
# brain_age, ages 30 50 70 90 (MAE, lower is better)
#            preds            abs errors    MAE
#   A       32 49 75 90      2 1 5 0       2.0
#   B       30 53 71 88      0 3 1 2       1.5
#   C       35 45 70 94      5 5 0 4       3.5
# aggregate-then-rank: B 1, A 2, C 3
# per-case ranks: b1: B1 A2 C3   b2: A1 B2 C3   b3: C1 B2 A3   b4: A1 B2 C3
#   mean rank: A (2+1+3+1)/4 = 1.75, B (1+2+2+2)/4 = 1.75, C (3+3+1+3)/4 = 2.5
# rank-then-aggregate: A 1, B 1, C 3
# Kendall's tau-b between aggregate (A2 B1 C3) and rank-then-aggregate (A1 B1 C3): pairs AB
#   tied in the second ranking, AC and BC concordant: (2 - 0) / sqrt(3 * 2) = 0.8165
#
# final ranking, mean of the per-task aggregate ranks: A (1+2)/2 = 1.5, B (1+1)/2 = 1.0,
#   C (3+3)/2 = 3.0 -> B 1, A 2, C 3
DICE = {"A": [0.9, 0.8, 0.7, 0.6], "B": [0.8, 0.8, 0.8, 0.6], "C": [0.7, 0.9, 0.5, 0.5]}
AGES = [30.0, 50.0, 70.0, 90.0]
PREDS = {
    "A": [32.0, 49.0, 75.0, 90.0],
    "B": [30.0, 53.0, 71.0, 88.0],
    "C": [35.0, 45.0, 70.0, 94.0],
}


def hand_example() -> pd.DataFrame:
    rows = []
    for model, values in DICE.items():
        rows += [(model, "meningioma", "s", f"m{i + 1}", "dice", v) for i, v in enumerate(values)]
    for model, preds in PREDS.items():
        for i, (age, pred) in enumerate(zip(AGES, preds, strict=True)):
            rows += [(model, "brain_age", "s", f"b{i + 1}", "age", age)]
            rows += [(model, "brain_age", "s", f"b{i + 1}", "pred", pred)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def scores_for(df: pd.DataFrame, task: str, metric: str, n_boot: int = 200) -> MetricScores:
    table = case_table(df, task)
    return score_models(table, metric, bootstrap_indices(table.n_cases, n_boot, seed=0))


def ranks(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame["rank"].items()}


def test_hand_worked_example() -> None:
    df = hand_example()
    dice = scores_for(df, "meningioma", "dice")
    mae = scores_for(df, "brain_age", "mae")

    agg_dice = aggregate_then_rank(dice)
    assert agg_dice["value"].tolist() == pytest.approx([0.75, 0.75, 0.65])
    assert ranks(agg_dice) == {"A": 1, "B": 1, "C": 3}
    case_dice = rank_then_aggregate(dice)
    assert case_dice["mean_rank"].tolist() == pytest.approx([1.5, 1.5, 2.5])
    assert ranks(case_dice) == {"A": 1, "B": 1, "C": 3}
    test_dice = test_based_ranking(dice)
    assert test_dice["wins"].tolist() == [0, 0, 0]
    assert ranks(test_dice) == {"A": 1, "B": 1, "C": 1}

    agg_mae = aggregate_then_rank(mae)
    assert agg_mae["value"].tolist() == pytest.approx([2.0, 1.5, 3.5])
    assert ranks(agg_mae) == {"A": 2, "B": 1, "C": 3}
    case_mae = rank_then_aggregate(mae)
    assert case_mae["mean_rank"].tolist() == pytest.approx([1.75, 1.75, 2.5])
    assert ranks(case_mae) == {"A": 1, "B": 1, "C": 3}
    assert kendall_tau(agg_mae["rank"], case_mae["rank"]) == pytest.approx(2 / math.sqrt(6))

    final = final_ranking({"meningioma": agg_dice["rank"], "brain_age": agg_mae["rank"]})
    assert final["mean_rank"].to_dict() == {"B": 1.0, "A": 1.5, "C": 3.0}
    assert ranks(final) == {"B": 1, "A": 2, "C": 3}

    lb = build_leaderboard(df, n_boot=200, seed=0)
    assert list(lb.tasks) == ["meningioma", "brain_age"]
    assert ranks(lb.final) == {"B": 1, "A": 2, "C": 3}
    board = lb.tasks["brain_age"].table
    assert board["rank_aggregate"].to_dict() == {"B": 1, "A": 2, "C": 3}
    assert board["rank_case"].to_dict() == {"B": 1, "A": 1, "C": 3}


def test_competition_ranking_ties() -> None:
    assert competition_rank([0.9, 0.8, 0.8, 0.7]).tolist() == [1, 2, 2, 4]
    assert competition_rank([0.1 + 0.2, 0.3, 0.1]).tolist() == [1, 1, 3]  # float noise ties
    assert competition_rank(np.array([[1.0, 3.0], [2.0, 3.0]]), axis=0).tolist() == [
        [2, 1],
        [1, 1],
    ]


def test_test_based_ranking_counts_significant_wins(rng: np.random.Generator) -> None:
    base = rng.uniform(0.3, 0.7, 25)
    dice = {"good": base + 0.2, "mid": base + rng.normal(0.0, 0.01, 25), "bad": base - 0.2}
    rows = [
        (m, "meningioma", "s", f"c{i}", "dice", float(np.clip(v, 0, 1)))
        for m, values in dice.items()
        for i, v in enumerate(values)
    ]
    scores = scores_for(pd.DataFrame(rows, columns=list(COLUMNS)), "meningioma", "dice")
    wins = pairwise_wins(scores)
    models = list(scores.models)
    g, m, b = models.index("good"), models.index("mid"), models.index("bad")
    assert wins[g, m] and wins[g, b] and wins[m, b]
    assert not (wins[m, g] or wins[b, g] or wins[b, m] or wins.diagonal().any())
    values = scores.case_values
    assert wilcoxon(values[g], values[m], alternative="greater").pvalue < 0.05
    tested = test_based_ranking(scores)
    assert tested.loc[["good", "mid", "bad"], "wins"].tolist() == [2, 1, 0]
    assert ranks(tested) == {"bad": 3, "good": 1, "mid": 2}


def test_set_level_metric_ranks_over_bootstrap_resamples(rng: np.random.Generator) -> None:
    y = (np.arange(80) % 3 == 0).astype(float)
    probs = {
        "strong": np.clip(0.6 * y + rng.random(80) * 0.4, 0, 1),
        "weak": np.clip(0.15 * y + rng.random(80) * 0.85, 0, 1),
    }
    rows = []
    for m, p in probs.items():
        for i in range(80):
            rows += [
                (m, "infarct", "s", f"c{i}", "label", y[i]),
                (m, "infarct", "s", f"c{i}", "prob", p[i]),
            ]
    scores = scores_for(pd.DataFrame(rows, columns=list(COLUMNS)), "infarct", "auroc", 300)
    assert scores.case_values is None
    per_boot = rank_then_aggregate(scores)
    # mean rank over resamples = 1 + fraction of resamples where the model is beaten
    stability = rank_stability(scores)
    assert per_boot.loc["strong", "mean_rank"] == pytest.approx(1 + stability.loc["strong", 2])
    assert ranks(per_boot) == {"strong": 1, "weak": 2}
    assert stability.sum(axis=1).tolist() == pytest.approx([1.0, 1.0])
    assert stability.loc["strong", 1] > 0.95
    assert test_based_ranking(scores).loc["strong", "wins"] == 1


def test_kendall_tau() -> None:
    a = pd.Series({"x": 1, "y": 2, "z": 3, "w": 4})
    b = pd.Series({"w": 1, "x": 2, "y": 3, "z": 3})
    expected = kendalltau([1, 2, 3, 4], [2, 3, 3, 1]).statistic
    assert kendall_tau(a, b) == pytest.approx(expected)
    assert kendall_tau(a, a) == 1.0
    assert kendall_tau(a, pd.Series({"x": 1, "y": 1, "z": 1, "w": 1})) == 0.0
    assert kendall_tau(pd.Series({"x": 1}), pd.Series({"x": 1})) == 1.0
    with pytest.raises(NeuroFMError):
        kendall_tau(a, pd.Series({"x": 1}))


def test_final_ranking_puts_absent_models_last_and_ties_share_the_min() -> None:
    t1 = pd.Series({"a": 1, "b": 2, "c": 3})
    t2 = pd.Series({"b": 1, "a": 2})  # c did not take part: rank 3 there
    final = final_ranking({"t1": t1, "t2": t2})
    assert final["t2"].to_dict() == {"a": 2, "b": 1, "c": 3}
    assert final["mean_rank"].to_dict() == {"a": 1.5, "b": 1.5, "c": 3.0}
    assert ranks(final) == {"a": 1, "b": 1, "c": 3}
