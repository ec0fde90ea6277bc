"""``neurofm explain``: maps of several methods for a case or a split, written beside each other.

Output (into a fresh folder, written under a temporary name and renamed when complete, so an
interrupted run leaves nothing that looks finished)::

    OUT/<case>/<method>[@<layer>].nii.gz   the map on the case file's grid (shape and affine)
    OUT/<case>/<method>[@<layer>].png      three orthogonal slices, lesion outlined if known
    OUT/<case>/camanim_<method>.gif        with --layer all: every stage, per-layer ROAD beside
    OUT/<case>/metacam.nii.gz|.png         with --metacam: the best ROAD-scored consensus of
                                           one map per method (CAMs at the last layer asked)
    OUT/maps.csv                           case, map, constant, ROAD, pointing game, energy
    OUT/metacam.json                       the combination search and CRE curves per case
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.errors import NeuroFMError
from neurofm.explain.cams import CAM_METHODS, check_layers, check_methods
from neurofm.explain.case import (
    EmptyRegion,
    ModelInput,
    explain_case,
    lesion_mask,
    model_input,
    read_mask,
    road_case,
    to_file_grid,
)
from neurofm.explain.figures import camanim, montage
from neurofm.explain.localisation import energy_in_lesion, pointing_game
from neurofm.explain.metacam import metacam, search
from neurofm.explain.road import DEFAULT_FRACTIONS
from neurofm.io.nifti import save_nifti
from neurofm.predict import Predictor
from neurofm.train.runs import case_dirs

Warn = Callable[[str], None]
MAX_METACAM_MAPS = 5


def fresh_output(out: Path) -> Path:
    """Refuse a non-empty output folder; return the temporary folder to write into."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NeuroFMError(out, "output folder exists and is not empty (nothing is overwritten)")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, out: Path) -> Path:
    """Move the finished temporary folder to its final name."""
    if out.exists():
        out.rmdir()  # fresh_output checked it is empty
    os.replace(tmp, out)
    return out


def underlay(inp: ModelInput) -> np.ndarray:
    """The first input channel on the file grid (for pictures)."""
    return to_file_grid(inp.x[0, 0].cpu().numpy(), inp)[0]


def explain_one(
    predictor: Predictor,
    case_dir: Path,
    folder: Path,
    methods: Sequence[str],
    layers: Sequence[str] | None,
    *,
    with_road: bool,
    metacam_ks: Sequence[float],
    fractions: Sequence[float],
    samples: int,
    warn: Warn,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Maps, pictures and scores of one case into ``folder``; returns its CSV rows."""
    inp = model_input(predictor, case_dir)
    maps = explain_case(predictor, inp, methods, layers, samples=samples)
    folder.mkdir(parents=True, exist_ok=True)
    mask_path = lesion_mask(case_dir, predictor.task.name)
    back = underlay(inp)
    lesion = read_mask(mask_path, back.shape) if mask_path is not None else None
    rows = []
    road: dict[str, float] = {}
    for a in maps:
        on_file, affine = to_file_grid(a.cam, inp)
        if a.constant:
            warn(f"{inp.case}: {a.name} map is constant (dead layer?); written as is, unscaled")
        save_nifti(on_file.astype(np.float32), affine, folder / f"{a.name}.nii.gz")
        montage(
            folder / f"{a.name}.png",
            back,
            on_file,
            f"{inp.case} {a.name}",
            lesion,
            inp.file_spacing,
        )
        row: dict[str, Any] = {"case": inp.case, "method": a.method, "layer": a.layer}
        row["constant"] = int(a.constant)
        if with_road:  # a constant map ranks nothing: no ROAD score (NaN), as warned above
            road[a.name] = (
                float("nan") if a.constant else road_case(predictor, inp, a.cam, fractions).score
            )
            row["road"] = road[a.name]
        if lesion is not None and lesion.any():
            row["pointing_game"] = pointing_game(on_file, lesion)
            row["energy_in_lesion"] = energy_in_lesion(on_file, lesion)
        rows.append(row)
    if with_road and layers is not None and len(check_layers(predictor.model, layers)) > 1:
        for method in dict.fromkeys(a.method for a in maps if a.method in CAM_METHODS):
            per = [a for a in maps if a.method == method]
            camanim(
                folder / f"camanim_{method}.gif",
                back,
                [to_file_grid(a.cam, inp)[0] for a in per],
                [a.layer for a in per],
                [road[a.name] for a in per],
                f"{inp.case} {method}",
                lesion,
                inp.file_spacing,
            )
    meta = None
    if metacam_ks:
        last = {a.method: a for a in maps}  # one map per method: CAMs at the last layer asked
        usable = {a.name: a.cam for a in last.values() if not a.constant}
        if len(usable) < 2:
            warn(f"{inp.case}: MetaCAM needs two non-constant maps, got {len(usable)}; skipped")
        else:
            result = search(
                usable, lambda m: road_case(predictor, inp, m, fractions).score, metacam_ks
            )
            combo, k = result.best
            best = metacam([usable[n] for n in combo], k)
            on_file, affine = to_file_grid(best, inp)
            save_nifti(on_file.astype(np.float32), affine, folder / "metacam.nii.gz")
            montage(
                folder / "metacam.png",
                back,
                on_file,
                f"{inp.case} MetaCAM",
                lesion,
                inp.file_spacing,
            )
            meta = {
                "best": {"maps": list(combo), "k": k, "road": result.best_score},
                "scores": [
                    {"maps": list(c), "k": kk, "road": v} for (c, kk), v in result.scores.items()
                ],
                "cre": result.cre,
            }
    return rows, meta


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A CSV with the union of the rows' columns (blank where a row has none)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


def explain_inputs(
    predictor: Predictor,
    input_dir: Path,
    out: Path,
    methods: Sequence[str],
    layers: Sequence[str] | None = None,
    *,
    with_road: bool = True,
    metacam_ks: Sequence[float] = (),
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    samples: int = 8,
    warn: Warn = print,
    progress: Callable[[Sequence[Path]], Any] = iter,
) -> Path:
    """Explain every case of ``input_dir`` into ``out`` (see the module docstring); MetaCAM
    searches the top-k percentages ``metacam_ks`` when given."""
    methods = check_methods(methods)
    if metacam_ks and len(methods) > MAX_METACAM_MAPS:
        raise NeuroFMError(
            "--metacam",
            f"searches every combination of the maps: at most {MAX_METACAM_MAPS} methods "
            f"({2**MAX_METACAM_MAPS - 1} combinations), got {len(methods)}",
        )
    if layers:
        check_layers(predictor.model, layers)
    cases = case_dirs(input_dir)
    tmp = fresh_output(out)
    try:
        rows: list[dict[str, Any]] = []
        metas: dict[str, Any] = {}
        for case_dir in progress(cases):
            try:
                case_rows, meta = explain_one(
                    predictor,
                    case_dir,
                    tmp / case_dir.name,
                    methods,
                    layers,
                    with_road=with_road,
                    metacam_ks=metacam_ks,
                    fractions=fractions,
                    samples=samples,
                    warn=warn,
                )
            except EmptyRegion as exc:
                warn(str(exc))
                continue
            rows += case_rows
            if meta is not None:
                metas[case_dir.name] = meta
        if not rows:
            raise NeuroFMError(input_dir, "no case could be explained (see the warnings)")
        write_rows(tmp / "maps.csv", rows)
        if metas:
            (tmp / "metacam.json").write_text(json.dumps(metas, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, out)
