"""The metric registry: how each summary metric reads the tidy results table, and per-case scoring.

Two levels, kept apart on purpose:

- *per-case* rows are what a model produces for one case and what the tidy table stores, fixed
  by the task kind (:data:`KIND_CASE_ROWS`): for segmentation the per-case metrics themselves
  (dice, nsd, hd95, assd); for classification the raw ``label`` and ``prob``; for regression the
  raw ``age`` and ``pred`` plus ``abs_error``;
- *summary* metrics (:data:`METRICS`; which ones a task reports is on its
  :class:`~neurofm.tasks.TaskSpec`) are computed from those rows over a set of cases.
  AUROC, AP, balanced accuracy, ECE, RMSE, Pearson r and bias are set-level: a bootstrap
  resamples cases and recomputes them; they are not means of anything.
  Dice, NSD, HD95, ASSD and MAE are means of per-case values (``case_fn``), which is what lets
  rank-then-aggregate and the Wilcoxon test work case by case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from neurofm.errors import NeuroFMError
from neurofm.metrics.classification import (
    auroc,
    auroc_rows,
    average_precision,
    average_precision_rows,
    balanced_accuracy,
    balanced_accuracy_rows,
    check_binary,
    expected_calibration_error,
    expected_calibration_error_rows,
    single_class_rows,
)
from neurofm.metrics.regression import (
    absolute_error,
    bias,
    bias_rows,
    check_pair,
    constant_rows,
    mae,
    mae_rows,
    pearson,
    pearson_rows,
    rmse,
    rmse_rows,
)
from neurofm.metrics.segmentation import NSD_TOLERANCE_MM, SpacingLike, segmentation_metrics

TaskKind = Literal["classification", "segmentation", "regression"]


def mean(values: ArrayLike) -> float:
    """Mean of per-case values (the summary of every per-case metric)."""
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def mean_rows(values: np.ndarray) -> np.ndarray:
    """Row-wise mean (the bootstrap kernel of every per-case metric)."""
    return np.asarray(values.mean(axis=-1))


def _identity(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class MetricSpec:
    """A summary metric: how to compute it from tidy-table rows and which way is better."""

    name: str
    fn: Callable[..., float]
    """Summary over a set of cases, called as ``fn(*columns)`` with one array per ``inputs``."""
    higher_is_better: bool
    task_kind: TaskKind
    inputs: tuple[str, ...]
    """Tidy-table ``metric`` names read per case, in the order ``fn`` takes them."""
    rows: Callable[..., np.ndarray]
    """``fn`` on each row of 2-D inputs (one resample per row), without input checks."""
    case_fn: Callable[..., np.ndarray] | None = None
    """Per-case values whose mean is ``fn`` (None: set-level only, no per-case values)."""
    degenerate: Callable[..., np.ndarray] | None = None
    """Row-wise like ``rows``: True where the metric is undefined (a resample of one class)."""
    best_at_zero: bool = False
    """Better the closer to 0 (bias): ranked by ``-|value|``."""
    worst: float | None = None
    """Worst possible per-case value where one exists (Dice 0); None: unbounded."""

    @property
    def per_case(self) -> bool:
        """Whether the metric is a mean of per-case values."""
        return self.case_fn is not None

    def goodness(self, values: ArrayLike) -> np.ndarray:
        """Values turned so that larger is always better (for ranking and one-sided tests)."""
        v = np.asarray(values, dtype=np.float64)
        if self.best_at_zero:
            return -np.abs(v)
        return v if self.higher_is_better else -v


_LP = ("label", "prob")
_AP = ("age", "pred")
METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        MetricSpec(
            "auroc", auroc, True, "classification", _LP, auroc_rows, None, single_class_rows
        ),
        MetricSpec(
            "ap",
            average_precision,
            True,
            "classification",
            _LP,
            average_precision_rows,
            None,
            single_class_rows,
        ),
        MetricSpec(
            "balanced_accuracy",
            balanced_accuracy,
            True,
            "classification",
            _LP,
            balanced_accuracy_rows,
            None,
            single_class_rows,
        ),
        MetricSpec(
            "ece",
            expected_calibration_error,
            False,
            "classification",
            _LP,
            expected_calibration_error_rows,
        ),
        MetricSpec("dice", mean, True, "segmentation", ("dice",), mean_rows, _identity, worst=0.0),
        MetricSpec("nsd", mean, True, "segmentation", ("nsd",), mean_rows, _identity, worst=0.0),
        MetricSpec("hd95", mean, False, "segmentation", ("hd95",), mean_rows, _identity),
        MetricSpec("assd", mean, False, "segmentation", ("assd",), mean_rows, _identity),
        MetricSpec("mae", mae, False, "regression", _AP, mae_rows, absolute_error),
        MetricSpec("rmse", rmse, False, "regression", _AP, rmse_rows),
        MetricSpec("pearson", pearson, True, "regression", _AP, pearson_rows, None, constant_rows),
        MetricSpec("bias", bias, False, "regression", _AP, bias_rows, best_at_zero=True),
    )
}
"""Summary metrics by name."""

KIND_CASE_ROWS: dict[str, tuple[str, ...]] = {
    "classification": ("label", "prob"),
    "segmentation": ("dice", "nsd", "hd95", "assd"),
    "regression": ("age", "pred", "abs_error"),
}
"""Per-case rows (tidy-table ``metric`` values) that a model's results hold, per task kind."""

KIND_REFERENCE_ROW: dict[str, str] = {"classification": "label", "regression": "age"}
"""Rows that hold the reference standard, identical for every model that scored a case."""


def case_metrics(
    kind: str,
    prediction: float | ArrayLike,
    reference: float | ArrayLike,
    *,
    spacing: SpacingLike | None = None,
    tolerance_mm: float = NSD_TOLERANCE_MM,
) -> dict[str, float]:
    """Tidy per-case rows ``{metric: value}`` of one case of a task kind (:data:`KIND_CASE_ROWS`).

    classification: ``prediction`` a probability, ``reference`` a 0/1 label. regression: two
    numbers. segmentation: binary masks of one shape and ``spacing`` (voxel sizes in mm or the
    4x4 affine).
    """
    if kind not in KIND_CASE_ROWS:
        raise NeuroFMError(kind, f"unknown task kind (known: {', '.join(KIND_CASE_ROWS)})")
    if kind == "segmentation":
        if spacing is None:
            raise NeuroFMError(kind, "segmentation metrics need the voxel spacing or affine")
        return segmentation_metrics(
            np.asarray(prediction), np.asarray(reference), spacing, tolerance_mm
        )
    pred_1, ref_1 = np.ravel(np.asarray(prediction, float)), np.ravel(np.asarray(reference, float))
    if pred_1.size != 1 or ref_1.size != 1:
        raise NeuroFMError(kind, "prediction and reference must be single numbers")
    if kind == "classification":
        y, p = check_binary(ref_1, pred_1, kind)
        return {"label": float(y[0]), "prob": float(p[0])}
    age, pred = check_pair(ref_1, pred_1, kind)
    return {"age": float(age[0]), "pred": float(pred[0]), "abs_error": float(abs(pred[0] - age[0]))}
