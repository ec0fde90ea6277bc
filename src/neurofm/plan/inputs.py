"""Learning-curve points from files: a small curve CSV, or the project's tidy results tables.

Two formats are read:

- a curve CSV with columns ``shots,score`` (optionally ``repeat``): one row per finetuning run;
- tidy results CSVs (:mod:`neurofm.results`) whose model names carry the shot count as
  ``shots<N>`` (``shots20-r1``, ``pretrained-shots20-r2``): each model is one run, scored by the
  task's primary metric over its cases (one site, or all sites pooled).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurofm.errors import NeuroFMError
from neurofm.metrics.registry import METRICS
from neurofm.tasks import get_task

SHOTS_PATTERN = re.compile(r"shots(\d+)")
"""Where a tidy-results model name says how many labelled cases trained it."""


@dataclass(frozen=True)
class CurveData:
    """One score per run: ``shots`` (R,), ``scores`` (R,), the run names and the metric."""

    shots: np.ndarray
    scores: np.ndarray
    runs: list[str]
    metric: str
    higher_is_better: bool


def is_curve_csv(path: Path) -> bool:
    """Whether ``path`` is a curve CSV (has ``shots`` and ``score`` columns)."""
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        return False
    return {"shots", "score"} <= set(header)


def read_curve_csv(path: Path, metric: str, higher_is_better: bool) -> CurveData:
    """A ``shots,score[,repeat]`` CSV; every row is one run."""
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise NeuroFMError(path, f"not a readable CSV ({exc.__class__.__name__})") from exc
    if df.empty:
        raise NeuroFMError(path, "no rows")
    shots = pd.to_numeric(df["shots"], errors="coerce").to_numpy(float)
    scores = pd.to_numeric(df["score"], errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~(np.isfinite(shots) & np.isfinite(scores)))
    if bad.size:
        raise NeuroFMError(path, f"line {bad[0] + 2}: shots and score must be numbers")
    rep = df["repeat"].astype(str) if "repeat" in df.columns else pd.Series(range(len(df)))
    runs = [f"shots{int(s)}-r{r}" for s, r in zip(shots, rep, strict=True)]
    return CurveData(shots, scores, runs, metric, higher_is_better)


def curve_from_results(
    paths: Sequence[Path], task: str, metric: str | None = None, site: str = "all"
) -> CurveData:
    """Score every ``shots<N>`` model of ``task`` in tidy results by ``metric`` (default: the
    task's primary metric), over one site or all sites pooled."""
    from neurofm.results import case_table, read_results  # only this input format needs it

    spec_task = get_task(task)
    name = metric or spec_task.primary_metric
    if name not in METRICS:
        raise NeuroFMError(None, f"unknown metric {name!r} (known: {', '.join(METRICS)})")
    spec = METRICS[name]
    table = case_table(read_results(paths), task, site)
    shots, scores, runs = [], [], []
    for m, model in enumerate(table.models):
        found = SHOTS_PATTERN.search(model)
        if found is None:
            continue
        if not table.has(spec):
            raise NeuroFMError(paths[0], f"{task} results have no rows for metric {name}")
        shots.append(float(found.group(1)))
        scores.append(float(spec.fn(*table.columns(spec, m))))
        runs.append(model)
    if not runs:
        raise NeuroFMError(
            paths[0], f"no {task} model is named with its shot count (e.g. shots20-r1)"
        )
    return CurveData(np.array(shots), np.array(scores), runs, name, spec.higher_is_better)


def read_curve(paths: Sequence[Path], task: str, metric: str | None, site: str) -> CurveData:
    """Curve CSVs or tidy results (not mixed), see the module docstring."""
    for p in paths:
        if not Path(p).exists():
            raise NeuroFMError(p, "file does not exist")
    curve_files = [is_curve_csv(Path(p)) for p in paths]
    if any(curve_files) and not all(curve_files):
        raise NeuroFMError(paths[0], "mix of curve CSVs and tidy results: give one kind")
    if not all(curve_files):
        return curve_from_results(paths, task, metric, site)
    name = metric or get_task(task).primary_metric
    hib = METRICS[name].higher_is_better if name in METRICS else True
    parts = [read_curve_csv(Path(p), name, hib) for p in paths]
    return CurveData(
        np.concatenate([c.shots for c in parts]),
        np.concatenate([c.scores for c in parts]),
        [r for c in parts for r in c.runs],
        name,
        hib,
    )
