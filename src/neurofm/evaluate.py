"""Score a folder of predictions against a split's reference standard (docs/tasks.md).

Reads ``<pred>/<case>.txt`` (a number: probability, age in years) or ``<pred>/<case>.nii.gz``
(a mask) for every case of ``<split>/labels.csv`` and returns tidy per-case rows
(:mod:`neurofm.results`). Only the reference standard is read — labels.csv and, for mask tasks,
``<split>/<case>/<mask>`` — never the input images, so a labels-only folder (as FOMO25 keeps its
test labels) can be scored. Policies, all explicit and reported in ``summary.json``:

- a case without a prediction is scored as the worst case (a number: the end of the task's value
  range farther from the reference, :meth:`~neurofm.tasks.TaskSpec.worst_prediction`; a mask:
  :func:`~neurofm.metrics.segmentation.missing_mask_metrics`) and listed under ``missing``;
- a prediction for a case the split does not have, a mask whose shape or affine differs from the
  reference, a probability outside [0, 1] or a non-numeric value is an error naming the file. A
  regression output outside the task's value range is scored as it is, as before: the range fixes
  what a missing prediction scores, and no output inside it scores worse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from neurofm.errors import NeuroFMError
from neurofm.io.nifti import load_nifti
from neurofm.io.prediction_files import read_mask, read_number
from neurofm.io.splits import LABELS_CSV, Case, read_references
from neurofm.metrics.registry import case_metrics
from neurofm.metrics.segmentation import missing_mask_metrics
from neurofm.stats.strata import MIN_STRATUM_CASES, STRATA_COLUMNS, read_case_strata, stratify
from neurofm.tasks import TaskLike, TaskSpec, get_task


@dataclass
class Evaluation:
    """Tidy per-case rows plus the cases that had no prediction."""

    rows: pd.DataFrame
    missing: list[str] = field(default_factory=list)


def _case_values(spec: TaskSpec, case: Case, path: Path | None) -> dict[str, float]:
    """Per-case rows of one case; ``path`` None: the prediction is missing (worst case)."""
    if spec.kind == "segmentation":
        assert case.mask is not None
        ref, affine = load_nifti(case.mask)
        if path is None:
            return missing_mask_metrics(ref.shape, affine)
        pred, _ = read_mask(path, {1}, (tuple(ref.shape), affine))
        return case_metrics(spec.kind, pred > 0, ref > 0, spacing=affine)
    target = case.label if spec.kind == "classification" else case.age
    assert target is not None
    if path is None:
        return case_metrics(spec.kind, float(spec.worst_prediction(target)), target)
    strict = spec.value_range if spec.kind == "classification" else None
    return case_metrics(spec.kind, read_number(path, strict), target)


def evaluate_predictions(
    task: TaskLike, predictions: str | Path, references: str | Path, model: str = "model"
) -> Evaluation:
    """Per-case tidy rows (``model,task,site,case,metric,value``) of one model on one split."""
    spec = get_task(task)
    pred_dir, ref_dir = Path(predictions), Path(references)
    if not pred_dir.is_dir():
        raise NeuroFMError(pred_dir, "predictions folder does not exist")
    cases = read_references(ref_dir, spec)
    suffix = spec.prediction_suffix
    known = {c.case_id for c in cases}
    for p in sorted(pred_dir.iterdir()):
        if p.name.endswith(suffix) and p.name[: -len(suffix)] not in known:
            raise NeuroFMError(p, f"prediction for a case that {ref_dir} does not have")
    rows: list[tuple[str, str, str, str, str, float]] = []
    missing: list[str] = []
    for case in cases:
        path = pred_dir / f"{case.case_id}{suffix}"
        if not path.exists():
            missing.append(case.case_id)
        values = _case_values(spec, case, path if path.exists() else None)
        rows += [(model, spec.name, case.site, case.case_id, k, v) for k, v in values.items()]
    df = pd.DataFrame(rows, columns=["model", "task", "site", "case", "metric", "value"])
    return Evaluation(df, missing)


def wide_metrics(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per case (``case, site, <metric>...``): the ``metrics.csv`` of ``evaluate``."""
    wide = rows.pivot_table(index=["case", "site"], columns="metric", values="value")
    return wide.reset_index().rename_axis(columns=None)


def evaluate_strata(
    rows: pd.DataFrame,
    task: TaskLike,
    references: str | Path,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    min_cases: int = MIN_STRATUM_CASES,
) -> tuple[pd.DataFrame, list[str]]:
    """The primary metric per stratum of the extra labels.csv columns
    (:func:`neurofm.stats.strata.stratify`), and one warning per stratum without an interval,
    naming the file and the column. No extra columns: an empty table."""
    spec = get_task(task)
    csv_path = Path(references) / LABELS_CSV
    case_strata = read_case_strata(csv_path, spec)
    if case_strata.columns.empty:
        return pd.DataFrame(columns=list(STRATA_COLUMNS)), []
    table = stratify(rows, spec, case_strata, n_boot=n_boot, seed=seed, min_cases=min_cases)
    warnings = []
    for r in table.itertuples():
        if r.status == "too_few":
            why = f"too few for an interval (fewer than {min_cases})"
        elif r.status == "undefined":
            why = f"{r.metric} is undefined there (e.g. a single class)"
        else:
            continue
        warnings.append(
            f"{csv_path}: {r.column}: stratum {r.stratum} ({r.model}) has {r.n_cases} case(s), "
            + why
        )
    return table, warnings
