"""The tidy results table — the project-wide contract between evaluation, statistics and reports.

One CSV row per model, case and per-case value::

    model,task,site,case,metric,value

``metric`` is one of the task's ``case_rows`` (:class:`neurofm.tasks.TaskSpec`): per-case
metrics for meningioma (dice, nsd, hd95, assd); the raw values that set-level metrics are
recomputed from for infarct (``label``, ``prob``) and brain age (``age``, ``pred``, plus
``abs_error``).
Identifiers are strings (case ``007`` stays ``007``); ``site`` ``all`` is reserved for pooled
summaries. Line numbers in messages count the header as line 1.

Missing predictions (a model without rows for a case that another model scored, in the same task)
are not dropped — that would reward skipping hard cases — but count as the worst case, and the
number of such cases is reported (``n_missing``):

- infarct, brain_age (number outputs): the end of the task's value range farther from the
  reference (:meth:`neurofm.tasks.TaskSpec.worst_prediction`: ``prob = 1 - label``; an age of
  0 or 120 years), so no allowed prediction scores worse;
- meningioma: Dice 0 and NSD 0; HD95 and ASSD the largest value any model has for that task
  (an empty prediction scores the image diagonal, so this is the diagonal whenever some model
  missed a lesion; the image size is not in the table).

Every model of a task is scored on the union of the task's cases, so all models share cases and
one bootstrap index matrix per (task, site) serves them all (``summarise``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurofm.atomic import write_text_atomic
from neurofm.errors import NeuroFMError
from neurofm.metrics.registry import METRICS, MetricSpec
from neurofm.stats.bootstrap import bootstrap_indices, bootstrap_values, percentile_interval
from neurofm.tasks import TASKS, TaskRegistry, TaskSpec

COLUMNS = ("model", "task", "site", "case", "metric", "value")
"""Columns of the tidy per-case table, in file order."""
KEY = COLUMNS[:5]
SUMMARY_COLUMNS = (
    "model",
    "task",
    "site",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n_cases",
    "n_missing",
)
"""Columns of :func:`summarise`'s table."""
ALL_SITES = "all"
"""Site label of summaries that pool every site of a task."""
RESULTS_FILE = "results.csv"
"""File name looked for when a folder is given to :func:`read_results`."""

_RANGES: dict[str, tuple[float, float]] = {
    "prob": (0.0, 1.0),
    "dice": (0.0, 1.0),
    "nsd": (0.0, 1.0),
    "hd95": (0.0, np.inf),
    "assd": (0.0, np.inf),
    "abs_error": (0.0, np.inf),
}


def _line(i: int) -> str:
    return f"line {i + 2}"


