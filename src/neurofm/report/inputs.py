"""Find and read a results folder: the report's input contract.

A results folder holds

- ``results.csv`` (required): tidy, one row per case and metric, columns
  ``model,task,site,case,metric,value`` (read by :func:`neurofm.results.read_results`);
- ``learning_curves.csv`` (optional): ``model,task,shots,metric,value,ci_low,ci_high``;
- ``viewer.json`` (optional): cases for the 3D viewer, see :mod:`neurofm.report.viewer`;
- ``run.json`` (optional): a JSON object of free-form run information (times, settings) shown in
  the header. ``"synthetic": true`` (or ``"benchmark"``/``"data"`` starting with ``synth``)
  marks the numbers as coming from the embedded synthetic benchmark, and the page says so.

A RUN folder is any folder with such a results folder at ``<RUN>/results/``, or one itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from neurofm.errors import NeuroFMError
from neurofm.metrics.registry import METRICS
from neurofm.report.viewer import ViewerCase, read_viewer_cases
from neurofm.results import read_results
from neurofm.tasks import known_tasks

RESULTS_CSV = "results.csv"
LEARNING_CURVES_CSV = "learning_curves.csv"
VIEWER_JSON = "viewer.json"
RUN_JSON = "run.json"
LEARNING_CURVE_COLUMNS = ("model", "task", "shots", "metric", "value", "ci_low", "ci_high")


@dataclass
class ReportInputs:
    """Everything read from one results folder."""

    folder: Path
    results: pd.DataFrame
    learning_curves: pd.DataFrame | None = None
    viewer_cases: list[ViewerCase] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        """Whether run.json marks the data as the embedded synthetic benchmark."""
        if self.run.get("synthetic") is True:
            return True
        return any(
            str(self.run.get(k, "")).lower().startswith("synth") for k in ("benchmark", "data")
        )


def find_results_dir(run_or_results: Path) -> Path:
    """``<RUN>/results`` if it holds results.csv, else the folder itself if it does."""
    path = Path(run_or_results)
    if not path.is_dir():
        raise NeuroFMError(path, "not a folder (expected a run or results folder)")
    for candidate in (path / "results", path):
        if (candidate / RESULTS_CSV).is_file():
            return candidate
    raise NeuroFMError(path, f"no {RESULTS_CSV} here or in {path / 'results'}")


def read_learning_curves(path: Path) -> pd.DataFrame:
    """Read and check ``learning_curves.csv`` (shots positive integers, values finite)."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise NeuroFMError(path, f"unreadable CSV ({exc})") from exc
    missing = [c for c in LEARNING_CURVE_COLUMNS if c not in df.columns]
    if missing:
        raise NeuroFMError(path, f"missing column(s) {missing}")
    if df.empty:
        raise NeuroFMError(path, "no rows")
    try:
        numeric = df[["shots", "value", "ci_low", "ci_high"]].apply(pd.to_numeric)
    except ValueError as exc:
        raise NeuroFMError(path, f"non-numeric shots/value/ci ({exc})") from exc
    if not (numeric["shots"] > 0).all():
        raise NeuroFMError(path, "shots must be positive (the x axis is logarithmic)")
    if not numeric["value"].notna().all():
        raise NeuroFMError(path, "empty value")
    df[["shots", "value", "ci_low", "ci_high"]] = numeric
    for col in ("model", "task", "metric"):
        df[col] = df[col].astype(str)
    unknown = sorted(set(df["metric"]) - set(METRICS))
    if unknown:
        raise NeuroFMError(path, f"unknown metric(s) {unknown} (known: {', '.join(METRICS)})")
    unknown = sorted(set(df["task"]) - set(known_tasks()))
    if unknown:
        known = ", ".join(known_tasks())
        raise NeuroFMError(path, f"unknown task(s) {unknown} (known: {known})")
    return df


def read_run_info(path: Path) -> dict[str, Any]:
    """Read ``run.json``; it must be a JSON object."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NeuroFMError(path, f"unreadable JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise NeuroFMError(path, "expected a JSON object")
    return raw


def load_inputs(folder: Path) -> ReportInputs:
    """Read a results folder; optional files are read only where present."""
    curves = folder / LEARNING_CURVES_CSV
    viewer = folder / VIEWER_JSON
    run = folder / RUN_JSON
    results = read_results([folder / RESULTS_CSV], tasks=known_tasks())
    if results.empty:
        raise NeuroFMError(folder / RESULTS_CSV, "no rows")
    return ReportInputs(
        folder=folder,
        results=results,
        learning_curves=read_learning_curves(curves) if curves.is_file() else None,
        viewer_cases=read_viewer_cases(viewer) if viewer.is_file() else [],
        run=read_run_info(run) if run.is_file() else {},
    )
