"""The localisation and sanity table: every method scored on benchmark cases whose lesion is known.

For each arm (e.g. pretrained and scratch run of one task) and each case with a non-empty lesion
mask, every method's map (CAMs at the model's last stage) is scored by

* ROAD (faithfulness, on the model-input grid; 0 for a constant map, which ranks nothing),
* pointing game and energy inside the lesion (on the case file's grid, against the mask),
* rank correlation with the same method's map of a re-initialised model (sanity: lower is
  better; a map that survives randomisation does not explain the model).

Each column gets a case-bootstrap percentile CI (:mod:`neurofm.stats.bootstrap`); all methods of
an arm share one resampling of its cases, so they are compared on the same case sets.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from neurofm.atomic import write_json_atomic
from neurofm.errors import NeuroFMError
from neurofm.explain.cams import check_methods
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
from neurofm.explain.figures import camanim, montage
from neurofm.explain.localisation import energy_in_lesion, pointing_game, rank_correlation
from neurofm.explain.page import write_page
from neurofm.explain.road import DEFAULT_FRACTIONS
from neurofm.explain.run import fresh_output, publish, write_rows
from neurofm.io.nifti import save_nifti
from neurofm.io.splits import read_case_dir
from neurofm.predict import Predictor
from neurofm.stats.bootstrap import bootstrap_ci, bootstrap_indices
from neurofm.train.runs import case_dirs

COLUMNS = ("road", "pointing_game", "energy_in_lesion", "randomisation_corr")
MANIFEST = "explain.json"  # what the report reads: the shown cases, their files, the GIFs
MAPS_DIR = "maps"


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
                0.0 if a.constant else road_case(predictor, inp, a.cam, fractions).score,
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


def lesion_cases(split_dirs: Sequence[Path], task: str, per_split: int) -> list[Path]:
    """The first ``per_split`` cases (by name) of each split that have a non-empty lesion mask."""
    chosen: list[Path] = []
    for split in split_dirs:
        found = 0
        for case_dir in case_dirs(split):
            path = lesion_mask(case_dir, task)
            if found >= per_split or path is None:
                continue
            img = nib.load(str(path))
            assert isinstance(img, nib.Nifti1Image | nib.Nifti2Image)
            if np.asarray(img.dataobj).any():
                chosen.append(case_dir)
                found += 1
    if not chosen:
        raise NeuroFMError(", ".join(map(str, split_dirs)), "no case with a lesion mask")
    return chosen


def animate_case(
    predictor: Predictor, case_dir: Path, folder: Path, stem: str, method: str = "gradcam"
) -> Path:
    """CAManim of one case: ``method`` at every stage, per-layer ROAD beside it."""
    inp = model_input(predictor, case_dir)
    maps = explain_case(predictor, inp, [method], ["all"])
    scores = [road_case(predictor, inp, a.cam).score for a in maps]
    back = to_file_grid(inp.x[0, 0].cpu().numpy(), inp)[0]
    path = lesion_mask(case_dir, predictor.task.name)
    lesion = read_mask(path, back.shape) if path is not None else None
    return camanim(
        folder / f"{stem}.gif",
        back,
        [to_file_grid(a.cam, inp)[0] for a in maps],
        [a.layer for a in maps],
        scores,
        f"{stem} {method}",
        lesion,
        inp.file_spacing,
    )


def show_case(
    arms: Mapping[str, Predictor],
    case_dir: Path,
    folder: Path,
    methods: Sequence[str],
    samples: int,
) -> dict[str, Any]:
    """A shown case for the report's viewer: every arm's maps as NIfTI on the case file's grid
    beside copies of the case's images and lesion mask (under ``folder/maps/<case>``), and a
    montage of each map of the first arm (``folder/<arm>_<case>_<method>.png``).

    Returns the case's manifest entry (paths relative to ``folder``)."""
    task = next(iter(arms.values())).task
    sub = folder / MAPS_DIR / case_dir.name
    sub.mkdir(parents=True)
    files = read_case_dir(case_dir, task.name).sequences
    images = {}
    for seq in task.select(files, str(case_dir)):
        shutil.copyfile(files[seq], sub / f"{seq}.nii.gz")
        images[seq] = f"{MAPS_DIR}/{case_dir.name}/{seq}.nii.gz"
    entry: dict[str, Any] = {"case": case_dir.name, "split": case_dir.parent.name}
    entry["images"] = images
    mask_path = lesion_mask(case_dir, task.name)
    entry["reference"] = None
    if mask_path is not None:
        shutil.copyfile(mask_path, sub / "reference.nii.gz")
        entry["reference"] = f"{MAPS_DIR}/{case_dir.name}/reference.nii.gz"
    entry["maps"], entry["constant"], entry["pictures"] = {}, [], []
    for i, (arm, predictor) in enumerate(arms.items()):
        inp = model_input(predictor, case_dir)
        back = to_file_grid(inp.x[0, 0].cpu().numpy(), inp)[0]
        lesion = read_mask(mask_path, back.shape) if mask_path is not None else None
        for a in explain_case(predictor, inp, methods, samples=samples):
            on_file, affine = to_file_grid(a.cam, inp)
            name = f"{arm}_{a.method}.nii.gz"
            save_nifti(on_file.astype(np.float32), affine, sub / name)
            entry["maps"][f"{arm} {a.method}"] = f"{MAPS_DIR}/{case_dir.name}/{name}"
            if a.constant:
                entry["constant"].append(f"{arm} {a.method}")
            if i == 0:
                stem = f"{arm}_{case_dir.name}"
                png = montage(
                    folder / f"{stem}_{a.method}.png",
                    back,
                    on_file,
                    f"{stem} {a.name}",
                    lesion,
                    inp.file_spacing,
                )
                entry["pictures"].append({"src": png.name, "caption": png.stem})
    return entry