def _check_rows(df: pd.DataFrame, where: str, tasks: TaskRegistry) -> pd.DataFrame:
    """Per-frame checks (columns, identifiers, values, task/metric names, duplicates, ranges)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    extra = [c for c in df.columns if c not in COLUMNS]
    if missing or extra:
        raise NeuroFMError(
            where, f"columns must be {','.join(COLUMNS)} (missing {missing}, unexpected {extra})"
        )
    if df.empty:
        raise NeuroFMError(where, "no result rows")
    out = df[list(COLUMNS)].reset_index(drop=True)
    for col in KEY:
        out[col] = out[col].astype(str)
        empty = np.flatnonzero(out[col].str.strip().eq("").to_numpy())
        if empty.size:
            raise NeuroFMError(where, f"{_line(int(empty[0]))}: empty {col}")
    reserved = np.flatnonzero(out["site"].eq(ALL_SITES).to_numpy())
    if reserved.size:
        raise NeuroFMError(where, f"{_line(int(reserved[0]))}: site name {ALL_SITES!r} is reserved")
    raw = out["value"]
    values = pd.to_numeric(raw, errors="coerce").astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values.to_numpy()))
    if bad.size:
        i = int(bad[0])
        raise NeuroFMError(where, f"{_line(i)}: value {raw.iloc[i]!r} is not a finite number")
    out["value"] = values
    unknown_task = np.flatnonzero(~out["task"].isin(list(tasks)).to_numpy())
    if unknown_task.size:
        i = int(unknown_task[0])
        raise NeuroFMError(
            where, f"{_line(i)}: unknown task {out['task'][i]!r} (known: {', '.join(tasks)})"
        )
    for i, (task, metric) in enumerate(zip(out["task"], out["metric"], strict=True)):
        if metric not in tasks[task].case_rows:
            allowed = ", ".join(tasks[task].case_rows)
            raise NeuroFMError(
                where, f"{_line(i)}: {task} has no row {metric!r} (one of {allowed})"
            )
    dup = np.flatnonzero(out.duplicated(list(KEY)).to_numpy())
    if dup.size:
        i = int(dup[0])
        key = "/".join(out.loc[i, list(KEY)])
        raise NeuroFMError(where, f"{_line(i)}: duplicate row for {key}")
    _check_ranges(out, where, tasks)
    return out


def _check_ranges(df: pd.DataFrame, where: str, tasks: TaskRegistry) -> None:
    metric, value = df["metric"].to_numpy(), df["value"].to_numpy()
    for name, (lo, hi) in _RANGES.items():
        bad = np.flatnonzero((metric == name) & ((value < lo) | (value > hi)))
        if bad.size:
            i = int(bad[0])
            raise NeuroFMError(where, f"{_line(i)}: {name} {value[i]} outside [{lo}, {hi}]")
    bad = np.flatnonzero((metric == "label") & ~np.isin(value, (0.0, 1.0)))
    if bad.size:
        raise NeuroFMError(where, f"{_line(int(bad[0]))}: label must be 0 or 1")
    regression = [t for t, spec in tasks.items() if spec.kind == "regression"]
    wide = df[df["task"].isin(regression)].pivot_table(
        index=["model", "site", "case"], columns="metric", values="value", aggfunc="first"
    )
    if {"age", "pred", "abs_error"} <= set(wide.columns):
        gap = (wide["abs_error"] - (wide["pred"] - wide["age"]).abs()).abs()
        wrong = gap[gap > 1e-6 * np.maximum(1.0, wide["age"].abs())]
        if not wrong.empty:
            raise NeuroFMError(
                where, f"abs_error is not |pred - age| for {'/'.join(wrong.index[0])}"
            )


def _check_references(df: pd.DataFrame, where: str, tasks: TaskRegistry) -> None:
    """Reference values agree across models; no prediction for a case without a reference.

    Uses a ``_file`` column, where present, to name the file of the offending row.
    """

    def at(row: pd.Series) -> str:
        return str(row["_file"]) if "_file" in row else where

    for task, spec in tasks.items():
        ref_name = spec.reference_row
        if ref_name is None:
            continue
        rows = df[df["task"] == task]
        refs = rows[rows["metric"] == ref_name]
        spread = refs.groupby(["site", "case"])["value"].agg(["min", "max"])
        conflict = spread[spread["min"] != spread["max"]]
        if not conflict.empty:
            site, case = conflict.index[0]
            clash = refs[(refs["site"] == site) & (refs["case"] == case)]
            first = clash.iloc[0]
            other = clash[clash["value"] != first["value"]].iloc[0]
            raise NeuroFMError(
                at(other),
                f"{task}/{site}/{case}: {ref_name} {other['value']:g} of model "
                f"{other['model']} disagrees with {first['value']:g} of model {first['model']}",
            )
        known = set(zip(refs["site"], refs["case"], strict=True))
        preds = rows[rows["metric"] != ref_name]
        orphan = [
            i
            for i, (site, case) in enumerate(zip(preds["site"], preds["case"], strict=True))
            if (site, case) not in known
        ]
        if orphan:
            row = preds.iloc[orphan[0]]
            raise NeuroFMError(
                at(row),
                f"prediction for unknown case {task}/{row['site']}/{row['case']} "
                f"(model {row['model']}): no {ref_name} row for it",
            )


def validate_results(
    df: pd.DataFrame, where: str | Path = "results", tasks: TaskRegistry = TASKS
) -> pd.DataFrame:
    """Check a tidy table in memory; returns it normalised (string ids, float values).

    Raises NeuroFMError naming ``where`` for missing/unexpected columns, empty identifiers,
    non-numeric values, unknown tasks or rows, duplicates, out-of-range values (label not 0/1,
    prob outside [0, 1], …), references that differ between models, and predictions for cases
    without a reference.
    """
    out = _check_rows(df, str(where), tasks)
    _check_references(out, str(where), tasks)
    return out


def _result_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    if not items:
        raise NeuroFMError(None, "no results files given")
    files = []
    for item in map(Path, items):
        if item.is_dir():
            item = item / RESULTS_FILE
        if not item.is_file():
            raise NeuroFMError(item, "results file does not exist")
        files.append(item)
    return files


def read_results(
    paths: str | Path | Sequence[str | Path], tasks: TaskRegistry = TASKS
) -> pd.DataFrame:
    """Read and validate tidy results CSVs (or folders holding ``results.csv``) into one table.

    Each file is checked on its own (errors name the file); then rows duplicated across files
    and references that disagree between files are errors naming the later file.
    """
    frames = []
    for path in _result_files(paths):
        try:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise NeuroFMError(
                path, f"not a readable CSV ({exc.__class__.__name__}: {exc})"
            ) from exc
        frames.append(_check_rows(raw, str(path), tasks).assign(_file=str(path)))
    table = pd.concat(frames, ignore_index=True)
    dup = table[table.duplicated(list(KEY), keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        same = dup[(dup[list(KEY)] == first[list(KEY)]).all(axis=1)]
        key = "/".join(first[list(KEY)])
        raise NeuroFMError(same.iloc[1]["_file"], f"row {key} also in {same.iloc[0]['_file']}")
    _check_references(table, "results", tasks)
    return table.drop(columns="_file")


def write_results(df: pd.DataFrame, path: str | Path, tasks: TaskRegistry = TASKS) -> Path:
    """Validate and write a tidy table as CSV atomically (columns in :data:`COLUMNS` order)."""
    table = validate_results(df, path, tasks)
    return write_text_atomic(path, table.to_csv(index=False))


@dataclass(frozen=True)
class CaseTable:
    """One task (and site, or all sites) as dense arrays: models x cases per tidy row name."""

    task: str
    site: str
    models: tuple[str, ...]
    cases: tuple[tuple[str, str], ...]
    """(site, case) pairs, sorted."""
    values: dict[str, np.ndarray]
    """Row name -> (n_models, n_cases) values, missing predictions already worst-case filled."""
    filled: dict[str, np.ndarray]
    """Row name -> (n_models, n_cases) bool, True where the value is a worst-case fill."""

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    def has(self, spec: MetricSpec) -> bool:
        """Whether the rows the metric needs exist for this task."""
        return all(name in self.values for name in spec.inputs)

    def columns(self, spec: MetricSpec, model: int) -> list[np.ndarray]:
        """Per-case arrays that ``spec.fn`` takes, for one model."""
        return [self.values[name][model] for name in spec.inputs]

    def n_missing(self, spec: MetricSpec) -> np.ndarray:
        """Per model, the number of cases with a worst-case fill in the metric's inputs."""
        return np.logical_or.reduce([self.filled[name] for name in spec.inputs]).sum(axis=1)


