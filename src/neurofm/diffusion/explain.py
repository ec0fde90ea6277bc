"""Error-difference maps of a diffusion classifier, scored where the lesion is known.

The map of a case is ``error(no infarct) - error(infarct)`` per voxel, averaged over the rule's
draws (:meth:`~neurofm.diffusion.predictor.DiffusionPredictor.error_map`), written as NIfTI in
the input file's geometry. Where the benchmark stores a lesion mask
(:func:`neurofm.explain.case.lesion_mask`), it is scored with the ``explain`` command's
localisation measures (pointing game, energy in lesion) so the numbers compare with its CAMs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import track

from neurofm.atomic import write_text_atomic
from neurofm.data.preprocess import preprocess
from neurofm.diffusion.classify import ClassifierSettings
from neurofm.diffusion.predictor import DiffusionPredictor
from neurofm.explain.case import lesion_mask, read_mask
from neurofm.explain.localisation import energy_in_lesion, pointing_game
from neurofm.io.nifti import save_nifti
from neurofm.predict import case_inputs

MAP_SUFFIX = "_error_diff.nii.gz"


def explain_cases(
    predictor: DiffusionPredictor,
    cases: Sequence[Path],
    out_dir: Path,
    rule: ClassifierSettings | None = None,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Write each case's map to ``out_dir/<case>_error_diff.nii.gz`` and return one row per
    case: probability, vote entropy, seconds, and pointing/energy where a mask exists (NaN
    elsewhere) beside ``lesion_share``, the lesion's share of the mapped voxels: the energy a
    map that is flat over the head would score. ``out_dir/localisation.csv`` holds the rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in track(cases, description="diffusion maps", disable=not show_progress):
        t0 = time.perf_counter()
        volume, file_affine = case_inputs(Path(case), predictor)
        prep = preprocess(volume, predictor.params, file_affine=file_affine)
        verdict, diff, affine = predictor.error_map(prep, rule)
        seconds = time.perf_counter() - t0
        save_nifti(diff, affine, out_dir / f"{Path(case).name}{MAP_SUFFIX}")
        pointing = energy = chance = float("nan")
        mask_path = lesion_mask(Path(case), predictor.task.name)
        if mask_path is not None:
            mask = read_mask(mask_path, diff.shape)
            if mask.any():
                pointing, energy = pointing_game(diff, mask), energy_in_lesion(diff, mask)
                chance = float(mask[diff != 0].mean()) if (diff != 0).any() else 0.0
        rows.append({
            "case": Path(case).name, "probability": verdict.probability,
            "vote_entropy": verdict.entropy, "mean_gap": verdict.mean_gap,
            "pointing_game": pointing, "energy_in_lesion": energy,
            "lesion_share": chance, "seconds": seconds,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    write_text_atomic(out_dir / "localisation.csv", table.to_csv(index=False))
    return table


def localisation_summary(table: pd.DataFrame) -> dict[str, float]:
    """Means over the cases with a lesion mask (NaN rows left out), and how many there were."""
    scored = table.dropna(subset=["pointing_game"])
    return {
        "cases_with_mask": float(len(scored)),
        "pointing_game": float(np.mean(scored["pointing_game"])) if len(scored) else float("nan"),
        **{
            key: float(np.mean(scored[key])) if len(scored) else float("nan")
            for key in ("energy_in_lesion", "lesion_share")
        },
    }
