"""Prior and hand-feature baselines: fitted on a raw training split, applied to any split.

A :class:`Baseline` reads the raw task layout (``<split>/<case>/<sequence>.nii.gz`` +
``labels.csv``, docs/architecture.md) and writes predictions exactly where and how a model does
(``<out>/<case>.txt``, or ``<out>/<case>.nii.gz`` in the input file's shape and affine), so
:func:`neurofm.evaluate.evaluate_predictions` scores both unchanged.

- ``prior``: the training cases' mean age, their infarct prevalence as a constant probability,
  an empty meningioma mask;
- ``hand``: one feature of :mod:`neurofm.baselines.features` per task with a fit on the
  training cases only — a 1-D logistic regression of the label on the infarct score (monotone, so
  the AUROC is the feature's whenever the fitted slope is positive), a least-squares line of age
  on the dark-T1 fraction, and the z(DWI) threshold on the grid :data:`MENINGIOMA_THRESHOLDS`
  with the highest mean training Dice (ties: the lowest threshold).

Cases need the sequences the task's models need (``TaskSpec.select``), so a baseline never runs
on inputs a model would be refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from rich.progress import track
from sklearn.linear_model import LinearRegression, LogisticRegression

from neurofm.atomic import write_text_atomic
from neurofm.baselines import features
from neurofm.data.preprocess import to_file_order
from neurofm.errors import NeuroFMError
from neurofm.io.nifti import load_nifti, load_volume, save_nifti
from neurofm.io.splits import Case, read_case_dir, read_split
from neurofm.metrics.segmentation import dice
from neurofm.tasks import TaskSpec, get_task
from neurofm.train.runs import case_dirs, refuse_existing_outputs

BASELINES: tuple[str, ...] = ("prior", "hand")
FEATURE_SEQUENCES: dict[str, tuple[str, ...]] = {
    "infarct": ("dwi_b1000", "adc"),
    "brain_age": ("t1",),
    "meningioma": ("dwi_b1000",),
}
MENINGIOMA_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(41))  # z 0..4
INFO_FILE = "baseline.json"

Prediction = float | tuple[np.ndarray, np.ndarray]  # a number, or (mask, affine) on file grid


def _suffix(spec: TaskSpec) -> str:
    return ".nii.gz" if spec.kind == "segmentation" else ".txt"


def _file_geometry(path: Path) -> tuple[tuple[int, int, int], np.ndarray]:
    img = nib.load(str(path))
    assert isinstance(img, nib.Nifti1Image | nib.Nifti2Image)
    x, y, z = (int(s) for s in img.shape[:3])
    return (x, y, z), np.asarray(img.affine, dtype=np.float64)


def _channels(case: Case, task: str) -> tuple[list[np.ndarray], np.ndarray]:
    """The feature's sequences of a case (RAS+ arrays) and their affine; head must be non-empty."""
    names = FEATURE_SEQUENCES[task]
    volume = load_volume({s: case.sequences[s] for s in names})
    arrays = list(volume.data)
    if not features.head_mask(*arrays).any():
        raise NeuroFMError(
            case.folder,
            f"no voxel > 0 in {'/'.join(names)}: the hand baseline needs skull-stripped inputs "
            "with a zero background",
        )
    return arrays, volume.affine


def _feature(case: Case, task: str) -> float:
    arrays, _ = _channels(case, task)
    if task == "infarct":
        return features.infarct_score(arrays[0], arrays[1])
    return features.dark_t1_fraction(arrays[0])


