"""Score a folder of predictions against a labelled split (DESIGN.md §1, §9).

Reads ``<pred>/<case>.txt`` (infarct probability, brain age in years) or ``<pred>/<case>.nii.gz``
(meningioma mask) for every case of ``<split>/labels.csv`` and returns tidy per-case rows
(:mod:`neurofm.results`). Policies, all explicit and reported in ``summary.json``:

- a case without a prediction is scored as the worst case (infarct ``prob = 1 - label``;
  brain age the farther end of :data:`~neurofm.results.WORST_AGE_YEARS`; meningioma Dice 0,
  NSD 0, HD95 = ASSD = image diagonal) and listed under ``missing``;
- a prediction for a case the split does not have, a mask whose shape or affine differs from the
  reference, a probability outside [0, 1] or a non-numeric value is an error naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from neurofm.errors import NeuroFMError
from neurofm.io.nifti import load_nifti
from neurofm.io.splits import Case, read_split
from neurofm.metrics import case_metrics
from neurofm.results import WORST_AGE_YEARS
from neurofm.tasks import get_task

PRED_SUFFIX = {"segmentation": ".nii.gz", "classification": ".txt", "regression": ".txt"}


@dataclass
class Evaluation:
    """Tidy per-case rows plus the cases that had no prediction."""

    rows: pd.DataFrame
    missing: list[str] = field(default_factory=list)


def read_number(path: Path, kind: str) -> float:
    """One finite number from a prediction text file; probabilities must lie in [0, 1]."""
    text = path.read_text().strip()
    try:
        value = float(text)
    except ValueError:
        raise NeuroFMError(path, f"prediction {text[:30]!r} is not a number") from None
    if not math.isfinite(value):
        raise NeuroFMError(path, f"prediction {value} is not finite")
    if kind == "classification" and not 0.0 <= value <= 1.0:
        raise NeuroFMError(path, f"probability {value} outside [0, 1]")
    return value


def _file_geometry(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    img = nib.load(str(path))
    assert isinstance(img, nib.Nifti1Image | nib.Nifti2Image)
    return tuple(int(s) for s in img.shape), np.asarray(img.affine)


def _mask_metrics(pred_path: Path, ref_path: Path, task: str) -> dict[str, float]:
    ref_shape, ref_affine = _file_geometry(ref_path)
    pred_shape, pred_affine = _file_geometry(pred_path)
    if pred_shape != ref_shape:
        raise NeuroFMError(pred_path, f"mask shape {pred_shape} differs from reference {ref_shape}")
    if not np.allclose(pred_affine, ref_affine, atol=1e-3):
        raise NeuroFMError(pred_path, "mask affine differs from the reference's")
    pred, affine = load_nifti(pred_path)
    ref, _ = load_nifti(ref_path)
    if not np.isin(pred, (0, 1)).all():
        raise NeuroFMError(pred_path, "mask values are not binary (0/1)")
    return case_metrics(task, pred > 0, ref > 0, spacing=affine)


def _worst_case(case: Case, task: str) -> dict[str, float]:
    kind = get_task(task).kind
    if kind == "classification":
        assert case.label is not None
        return case_metrics(task, 1.0 - case.label, case.label)
    if kind == "regression":
        assert case.age is not None
        lo, hi = WORST_AGE_YEARS
        worst = lo if abs(case.age - lo) >= abs(case.age - hi) else hi
        return case_metrics(task, worst, case.age)
    assert case.mask is not None
    shape, affine = _file_geometry(case.mask)
    diagonal = float(
        np.sqrt(np.sum((np.asarray(shape) * np.sqrt((affine[:3, :3] ** 2).sum(0))) ** 2))
    )
    return {"dice": 0.0, "nsd": 0.0, "hd95": diagonal, "assd": diagonal}


def evaluate_predictions(
    task: str, predictions: str | Path, references: str | Path, model: str = "model"
) -> Evaluation:
    """Per-case tidy rows (``model,task,site,case,metric,value``) of one model on one split."""
    spec = get_task(task)
    pred_dir, ref_dir = Path(predictions), Path(references)
    if not pred_dir.is_dir():
        raise NeuroFMError(pred_dir, "predictions folder does not exist")
    cases = read_split(ref_dir, task)
    suffix = PRED_SUFFIX[spec.kind]
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
            values = _worst_case(case, task)
        elif spec.kind == "segmentation":
            assert case.mask is not None
            values = _mask_metrics(path, case.mask, task)
        else:
            ref = case.label if spec.kind == "classification" else case.age
            assert ref is not None
            values = case_metrics(task, read_number(path, spec.kind), ref)
        rows += [(model, task, case.site, case.case_id, k, float(v)) for k, v in values.items()]
    df = pd.DataFrame(rows, columns=["model", "task", "site", "case", "metric", "value"])
    return Evaluation(df, missing)


def wide_metrics(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per case (``case, site, <metric>...``): the ``metrics.csv`` of ``evaluate``."""
    wide = rows.pivot_table(index=["case", "site"], columns="metric", values="value")
    return wide.reset_index().rename_axis(columns=None)
