"""The report's figures: each drawn into ``figures/`` by :mod:`neurofm.report.plots`, returned
as a :class:`~neurofm.report.model.Figure` (path + caption) for the page to show."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from neurofm.metrics.registry import METRICS
from neurofm.ranking import TaskBoard
from neurofm.report import plots
from neurofm.report.glossary import metric_info
from neurofm.report.model import Figure, task_title
from neurofm.results import ALL_SITES

_SITE_LABEL = {ALL_SITES: "all sites"}


def task_figures(
    board: TaskBoard,
    summary: pd.DataFrame,
    curves: pd.DataFrame | None,
    differences: pd.DataFrame | None,
    baseline: str | None,
    colours: dict[str, str],
    out: Path,
) -> list[Figure]:
    """Per-site forest plot, rank stability, gain over the baseline and learning curves."""
    task, primary = board.task, board.metric
    label = metric_info(primary).label
    title = task_title(task)
    figs: list[Figure] = []
    sites = summary[(summary["task"] == task) & (summary["metric"] == primary)].copy()
    sites["site"] = sites["site"].map(lambda s: _SITE_LABEL.get(s, s))
    order = ["all sites", *sorted(x for x in sites["site"].unique() if x != "all sites")]
    sites = sites.set_index("site").loc[order].reset_index()
    rel = f"figures/{task}-sites.png"
    plots.forest_plot(
        sites,
        metric=primary,
        higher_is_better=board.higher_is_better,
        colours=colours,
        title=f"{title}: {label} per test site",
        out=out / rel,
    )
    figs.append(
        Figure(
            rel,
            f"{label} of each model, pooled over all test sites and per site; dots are the "
            "value on all cases, bars the 95% bootstrap confidence interval.",
        )
    )
    rel = f"figures/{task}-rank-stability.png"
    plots.rank_stability_plot(
        board.stability,
        colours=colours,
        title=f"{title}: how stable is the ranking?",
        out=out / rel,
    )
    figs.append(
        Figure(
            rel,
            f"Share of bootstrap resamples of the test cases in which each model takes each "
            f"rank (by {label}); a model that is first in nearly all resamples is a clear winner.",
        )
    )
    if differences is not None and baseline is not None:
        diff = differences.copy()
        diff["site"] = diff["site"].map(lambda s: _SITE_LABEL.get(s, s))
        rel = f"figures/{task}-vs-{re.sub(r'[^A-Za-z0-9_-]+', '_', baseline)}.png"
        plots.paired_difference_plot(
            diff,
            metric=primary,
            higher_is_better=board.higher_is_better,
            colours=colours,
            baseline=baseline,
            title=f"{title}: gain over training from scratch",
            out=out / rel,
        )
        figs.append(
            Figure(
                rel,
                f"Difference in {label} between each model and '{baseline}' (no "
                "pretraining), on the same cases, per site; a bar that does not cross 0 is a "
                "difference unlikely to be chance.",
            )
        )
    if curves is not None:
        figs += curve_figures(curves[curves["task"] == task], task, colours, out)
    return figs


def curve_figures(
    curves: pd.DataFrame, task: str, colours: dict[str, str], out: Path
) -> list[Figure]:
    """A learning curve per metric of one task."""
    figs = []
    for metric in sorted(curves["metric"].unique()):
        part = curves[curves["metric"] == metric]
        label = metric_info(metric).label
        rel = f"figures/{task}-learning-curve-{metric}.png"
        plots.learning_curve_plot(
            part,
            metric=metric,
            higher_is_better=METRICS[metric].higher_is_better,
            colours=colours,
            title=f"{task_title(task)}: {label} vs labelled training cases",
            out=out / rel,
        )
        figs.append(
            Figure(
                rel,
                f"Learning curve: {label} on the test cases when each model is adapted with more "
                "labelled cases (shaded: 95% confidence interval). Where the curves flatten, "
                "more labels help little.",
            )
        )
    return figs


def extra_curves(
    curves: pd.DataFrame | None, tasks: list[str], colours: dict[str, str], out: Path
) -> list[Figure]:
    """Learning curves of tasks that have no results table of their own."""
    if curves is None:
        return []
    rest = sorted(set(curves["task"]) - set(tasks))
    return [f for t in rest for f in curve_figures(curves[curves["task"] == t], t, colours, out)]
