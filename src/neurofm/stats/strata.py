"""Subgroup analysis: the primary metric per stratum of the cases, with bootstrap intervals.

Extra columns of ``labels.csv`` (say ``age``, ``sex``, ``scanner``) — every column that is
neither ``case``, ``site`` nor the task's target — describe the cases. Each becomes a set of
strata: a numeric column with more than four distinct values is cut into quartiles (labelled
with their ranges), any other column stratifies by value; an empty cell is its own
``(missing)`` stratum, so no case silently drops out. A model can look fine overall and fail a
subgroup (a published brain-MRI foundation-model study found AUROC 0.74–0.79 in younger age
quartiles and 0.48 in the oldest), so a stratum whose interval lies wholly on the worse side of
the overall interval is flagged ``below``.

Each stratum is scored by :func:`neurofm.results.score_models` on its own cases (a set-level
metric such as AUROC is recomputed in the stratum, not averaged), with case-bootstrap percentile
intervals (:mod:`neurofm.stats.bootstrap`). A stratum with fewer than ``min_cases`` cases gets its
point value and no interval (``too_few``), and one where the metric is undefined (a single class
for AUROC) gets neither (``undefined``): both are reported, never hidden.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from neurofm.errors import NeuroFMError
from neurofm.metrics.registry import METRICS, MetricSpec
from neurofm.results import case_table, score_models
from neurofm.stats.bootstrap import bootstrap_indices
from neurofm.tasks import TaskSpec

MIN_STRATUM_CASES = 10
"""Fewer cases than this: no interval (a percentile interval of a handful of cases is noise)."""

MISSING = "(missing)"
ALL = "(all)"
STRATA_COLUMNS = (
    "model", "task", "column", "stratum", "n_cases", "metric", "value", "ci_low", "ci_high",
    "status",
)  # fmt: skip
"""Columns of ``strata.csv``. ``status``: ok | below | too_few | undefined."""


def strata_columns(header: Sequence[str], spec: TaskSpec) -> list[str]:
    """The labels.csv columns that describe cases: all but case, site and the task's target."""
    return [c for c in header if c not in ("case", "site", spec.target_column)]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def stratum_labels(values: pd.Series, quantiles: int = 4) -> pd.Series:
    """One stratum label per case: quartile ranges for a numeric column with more than
    ``quantiles`` distinct values, the value itself otherwise, ``(missing)`` for empty cells."""
    text = values.astype("string").str.strip()
    empty = text.isna() | (text == "")
    numbers = pd.to_numeric(text.where(~empty), errors="coerce")
    numeric = bool(numbers[~empty].notna().all()) and numbers[~empty].nunique() > quantiles
    labels = text.fillna("").astype(object)
    if numeric:
        bins = pd.qcut(numbers[~empty], quantiles, duplicates="drop")
        codes = bins.cat.codes
        edges = list(bins.cat.categories)
        names = {
            i: f"Q{i + 1} [{_fmt(iv.left if i else numbers.min())}, {_fmt(iv.right)}]"
            for i, iv in enumerate(edges)
        }
        labels[~empty] = codes.map(names)
    labels[empty] = MISSING
    return pd.Series(labels, index=values.index, dtype=object)


def read_case_strata(csv_path: str | Path, spec: TaskSpec) -> pd.DataFrame:
    """``labels.csv`` -> one row per case (index ``case``), one stratum label per extra column."""
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise NeuroFMError(csv_path, f"unreadable CSV ({type(exc).__name__})") from exc
    df.columns = [c.strip() for c in df.columns]
    if "case" not in df.columns:
        raise NeuroFMError(csv_path, "missing column case")
    cols = strata_columns(list(df.columns), spec)
    out = pd.DataFrame({c: stratum_labels(df[c]) for c in cols})
    out.index = pd.Index(df["case"].str.strip(), name="case")
    return out


def _goodness_range(spec: MetricSpec, low: float, high: float) -> tuple[float, float]:
    """Worst and best goodness (larger is better) over an interval of metric values."""
    ends = spec.goodness([low, high])
    best = float(ends.max())
    if spec.best_at_zero and low <= 0 <= high:
        best = 0.0
    return float(ends.min()), best


def below(spec: MetricSpec, stratum: tuple[float, float], overall: tuple[float, float]) -> bool:
    """Whether the stratum's interval lies wholly on the worse side of the overall interval."""
    _, best_stratum = _goodness_range(spec, *stratum)
    worst_overall, _ = _goodness_range(spec, *overall)
    return best_stratum < worst_overall


def _score(
    rows: pd.DataFrame, spec: TaskSpec, n_boot: int, seed: int, alpha: float
) -> dict[str, tuple[int, float, float, float, bool]]:
    """Per model: (cases, value, low, high, defined) of the primary metric on ``rows``."""
    table = case_table(rows, spec, None)
    metric = METRICS[spec.primary_metric]
    scores = score_models(table, metric.name, bootstrap_indices(table.n_cases, n_boot, seed))
    out = {}
    for m, model in enumerate(table.models):
        defined = True
        if metric.degenerate is not None:
            columns = [np.asarray(c)[None] for c in table.columns(metric, m)]
            defined = not bool(np.asarray(metric.degenerate(*columns)).ravel()[0])
        low, high = scores.interval(m, alpha)
        out[model] = (table.n_cases, float(scores.point[m]), low, high, defined)
    return out


def stratify(
    rows: pd.DataFrame,
    spec: TaskSpec,
    case_strata: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_cases: int = MIN_STRATUM_CASES,
) -> pd.DataFrame:
    """The primary metric overall (``column`` ``(all)``) and per stratum, per model
    (columns :data:`STRATA_COLUMNS`); ``rows`` is a tidy results table of ``spec``'s task."""
    metric = METRICS[spec.primary_metric]
    rows = rows[rows["task"] == spec.name]
    overall = _score(rows, spec, n_boot, seed, alpha)
    records: list[tuple[object, ...]] = []
    for model, (n, value, low, high, _) in overall.items():
        records.append((model, spec.name, ALL, ALL, n, metric.name, value, low, high, "ok"))
    for column in case_strata.columns:
        labels = case_strata[column].reindex(rows["case"].unique())
        for stratum in sorted(labels.dropna().unique(), key=_order):
            cases = labels.index[labels == stratum]
            scored = _score(rows[rows["case"].isin(cases)], spec, n_boot, seed, alpha)
            for model, (n, value, low, high, defined) in scored.items():
                status = "ok"
                if not defined:
                    status, value, low, high = "undefined", math.nan, math.nan, math.nan
                elif n < min_cases:
                    status, low, high = "too_few", math.nan, math.nan
                elif below(metric, (low, high), overall[model][2:4]):
                    status = "below"
                records.append(
                    (model, spec.name, column, stratum, n, metric.name, value, low, high, status)
                )
    return pd.DataFrame(records, columns=list(STRATA_COLUMNS))


def _order(label: str) -> tuple[int, str]:
    """Quartiles in order, then values, then ``(missing)`` last."""
    return (2 if label == MISSING else 0 if label.startswith("Q") else 1, label)
