"""Case folders, labels and black-box prediction files for the monitor commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurofm.errors import NeuroFMError
from neurofm.io.prediction_files import read_number
from neurofm.io.splits import read_split
from neurofm.train.runs import case_dirs


def input_cases(path: Path) -> list[Path]:
    """A case folder, or a split's case folders (sorted)."""
    return case_dirs(Path(path))


def split_labels(split: Path, task: str) -> tuple[list[Path], np.ndarray]:
    """Case folders and 0/1 labels of a labelled classification split (``labels.csv``)."""
    cases = read_split(split, task)
    if not cases:
        raise NeuroFMError(split, "no cases")
    labels = np.array([c.label for c in cases], dtype=float)
    return [c.folder for c in cases], labels


def read_predictions(folder: Path, case_ids: list[str]) -> np.ndarray:
    """Probabilities ``<folder>/<case>.txt`` for exactly ``case_ids``: a prediction for an unknown
    case, or a case without one, is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NeuroFMError(folder, "predictions folder does not exist")
    files = {p.name[: -len(".txt")]: p for p in folder.iterdir() if p.name.endswith(".txt")}
    unknown = sorted(set(files) - set(case_ids))
    if unknown:
        raise NeuroFMError(
            files[unknown[0]], f"prediction for unknown case {unknown[0]!r} (not in the split)"
        )
    missing = [c for c in case_ids if c not in files]
    if missing:
        raise NeuroFMError(
            folder, f"no prediction for case {missing[0]!r} ({len(missing)} missing)"
        )
    return np.array([read_number(files[c], (0.0, 1.0)) for c in case_ids])
