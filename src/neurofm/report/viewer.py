"""Case viewer data: NIfTI volumes embedded as base64 in JS files for niivue.

A report opened from disk (file://) cannot fetch() the ``.nii.gz`` files next to it in Chromium,
so each case is written as ``cases/<id>.js``, a script that puts its gzipped NIfTI bytes
(base64) into ``window.NEUROFM_CASES[id]``. ``viewer.html`` adds a ``<script>`` tag for the
chosen case and hands the decoded bytes to niivue's ``NVImage.new``. niivue is the copy shipped
in the nilearn wheel, copied next to the page (no CDN, works offline).

Volumes are reoriented to RAS+ (:func:`neurofm.io.nifti.load_nifti`), images stored as int16
with a scale factor and masks as uint8; a case larger than :data:`MAX_CASE_BYTES` is resampled
to coarser voxels (nibabel) until it fits, so the page stays quick to open.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import nibabel as nib
import nibabel.processing
import numpy as np

from neurofm.errors import NeuroFMError
from neurofm.io.nifti import load_nifti, voxel_spacing

MAX_CASE_BYTES = 2_000_000
HEAT = "linear-gradient(90deg, #ff7f00, #ffc400, #fffe00)"  # swatch of niivue's "warm" map
_MAX_FACTOR = 8


@dataclass(frozen=True)
class ViewerCase:
    """One case to show: its sequences, the reference mask, each model's predicted mask and
    any continuous maps (explanations), drawn as heat overlays scaled to their maximum."""

    task: str
    case: str
    site: str
    images: dict[str, Path]
    reference: Path | None = None
    predictions: dict[str, Path] = field(default_factory=dict)
    maps: dict[str, Path] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """File-name-safe identifier, unique per (task, case)."""
        return re.sub(r"[^A-Za-z0-9_-]+", "_", f"{self.task}-{self.case}")


def read_viewer_cases(path: Path) -> list[ViewerCase]:
    """Parse ``viewer.json`` (paths relative to its folder); every listed file must exist."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NeuroFMError(path, f"unreadable JSON ({exc})") from exc
    if not isinstance(raw, list):
        raise NeuroFMError(path, "expected a list of cases")
    root = path.parent
    cases: list[ViewerCase] = []
    for i, item in enumerate(raw):
        where = f"{path} (case {i})"
        if not isinstance(item, dict):
            raise NeuroFMError(where, "each case must be an object")
        missing = [k for k in ("task", "case", "images") if k not in item]
        if missing:
            raise NeuroFMError(where, f"missing key(s) {missing}")
        images = _paths(item["images"], root, where, "images")
        if not images:
            raise NeuroFMError(where, "no images")
        reference = item.get("reference")
        cases.append(
            ViewerCase(
                task=str(item["task"]),
                case=str(item["case"]),
                site=str(item.get("site", "")),
                images=images,
                reference=None if reference is None else listed_file(root, reference, where),
                predictions=_paths(item.get("predictions") or {}, root, where, "predictions"),
            )
        )
    ids = [c.id for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise NeuroFMError(path, f"cases listed twice: {dupes}")
    return cases


def _paths(value: Any, root: Path, where: str, key: str) -> dict[str, Path]:
    if not isinstance(value, dict):
        raise NeuroFMError(where, f"{key!r} must map names to file paths")
    return {str(name): listed_file(root, rel, where) for name, rel in value.items()}


def listed_file(root: Path, rel: Any, where: Path | str) -> Path:
    """A file a manifest (``where``) names relative to ``root``, which must exist there."""
    if not isinstance(rel, str):
        raise NeuroFMError(where, f"file path must be a string, got {rel!r}")
    p = root / rel
    if not p.is_file():
        raise NeuroFMError(where, f"file {rel} does not exist under {root}")
    return p


def niivue_bundle() -> Path:
    """The niivue UMD bundle that the nilearn wheel ships."""
    path = Path(str(resources.files("nilearn"))) / "_assets" / "js" / "niivue.umd.js"
    if not path.is_file():
        raise NeuroFMError(path, "niivue bundle not found in the installed nilearn")
    return path


def display_map(data: np.ndarray) -> np.ndarray:
    """A map for the heat overlay: its positive part over its maximum, in [0, 1]. A map with
    no positive value (a dead layer) stays all zero rather than being scaled into noise."""
    positive = np.clip(np.nan_to_num(data.astype(np.float32)), 0.0, None)
    top = float(positive.max())
    return positive / top if top > 0 else positive


def _encode(data: np.ndarray, affine: np.ndarray, mask: bool) -> bytes:
    img = nib.Nifti1Image(data.astype(np.uint8) if mask else data.astype(np.float32), affine)
    if not mask:
        img.set_data_dtype(np.int16)  # nibabel picks scl_slope/inter; halves the size
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)