def _worst_fill(
    task: TaskSpec, name: str, ref: np.ndarray | None, task_rows: pd.DataFrame
) -> float | np.ndarray:
    """Worst-case value(s) for a missing row (see the module docstring)."""
    if ref is not None:
        return task.worst_prediction(ref)
    spec = METRICS[name]
    if spec.worst is not None:
        return spec.worst
    observed = task_rows.loc[task_rows["metric"] == name, "value"]
    return float(observed.max() if not spec.higher_is_better else observed.min())


def case_table(df: pd.DataFrame, task: str | TaskSpec, site: str | None = None) -> CaseTable:
    """Dense per-case arrays of a validated tidy table for one task and one site (None: pooled).

    Models are all models with rows for the task; cases the union of their cases in the site.
    ``task``: a built-in task's name or any loaded spec.
    """
    spec = task if isinstance(task, TaskSpec) else TASKS[task]
    task = spec.name
    task_rows = df[df["task"] == task]
    if task_rows.empty:
        raise NeuroFMError("results", f"no rows for task {task}")
    models = tuple(sorted(task_rows["model"].unique()))
    rows = task_rows if site in (None, ALL_SITES) else task_rows[task_rows["site"] == site]
    if rows.empty:
        raise NeuroFMError("results", f"no rows for task {task} at site {site}")
    cases = tuple(sorted(set(zip(rows["site"], rows["case"], strict=True))))
    wide = rows.pivot_table(
        index=["site", "case"], columns=["metric", "model"], values="value", aggfunc="first"
    )
    ref_name = spec.reference_row
    ref: np.ndarray | None = None
    if ref_name is not None:
        ref_wide = wide[ref_name].reindex(index=pd.MultiIndex.from_tuples(cases))
        ref = ref_wide.bfill(axis=1).iloc[:, 0].to_numpy()
        if np.isnan(ref).any():
            site_, case_ = cases[int(np.flatnonzero(np.isnan(ref))[0])]
            raise NeuroFMError("results", f"case {task}/{site_}/{case_} has no {ref_name} row")
    values: dict[str, np.ndarray] = {}
    filled: dict[str, np.ndarray] = {}
    present = set(wide.columns.get_level_values("metric"))
    for name in spec.case_rows:
        if name not in present or name == "abs_error":
            continue
        block = wide[name].reindex(index=pd.MultiIndex.from_tuples(cases), columns=list(models))
        arr = block.to_numpy(dtype=np.float64).T
        if name == ref_name:
            assert ref is not None
            values[name] = np.broadcast_to(ref, arr.shape).copy()
            filled[name] = np.zeros(arr.shape, dtype=bool)
            continue
        gaps = np.isnan(arr)
        worst = np.broadcast_to(np.asarray(_worst_fill(spec, name, ref, task_rows)), arr.shape)
        values[name] = np.where(gaps, worst, arr)
        filled[name] = gaps
    if spec.kind == "regression" and "pred" in values:
        values["abs_error"] = np.abs(values["pred"] - values["age"])
        filled["abs_error"] = filled["pred"]
    return CaseTable(task, site or ALL_SITES, models, cases, values, filled)


