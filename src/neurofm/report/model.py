"""The report as data: what each section of ``index.html`` says, before any HTML.

Built from the results, the leaderboard and the bootstrap summary by pure functions; the Jinja
templates in ``report/templates`` only lay it out (see :mod:`neurofm.report.render`), and tests
check these objects instead of parsing HTML. Numbers stay numbers here; how many decimals a
metric gets travels with it (:attr:`Interval.decimals`) so the page formats them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import pandas as pd

from neurofm.metrics.registry import METRICS
from neurofm.ranking import Leaderboard, TaskBoard
from neurofm.report.glossary import metric_info
from neurofm.results import ALL_SITES
from neurofm.tasks import get_task, known_tasks


@dataclass(frozen=True)
class RankingMethod:
    """One way of ranking models: its key in the leaderboard, its column and its label."""

    key: str
    column: str
    label: str


METHODS = (
    RankingMethod("aggregate", "rank_aggregate", "aggregate, then rank"),
    RankingMethod("case", "rank_case", "rank, then aggregate"),
    RankingMethod("test", "rank_test", "test-based"),
)


@dataclass(frozen=True)
class Interval:
    """A value with its 95% confidence interval, and the decimals its metric is shown with."""

    value: float
    low: float
    high: float
    decimals: int = 2


@dataclass(frozen=True)
class Figure:
    """A PNG in the report folder (path relative to it) and what it shows."""

    path: str
    caption: str


@dataclass(frozen=True)
class TestData:
    """One task's test set, as the introduction lists it."""

    task: str
    title: str
    primary_label: str
    n_cases: int
    per_site: dict[str, int]
    n_models: int


@dataclass(frozen=True)
class GlossaryRow:
    metric: str
    label: str
    task_title: str
    meaning: str
    unit: str
    better: str


@dataclass(frozen=True)
class Overview:
    """The "What this report shows" section."""

    synthetic: bool
    folder: str
    models: list[str]
    n_boot: int
    test_data: list[TestData]
    run_settings: dict[str, str]
    glossary: list[GlossaryRow]


@dataclass(frozen=True)
class OverallRow:
    model: str
    task_ranks: list[int]
    mean_rank: float
    rank: int


@dataclass(frozen=True)
class OverallRanking:
    """The ranking across tasks (only when there is more than one task)."""

    task_titles: list[str]
    rows: list[OverallRow]


@dataclass(frozen=True)
class LeaderRow:
    """One model on a task's leaderboard; ``ranks`` follow :data:`METHODS`."""

    model: str
    n_missing: int
    primary: Interval
    ranks: tuple[int, ...]
    p_rank1: float
    others: tuple[Interval, ...]


@dataclass(frozen=True)
class Agreement:
    """Kendall's tau between the rankings of two methods."""

    first: RankingMethod
    second: RankingMethod
    tau: float


@dataclass
class TaskSection:
    """A task's leaderboard, how far its ranking methods agree, and its figures."""

    task: str
    title: str
    metric: str
    metric_axis_label: str
    better: str
    other_metrics: list[str]
    other_axis_labels: list[str]
    n_cases: int
    rows: list[LeaderRow]
    agreement: list[Agreement]
    figures: list[Figure] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        """Models in leaderboard order (best first)."""
        return [r.model for r in self.rows]


@dataclass
class ReportModel:
    """Everything ``index.html`` shows."""

    title: str
    colours: dict[str, str]
    overview: Overview
    overall: OverallRanking | None
    tasks: list[TaskSection]
    extra_curves: list[Figure]
    n_viewer_cases: int
    methods: tuple[RankingMethod, ...] = METHODS


def task_title(task: str) -> str:
    """The task's title, or its name for a task outside the registry (learning curves only)."""
    return known_tasks()[task].title if task in known_tasks() else task


def better(metric: str) -> str:
    """Which direction of a metric is better, in words."""
    spec = METRICS.get(metric)
    if spec is None:
        return ""
    if spec.best_at_zero:
        return "closer to 0"
    return "higher" if spec.higher_is_better else "lower"


def overview(
    results: pd.DataFrame,
    tasks: list[str],
    *,
    synthetic: bool,
    folder: str,
    run: dict[str, Any],
    n_boot: int,
) -> Overview:
    """The introduction: models, test data per task, run settings and the metric glossary."""
    test_data = []
    for task in tasks:
        t = results[results["task"] == task]
        per_site = t.groupby("site")["case"].nunique()
        spec = get_task(task)
        test_data.append(
            TestData(
                task,
                spec.title,
                metric_info(spec.primary_metric).label,
                int(per_site.sum()),
                {str(s): int(n) for s, n in per_site.items()},
                int(t["model"].nunique()),
            )
        )
    glossary = [
        GlossaryRow(m, info.label, get_task(task).title, info.meaning, info.unit, better(m))
        for task in tasks
        for m in get_task(task).metrics
        for info in [metric_info(m)]
    ]
    return Overview(
        synthetic,
        folder,
        sorted(str(m) for m in results["model"].unique()),
        n_boot,
        test_data,
        flatten(run),
        glossary,
    )


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested run info as ``a.b: value`` lines; long values are shortened."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            flat[name] = text if len(text) <= 300 else text[:297] + "…"
    return flat


def overall_ranking(board: Leaderboard) -> OverallRanking:
    """Per-task ranks, their mean and the overall rank of every model."""
    boards = list(board.tasks.values())
    rows = [
        OverallRow(
            str(model),
            [int(r[b.task]) for b in boards],
            float(r["mean_rank"]),
            int(r["rank"]),
        )
        for model, r in board.final.iterrows()
    ]
    return OverallRanking([get_task(b.task).title for b in boards], rows)


def task_section(board: TaskBoard, summary: pd.DataFrame) -> TaskSection:
    """A task's leaderboard rows (in ranking order) from its board and the bootstrap summary."""
    task = board.task
    s = summary[summary["task"] == task]
    pooled = s[s["site"] == ALL_SITES].set_index(["model", "metric"])
    metrics = [m for m in get_task(task).metrics if m in set(s["metric"])]
    others = [m for m in metrics if m != board.metric]

    def interval(model: object, metric: str) -> Interval:
        p = pooled.loc[(model, metric)]
        decimals = metric_info(metric).decimals
        return Interval(float(p["value"]), float(p["ci_low"]), float(p["ci_high"]), decimals)

    rows = [
        LeaderRow(
            str(model),
            int(pooled.loc[(model, board.metric), "n_missing"]),
            interval(model, board.metric),
            tuple(int(r[m.column]) for m in METHODS),
            float(r["p_rank1"]),
            tuple(interval(model, m) for m in others),
        )
        for model, r in board.table.iterrows()
    ]
    agreement = [
        Agreement(a, b, float(board.kendall[f"{a.key}_vs_{b.key}"]))
        for a, b in combinations(METHODS, 2)
    ]
    return TaskSection(
        task,
        get_task(task).title,
        board.metric,
        metric_info(board.metric).axis_label,
        better(board.metric),
        others,
        [metric_info(m).axis_label for m in others],
        int(pooled["n_cases"].iloc[0]),
        rows,
        agreement,
    )