def write_table(
    arms: Mapping[str, Predictor],
    cases: Sequence[Path],
    methods: Sequence[str],
    out: Path,
    *,
    command: str,
    animate: int = 2,
    samples: int = 8,
    n_boot: int = 1000,
    seed: int = 0,
    warn: Callable[[str], None] = print,
    progress: Callable[[Sequence[tuple[str, Path]]], Iterable[tuple[str, Path]]] = iter,
) -> list[dict[str, Any]]:
    """Score, summarise and publish into a fresh ``out`` folder: table.csv/.md, cases.csv,
    CAManim GIFs, pictures, index.html, and for the shown cases every arm's maps as NIfTI
    (``maps/``) listed in ``explain.json`` (what ``neurofm report --explain`` reads)."""
    methods = check_methods(methods)
    t0 = time.perf_counter()
    tmp = fresh_output(out)
    try:
        scores = score_cases(
            arms, cases, methods, samples=samples, seed=seed, warn=warn, progress=progress
        )
        if not scores:
            raise NeuroFMError(out, "no case could be scored (see the warnings)")
        rows = summarise(scores, n_boot, seed)
        write_rows(tmp / "cases.csv", [asdict(s) for s in scores])
        write_rows(tmp / "table.csv", rows)
        (tmp / "table.md").write_text(markdown(rows))
        first = next(iter(arms))
        shown = list(dict.fromkeys(s.case for s in scores if s.arm == first))[:animate]
        by_name = {c.name: c for c in cases}
        animations, entries = [], []
        for name in shown:
            gif = animate_case(arms[first], by_name[name], tmp, f"camanim_{first}_{name}")
            animations.append({"src": gif.name, "caption": f"{first}: {name}, Grad-CAM"})
            entries.append(show_case(arms, by_name[name], tmp, methods, samples))
        pictures = [p for e in entries for p in e["pictures"]]
        write_page(tmp / "index.html", out.name, command, rows, animations, pictures)
        manifest = {
            "task": arms[first].task.name,
            "command": command,
            "arms": list(arms),
            "methods": list(methods),
            "animations": animations,
            "cases": entries,
            "scored": {arm: sum(s.arm == arm for s in scores) // len(methods) for arm in arms},
            "seconds": round(time.perf_counter() - t0, 1),  # wall time of the whole table
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, out)
    return rows