def _dwi_z(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """z(DWI) within the head, the head mask, and the RAS+ affine of a meningioma case."""
    (dwi,), affine = _channels(case, "meningioma")
    head = features.head_mask(dwi)
    return features.zscore_within(dwi, head), head, affine


@dataclass(frozen=True)
class Baseline:
    """A fitted baseline: its rule, the numbers fitted on the training cases, and their ids."""

    name: str
    task: str
    params: dict[str, float]
    train_dir: str
    train_cases: tuple[str, ...]

    def predict_case(self, case: Case) -> Prediction:
        """A probability, an age, or a uint8 mask with the affine of the case's input files."""
        spec = get_task(self.task)
        if spec.kind == "segmentation":
            first = case.sequences[spec.select(case.sequences, str(case.folder))[0]]
            shape, file_affine = _file_geometry(first)
            if self.name == "prior":
                return np.zeros(shape, dtype=np.uint8), file_affine
            z, head, ras_affine = _dwi_z(case)
            mask = features.threshold_segment(z, head, self.params["threshold"])
            return to_file_order(mask.astype(np.uint8), ras_affine, file_affine), file_affine
        if self.name == "prior":
            return self.params["constant"]
        x = _feature(case, self.task)
        if spec.kind == "classification":
            logit = self.params["intercept"] + self.params["slope"] * x
            return float(1.0 / (1.0 + np.exp(-logit)))
        return float(self.params["intercept"] + self.params["slope"] * x)

    def predict_split(
        self, input_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False,
        progress: bool = False,
    ) -> list[Path]:  # fmt: skip
        """Predict every case folder under ``input_dir`` (or that one case) into ``out_dir``.

        All predictions are computed before the first file is written, so bad input leaves
        nothing half-written; existing predictions are refused unless ``overwrite``. Writes
        ``baseline.json`` (rule, fitted numbers, training cases) beside them.
        """
        spec = get_task(self.task)
        out = Path(out_dir)
        folders = case_dirs(Path(input_dir))
        suffix = _suffix(spec)
        refuse_existing_outputs([out / f"{f.name}{suffix}" for f in folders], overwrite)
        cases = [read_case_dir(f, self.task) for f in folders]
        values: list[Prediction] = []
        steps = track(cases, description=f"{self.name} {self.task}") if progress else cases
        for case in steps:
            values.append(self.predict_case(case))
        written = []
        for case, value in zip(cases, values, strict=True):
            path = out / f"{case.case_id}{suffix}"
            if isinstance(value, tuple):
                written.append(save_nifti(value[0], value[1], path, dtype=np.uint8))
            else:
                written.append(write_text_atomic(path, f"{value:.6f}\n"))
        write_text_atomic(out / INFO_FILE, json.dumps(self.to_dict(), indent=2) + "\n")
        return written

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``train_cases`` as a list)."""
        d = asdict(self)
        d["train_cases"] = list(self.train_cases)
        return d


def _fit_params(name: str, task: str, cases: list[Case], where: Path) -> dict[str, float]:
    spec = get_task(task)
    if name == "prior":
        if spec.kind == "segmentation":
            return {}
        target = [c.label if spec.kind == "classification" else c.age for c in cases]
        return {"constant": float(np.mean(np.asarray(target, dtype=np.float64)))}
    if spec.kind == "segmentation":
        return {"threshold": _fit_threshold(cases)}
    x = np.asarray([_feature(c, task) for c in cases], dtype=np.float64).reshape(-1, 1)
    if spec.kind == "classification":
        y = np.asarray([c.label for c in cases], dtype=np.float64)
        if len(np.unique(y)) < 2:
            raise NeuroFMError(where, "hand baseline needs positive and negative training cases")
        # standardise so the default L2 penalty means the same at any feature scale
        mu, sd = float(x.mean()), float(x.std()) or 1.0
        clf = LogisticRegression().fit((x - mu) / sd, y)
        slope = float(clf.coef_[0, 0]) / sd
        return {"intercept": float(clf.intercept_[0]) - slope * mu, "slope": slope}
    ages = np.asarray([c.age for c in cases], dtype=np.float64)
    reg = LinearRegression().fit(x, ages)
    return {"intercept": float(reg.intercept_), "slope": float(reg.coef_[0])}


def _fit_threshold(cases: list[Case]) -> float:
    """The grid threshold with the highest mean Dice over the training cases."""
    scores = np.zeros(len(MENINGIOMA_THRESHOLDS))
    for case in cases:
        assert case.mask is not None  # read_split requires it
        z, head, _ = _dwi_z(case)
        ref, _ = load_nifti(case.mask)
        if ref.shape != z.shape:
            raise NeuroFMError(case.mask, f"mask shape {ref.shape} differs from the DWI {z.shape}")
        for i, t in enumerate(MENINGIOMA_THRESHOLDS):
            scores[i] += dice(features.threshold_segment(z, head, t), ref > 0)
    return float(MENINGIOMA_THRESHOLDS[int(np.argmax(scores))])


def fit_baseline(
    name: str, task: str, train_dir: str | Path, cases: Sequence[str] | None = None
) -> Baseline:
    """Fit baseline ``name`` for ``task`` on a labelled training split (``labels.csv``).

    ``cases`` restricts the fit to those case ids (e.g. a few-shot subset drawn per seed, the
    same cases the model arms trained on); default all cases of the split.
    """
    if name == "random":
        raise NeuroFMError(
            None,
            "the random-features baseline trains a probe: `neurofm random-init`, then `neurofm "
            "finetune --init <that run> --mode probe` (docs/baselines.md)",
        )
    if name not in BASELINES:
        raise NeuroFMError(None, f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    if name == "hand" and get_task(task).name not in FEATURE_SEQUENCES:
        raise NeuroFMError(
            None, f"no hand-feature rule for task {get_task(task).name!r} (there is one for "
            f"{', '.join(FEATURE_SEQUENCES)})",
        )  # fmt: skip
    spec = get_task(task)
    where = Path(train_dir)
    split = read_split(where, spec.name)
    if cases is not None:
        by_id = {c.case_id: c for c in split}
        unknown = [c for c in cases if c not in by_id]
        if unknown:
            raise NeuroFMError(where, f"training case {unknown[0]!r} is not in this split")
        split = [by_id[c] for c in sorted(set(cases))]
        if not split:
            raise NeuroFMError(where, "no training cases selected")
    params = _fit_params(name, spec.name, split, where)
    return Baseline(name, spec.name, params, str(where), tuple(c.case_id for c in split))
