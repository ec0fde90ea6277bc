"""The localisation and sanity table: every method scored on benchmark cases whose lesion is known.

For each arm (e.g. pretrained and scratch run of one task) and each case with a non-empty lesion
mask, every method's map (CAMs at the model's last stage) is scored by

* ROAD (faithfulness, on the model-input grid),
* pointing game and energy inside the lesion (on the case file's grid, against the mask),
* rank correlation with the same method's map of a re-initialised model (sanity: lower is
  better; a map that survives randomisation does not explain the model).

Each column gets a case-bootstrap percentile CI (:mod:`neurofm.stats.bootstrap`); all methods of
an arm share one resampling of its cases, so they are compared on the same case sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.explain.case import (
    EmptyRegion,
    explain_case,
    lesion_mask,
    model_input,
    randomised_model,
    read_mask,
    road_case,
    to_file_grid,
)
from neurofm.explain.localisation import energy_in_lesion, pointing_game, rank_correlation
from neurofm.explain.road import DEFAULT_FRACTIONS
from neurofm.predict import Predictor
from neurofm.stats.bootstrap import bootstrap_ci, bootstrap_indices

COLUMNS = ("road", "pointing_game", "energy_in_lesion", "randomisation_corr")


@dataclass(frozen=True)
class CaseScore:
    """One method on one case of one arm."""

    arm: str
    case: str
    method: str
    road: float
    pointing_game: float
    energy_in_lesion: float
    randomisation_corr: float
    constant: bool


def score_case(
    predictor: Predictor,
    arm: str,
    case_dir: Path,
    methods: Sequence[str],
    fractions: Sequence[float],
    samples: int,
    seed: int,
) -> list[CaseScore]:
    """All methods on one case (empty list when it has no lesion mask or lesion voxel)."""
    mask_path = lesion_mask(case_dir, predictor.task.name)
    if mask_path is None:
        return []
    inp = model_input(predictor, case_dir)
    maps = explain_case(predictor, inp, methods, samples=samples)
    lesion = read_mask(mask_path, to_file_grid(maps[0].cam, inp)[0].shape)
    if not lesion.any():
        return []
    rand = explain_case(
        predictor, inp, methods, model=randomised_model(predictor, seed), samples=samples
    )
    head = inp.head
    out = []
    for a, r in zip(maps, rand, strict=True):
        on_file = to_file_grid(a.cam, inp)[0]
        out.append(
            CaseScore(
                arm,
                inp.case,
                a.method,
                road_case(predictor, inp, a.cam, fractions).score,
                pointing_game(on_file, lesion),
                energy_in_lesion(on_file, lesion),
                rank_correlation(a.cam, r.cam, head),
                a.constant,
            )
        )
    return out


def score_cases(
    arms: Mapping[str, Predictor],
    cases: Sequence[Path],
    methods: Sequence[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    samples: int = 8,
    seed: int = 0,
    warn: Callable[[str], None] = print,
    progress: Callable[[Sequence[tuple[str, Path]]], Iterable[tuple[str, Path]]] = iter,
) -> list[CaseScore]:
    """Per-case scores of every arm and method; cases without a lesion are skipped."""
    jobs = [(arm, c) for arm in arms for c in cases]
    scores: list[CaseScore] = []
    for arm, case_dir in progress(jobs):
        try:
            scores += score_case(arms[arm], arm, case_dir, methods, fractions, samples, seed)
        except EmptyRegion as exc:
            warn(f"{arm}: {exc}")
    return scores


def summarise(
    scores: Sequence[CaseScore], n_boot: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per arm and method: each column's mean over cases and its bootstrap 95% CI."""
    rows = []
    for arm in dict.fromkeys(s.arm for s in scores):
        mine = [s for s in scores if s.arm == arm]
        case_ids = list(dict.fromkeys(s.case for s in mine))
        idx = bootstrap_indices(len(case_ids), n_boot, seed)
        for method in dict.fromkeys(s.method for s in mine):
            by_case = {s.case: s for s in mine if s.method == method}
            row: dict[str, Any] = {"arm": arm, "method": method, "cases": len(case_ids)}
            row["constant_maps"] = sum(s.constant for s in by_case.values())
            for col in COLUMNS:
                values = np.array([getattr(by_case[c], col) for c in case_ids])
                ci = bootstrap_ci(np.mean, values, indices=idx)
                row[col], row[f"{col}_low"], row[f"{col}_high"] = ci.point, ci.low, ci.high
            rows.append(row)
    return rows


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table as Markdown: ``mean [low, high]`` per column."""
    head = ["arm", "method", "cases", "ROAD", "pointing game", "energy in lesion", "rand. corr."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["arm"]), str(r["method"]), str(r["cases"])]
        cells += [f"{r[c]:.3f} [{r[c + '_low']:.3f}, {r[c + '_high']:.3f}]" for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