@dataclass(frozen=True)
class MetricScores:
    """One metric for every model of a :class:`CaseTable`, on all cases and on each resample."""

    spec: MetricSpec
    models: tuple[str, ...]
    point: np.ndarray
    """(n_models,) metric on all cases."""
    case_values: np.ndarray | None
    """(n_models, n_cases) per-case values for per-case metrics, else None."""
    boot: np.ndarray
    """(n_models, n_boot) metric on each shared resample."""
    valid: np.ndarray
    """(n_boot,) resample is non-degenerate for every model."""
    n_missing: np.ndarray
    """(n_models,) cases scored as worst case."""

    def interval(self, model: int, alpha: float = 0.05) -> tuple[float, float]:
        """Percentile interval of one model over the valid resamples."""
        boot = self.boot[model][self.valid]
        return percentile_interval(boot, alpha, float(self.point[model]))


def score_models(table: CaseTable, metric: str, indices: np.ndarray) -> MetricScores:
    """Score every model of ``table`` on ``metric``, on all cases and on the shared resamples.

    A per-case metric's resample value is the mean of the resampled per-case values; a set-level
    metric is recomputed on each resample (vectorised over resamples by ``spec.rows``).
    """
    spec = METRICS[metric]
    if not table.has(spec):
        raise NeuroFMError("results", f"task {table.task} has no rows for metric {metric}")
    if indices.ndim != 2 or indices.shape[1] != table.n_cases:
        raise NeuroFMError("results", f"bootstrap indices do not match {table.n_cases} cases")
    n_models = len(table.models)
    point = np.array([spec.fn(*table.columns(spec, m)) for m in range(n_models)])
    case_values = None
    if spec.case_fn is not None:
        case_values = np.stack([spec.case_fn(*table.columns(spec, m)) for m in range(n_models)])
    boot = np.empty((n_models, len(indices)))
    valid = np.ones(len(indices), dtype=bool)
    for m in range(n_models):
        boot[m], ok = bootstrap_values(
            spec.rows,
            *table.columns(spec, m),
            indices=indices,
            degenerate=spec.degenerate,
            batched=True,
        )
        valid &= ok
    return MetricScores(spec, table.models, point, case_values, boot, valid, table.n_missing(spec))


def summarise(
    df: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    tasks: TaskRegistry = TASKS,
) -> pd.DataFrame:
    """Every task metric per model and site (and pooled, site ``all``) with bootstrap CIs.

    Columns :data:`SUMMARY_COLUMNS`. Bootstrap indices come from ``seed`` and are shared by all
    models of a (task, site); metrics whose rows are absent from the table are skipped.
    ``tasks``: the tasks the table may hold (a user's task file adds its spec,
    :func:`neurofm.tasks.with_task`).
    """
    table_df = validate_results(df, tasks=tasks)
    rows = []
    for task in [t for t in tasks if t in set(table_df["task"])]:
        sites = sorted(table_df.loc[table_df["task"] == task, "site"].unique())
        for site in [*sites, ALL_SITES]:
            table = case_table(table_df, tasks[task], site)
            indices = bootstrap_indices(table.n_cases, n_boot, seed)
            for name in tasks[task].metrics:
                if not table.has(METRICS[name]):
                    continue
                scores = score_models(table, name, indices)
                for m, model in enumerate(table.models):
                    low, high = scores.interval(m, alpha)
                    value = float(scores.point[m])
                    n_missing = int(scores.n_missing[m])
                    rows.append(
                        (model, task, site, name, value, low, high, table.n_cases, n_missing)
                    )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
