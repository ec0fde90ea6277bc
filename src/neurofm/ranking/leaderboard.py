"""A leaderboard from a tidy results table: every ranking method per task, and a final ranking.

Each task is ranked on its primary metric (``TaskSpec.primary_metric``, :mod:`neurofm.tasks`)
over all its cases pooled across sites, with one bootstrap index matrix per task shared by all
models. The final multi-task ranking is the mean of the per-task aggregate-then-rank ranks.
Files: ``leaderboard.csv`` (a row per task and model), ``leaderboard.json`` (everything, with
Kendall's tau between the methods) and ``rank_stability.csv`` (long: task, model, rank, frequency).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurofm.atomic import write_text_atomic
from neurofm.ranking.methods import (
    aggregate_then_rank,
    final_ranking,
    kendall_tau,
    rank_stability,
    rank_then_aggregate,
    test_based_ranking,
)
from neurofm.results import (
    ALL_SITES,
    case_table,
    score_models,
    validate_results,
)
from neurofm.stats.bootstrap import bootstrap_indices
from neurofm.tasks import TASKS, TaskRegistry, TaskSpec

BOARD_COLUMNS = (
    "value",
    "ci_low",
    "ci_high",
    "n_missing",
    "rank_aggregate",
    "mean_case_rank",
    "rank_case",
    "wins",
    "rank_test",
    "p_rank1",
)


@dataclass(frozen=True)
class TaskBoard:
    """One task ranked on its primary metric."""

    task: str
    metric: str
    higher_is_better: bool
    n_cases: int
    table: pd.DataFrame
    """Index model, columns :data:`BOARD_COLUMNS`, sorted by ``rank_aggregate``."""
    stability: pd.DataFrame
    """Index model, columns rank 1..n: fraction of resamples holding that rank."""
    kendall: dict[str, float]
    """Kendall's tau between the methods' rankings (``aggregate_vs_case`` …)."""


@dataclass(frozen=True)
class Leaderboard:
    """Per-task boards and the final multi-task ranking."""

    tasks: dict[str, TaskBoard]
    final: pd.DataFrame
    """Index model, a rank column per task, ``mean_rank``, ``rank``."""
    n_boot: int
    seed: int
    alpha: float


def task_board(
    df: pd.DataFrame,
    task: str | TaskSpec,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> TaskBoard:
    """Rank the models of one task (validated tidy table) by every method."""
    spec = task if isinstance(task, TaskSpec) else TASKS[task]
    metric = spec.primary_metric
    table = case_table(df, spec, ALL_SITES)
    scores = score_models(table, metric, bootstrap_indices(table.n_cases, n_boot, seed))
    agg = aggregate_then_rank(scores)
    per_case = rank_then_aggregate(scores)
    tested = test_based_ranking(scores, alpha)
    stability = rank_stability(scores)
    intervals = [scores.interval(m, alpha) for m in range(len(scores.models))]
    board = pd.DataFrame(
        {
            "value": agg["value"],
            "ci_low": [low for low, _ in intervals],
            "ci_high": [high for _, high in intervals],
            "n_missing": scores.n_missing,
            "rank_aggregate": agg["rank"],
            "mean_case_rank": per_case["mean_rank"],
            "rank_case": per_case["rank"],
            "wins": tested["wins"],
            "rank_test": tested["rank"],
            "p_rank1": stability[1],
        },
        index=agg.index,
    ).sort_values(["rank_aggregate", "rank_case"], kind="mergesort")
    kendall = {
        "aggregate_vs_case": kendall_tau(agg["rank"], per_case["rank"]),
        "aggregate_vs_test": kendall_tau(agg["rank"], tested["rank"]),
        "case_vs_test": kendall_tau(per_case["rank"], tested["rank"]),
    }
    return TaskBoard(
        spec.name, metric, spec.higher_is_better, table.n_cases, board, stability, kendall
    )


def build_leaderboard(
    df: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    progress: Callable[[str], None] | None = None,
    tasks: TaskRegistry = TASKS,
) -> Leaderboard:
    """Boards for every task in the table (in ``tasks`` order) and the final ranking.

    ``progress`` is called with each task name once that task is ranked. ``tasks``: the tasks
    the table may hold (built-ins, plus a user's task file's spec).
    """
    table = validate_results(df, tasks=tasks)
    boards = {}
    for task in [t for t in tasks if t in set(table["task"])]:
        boards[task] = task_board(table, tasks[task], n_boot, seed, alpha)
        if progress is not None:
            progress(task)
    final = final_ranking({t: b.table["rank_aggregate"] for t, b in boards.items()})
    return Leaderboard(boards, final, n_boot, seed, alpha)


def leaderboard_frame(lb: Leaderboard) -> pd.DataFrame:
    """The ``leaderboard.csv`` table: a row per task and model, with its final rank."""
    parts = []
    for task, board in lb.tasks.items():
        part = board.table.reset_index()
        part.insert(0, "metric", board.metric)
        part.insert(0, "task", task)
        part.insert(6, "n_cases", board.n_cases)
        part["final_rank"] = part["model"].map(lb.final["rank"])
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def stability_frame(lb: Leaderboard) -> pd.DataFrame:
    """The ``rank_stability.csv`` table: task, metric, model, rank, frequency."""
    parts = []
    for task, board in lb.tasks.items():
        long = board.stability.stack().rename("frequency").reset_index()
        long.insert(0, "metric", board.metric)
        long.insert(0, "task", task)
        parts.append(long)
    return pd.concat(parts, ignore_index=True)


def _plain(value: object) -> object:
    """numpy scalars to Python numbers for JSON."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def leaderboard_json(lb: Leaderboard) -> dict[str, object]:
    """Everything in one JSON-ready dict."""
    tasks = {
        task: {
            "metric": b.metric,
            "higher_is_better": b.higher_is_better,
            "n_cases": b.n_cases,
            "kendall_tau": b.kendall,
            "models": b.table.reset_index().to_dict("records"),
        }
        for task, b in lb.tasks.items()
    }
    final = [
        {
            "model": model,
            "ranks": {t: row[t] for t in lb.tasks},
            "mean_rank": row["mean_rank"],
            "rank": row["rank"],
        }
        for model, row in lb.final.iterrows()
    ]
    return {"n_boot": lb.n_boot, "seed": lb.seed, "alpha": lb.alpha, "tasks": tasks, "final": final}


def write_leaderboard(lb: Leaderboard, out: str | Path) -> list[Path]:
    """Write leaderboard.csv, leaderboard.json and rank_stability.csv (atomically) into ``out``."""
    out = Path(out)
    text = json.dumps(leaderboard_json(lb), indent=2, default=_plain) + "\n"
    return [
        write_text_atomic(out / "leaderboard.csv", leaderboard_frame(lb).to_csv(index=False)),
        write_text_atomic(out / "leaderboard.json", text),
        write_text_atomic(out / "rank_stability.csv", stability_frame(lb).to_csv(index=False)),
    ]