def _resample(data: np.ndarray, affine: np.ndarray, factor: int, mask: bool) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    if factor == 1:
        return img
    sizes = tuple(s * factor for s in voxel_spacing(affine))
    return nibabel.processing.resample_to_output(img, voxel_sizes=sizes, order=0 if mask else 1)


def _centre_mm(mask: np.ndarray, affine: np.ndarray) -> list[float]:
    """World position (mm) of a mask's centre of mass: where the viewer puts its crosshair."""
    centre = np.argwhere(mask > 0.5).mean(axis=0)
    return [round(float(v), 2) for v in (affine @ np.r_[centre, 1.0])[:3]]


def encode_case(case: ViewerCase, max_bytes: int = MAX_CASE_BYTES) -> dict[str, Any]:
    """Base64 gzipped NIfTI of every volume of a case, coarsened until it fits ``max_bytes``.

    Maps are stored as :func:`display_map`. Also gives ``factor`` (the coarsening) and
    ``focus_mm``, the centre of the first non-empty mask (reference first), or None.
    """
    volumes: list[tuple[str, str, Path, bool]] = [
        ("images", k, p, False) for k, p in case.images.items()
    ]
    if case.reference is not None:
        volumes.append(("reference", "reference", case.reference, True))
    volumes += [("predictions", k, p, True) for k, p in case.predictions.items()]
    volumes += [("maps", k, p, False) for k, p in case.maps.items()]
    loaded = [(group, key, *load_nifti(p), mask) for group, key, p, mask in volumes]
    loaded = [
        (group, key, display_map(data) if group == "maps" else data, affine, mask)
        for group, key, data, affine, mask in loaded
    ]
    focus = next(
        (_centre_mm(data, affine) for _, _, data, affine, mask in loaded if mask and data.any()),
        None,
    )
    factor = 1
    while True:
        encoded: dict[str, Any] = {"images": {}, "reference": None, "predictions": {}, "maps": {}}
        total = 0
        for group, key, data, affine, mask in loaded:
            img = _resample(data, affine, factor, mask)
            arr = np.asarray(img.dataobj)
            blob = base64.b64encode(_encode(arr > 0.5 if mask else arr, img.affine, mask))
            total += len(blob)
            if group == "reference":
                encoded["reference"] = blob.decode("ascii")
            else:
                encoded[group][key] = blob.decode("ascii")
        if total <= max_bytes or factor >= _MAX_FACTOR:
            encoded["factor"] = factor
            encoded["focus_mm"] = focus
            return encoded
        factor *= 2


def write_viewer(
    cases: list[ViewerCase],
    out: Path,
    overlay_colours: dict[str, str],
    reference_colour: str,
    case_metrics: dict[str, dict[str, dict[str, float]]],
    folder: str = "cases",
) -> list[dict[str, Any]]:
    """Write ``<folder>/<id>.js`` and ``assets/niivue.umd.js``; return the index the page reads.

    ``case_metrics`` maps case id -> model -> metric -> value, shown beside the volumes. A page
    with a viewer of its own uses its own ``folder``, so case ids never collide across pages.
    """
    (out / folder).mkdir(parents=True, exist_ok=True)
    (out / "assets").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(niivue_bundle(), out / "assets" / "niivue.umd.js")
    index: list[dict[str, Any]] = []
    for case in cases:
        encoded = encode_case(case)
        script = f"{folder}/{case.id}.js"
        payload = json.dumps(
            {k: encoded[k] for k in ("images", "reference", "predictions", "maps")}
        )
        (out / script).write_text(
            "window.NEUROFM_CASES = window.NEUROFM_CASES || {};\n"
            f"window.NEUROFM_CASES[{json.dumps(case.id)}] = {payload};\n"
        )
        overlays = []
        if case.reference is not None:
            overlays.append(
                {
                    "key": "reference",
                    "label": "reference",
                    "colour": reference_colour,
                    "kind": "mask",
                }
            )
        overlays += [
            {"key": m, "label": m, "colour": overlay_colours.get(m, "#D55E00"), "kind": "mask"}
            for m in case.predictions
        ]
        overlays += [{"key": m, "label": m, "colour": HEAT, "kind": "map"} for m in case.maps]
        index.append(
            {
                "id": case.id,
                "task": case.task,
                "case": case.case,
                "site": case.site,
                "script": script,
                "sequences": list(case.images),
                "overlays": overlays,
                "downsampled": encoded["factor"],
                "focus_mm": encoded["focus_mm"],
                "metrics": case_metrics.get(case.id, {}),
            }
        )
    return index
