"""MNI152 tissue templates from the nilearn wheel, resampled once to a working grid.

The nilearn wheel ships the ICBM 2009a symmetric T1 (skull-stripped) and GM/WM probability maps
at 1 mm. Everything else the generator needs is derived here, once per grid spacing:

- CSF is not shipped: brain mask (T1 > 0) minus GM minus WM;
- intracranial volume (ICV): the brain mask closed and dilated by 2 mm of subarachnoid space;
  skull and scalp are shells outside it, given by the ICV signed distance;
- ventricles: CSF deep inside the brain (> 20 mm from its surface), grown back geodesically;
- signed distance maps (mm, positive inside) of ICV, brain (tissue + ventricles) and ventricles,
  so ageing can move surfaces by millimetres without re-running morphology per subject;
- calibration tables of tissue volume against cortical erosion and ventricle volume against
  ventricle dilation, so the ageing model hits published rates in volume, not in millimetres;
- candidate dural attachment points (convexity, falx, skull base) for meningiomas.

Work happens at ``spacing`` (half the output voxel size, at least 1 mm) because the distance
transforms at 1 mm take seconds and the tiny preset must build in a few.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from neurofm.errors import NeuroFMError

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
PAD_MM = 16.0  # room around the 1 mm template for the skull/scalp shells
SUBARACHNOID_MM = 2.0
VENTRICLE_DEPTH_MM = 20.0
EROSION_GRID = np.linspace(0.0, 8.0, 33)
DILATION_GRID = np.linspace(-4.0, 12.0, 33)
MENINGIOMA_SITES = ("convexity", "falx", "skull_base")
MNI_AFFINE = np.array(
    [[1.0, 0, 0, -98.0], [0, 1.0, 0, -134.0], [0, 0, 1.0, -72.0], [0, 0, 0, 1.0]]
)  # the nilearn files' grid: 197 x 233 x 189 at 1 mm


def template_dir() -> Path:
    """Folder of nilearn's bundled MNI152 files, found without importing nilearn (slow)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise NeuroFMError("nilearn", "package not installed; it ships the MNI152 templates")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    for name in TEMPLATE_FILES.values():
        if not (folder / name).exists():
            raise NeuroFMError(folder / name, "MNI152 template missing from the nilearn wheel")
    return folder


@dataclass(frozen=True)
class Template:
    """Template maps on a regular MNI grid (``affine`` maps voxel index to MNI mm).

    ``fields`` stacks, in order, GM and WM partial volumes and the signed distances (mm) of the
    brain and the ventricles; ``d_icv`` is the ICV signed distance (skull is not displaced by a
    meningioma, the brain is, so they are sampled at different points).
    """

    spacing: float
    affine: np.ndarray
    fields: np.ndarray  # (X, Y, Z, 4): gm, wm, d_brain, d_vent
    d_icv: np.ndarray  # (X, Y, Z, 1)
    icv_box: tuple[tuple[float, float, float], tuple[float, float, float]]
    tissue_vs_erosion: np.ndarray  # tissue volume (ml) at EROSION_GRID
    tissue_vs_dilation: np.ndarray  # tissue volume (ml) at DILATION_GRID
    vent_vs_dilation: np.ndarray  # ventricle volume (ml) at DILATION_GRID
    dura_points: dict[str, tuple[np.ndarray, np.ndarray]]  # site -> (points mm, normals)

    @property
    def tissue_ml(self) -> float:
        return float(np.interp(0.0, EROSION_GRID, self.tissue_vs_erosion))

    @property
    def vent_ml(self) -> float:
        return float(np.interp(0.0, DILATION_GRID, self.vent_vs_dilation))

    def to_index(self, points_mm: np.ndarray) -> np.ndarray:
        """MNI mm ``(..., 3)`` to fractional voxel indices ``(..., 3)`` (axis-aligned grid)."""
        origin = self.affine[:3, 3].astype(np.float32)
        return np.asarray((points_mm - origin) / np.float32(self.spacing), dtype=np.float32)

    def sample_tissue(self, points_mm: np.ndarray) -> np.ndarray:
        """GM + WM partial volume at a few MNI points (used to place lesions in tissue)."""
        values = trilinear(self.fields, self.to_index(points_mm))
        return np.asarray(values[..., 0] + values[..., 1])


def trilinear(volume: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Sample a channel-last volume ``(X, Y, Z, C)`` at fractional indices ``(..., 3)``.

    Edges clamp (nearest beyond the grid). Hand-written rather than ``map_coordinates`` because
    all channels share one set of corner indices and weights: nested lerps over row gathers for
    every channel at once run several times faster than one spline call per channel, and this is
    the generator's hot loop.
    """
    shape = np.asarray(volume.shape[:3])
    flat = volume.reshape(-1, volume.shape[3])
    pts = idx.reshape(-1, 3)
    base = np.clip(pts.astype(np.int32), 0, shape - 2)  # truncation = floor where it matters
    frac = np.clip(pts - base, 0.0, 1.0).astype(np.float32)
    sx, sy = int(shape[1] * shape[2]), int(shape[2])
    lin = base[:, 0] * sx + base[:, 1] * sy + base[:, 2]
    fx, fy, fz = frac[:, 0:1], frac[:, 1:2], frac[:, 2:3]

    def lerp(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> np.ndarray:
        b -= a
        b *= f
        b += a
        return b

    def along_z(offset: int) -> np.ndarray:
        return lerp(np.take(flat, lin + offset, 0), np.take(flat, lin + offset + 1, 0), fz)

    def along_y(offset: int) -> np.ndarray:
        return lerp(along_z(offset), along_z(offset + sy), fy)

    out = lerp(along_y(0), along_y(sx), fx)
    return out.reshape(*idx.shape[:-1], flat.shape[1])


def ramp(d: np.ndarray, width: float) -> np.ndarray:
    """Partial volume of a voxel whose centre lies ``d`` mm inside a surface (linear ramp)."""
    return np.clip(d / width + 0.5, 0.0, 1.0)


def region_weight(points_mm: np.ndarray) -> np.ndarray:
    """Relative cortical thinning rate: 1, up to 1.6 in frontal and temporal lobes (MNI mm)."""
    x, y, z = points_mm[..., 0], points_mm[..., 1], points_mm[..., 2]

    def sig(v: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-v)))

    frontal = sig((y + 15.0) / 8.0)
    temporal = sig(-z / 6.0) * sig((np.abs(x) - 30.0) / 5.0) * sig((y + 70.0) / 8.0)
    return np.asarray(1.0 + 0.6 * np.maximum(frontal, temporal), dtype=np.float32)


def _load_raw() -> dict[str, np.ndarray]:
    folder = template_dir()
    out = {}
    for key, name in TEMPLATE_FILES.items():
        img = nib.load(str(folder / name))
        if not isinstance(img, nib.Nifti1Image) or not np.allclose(img.affine, MNI_AFFINE):
            raise NeuroFMError(folder / name, "unexpected affine (not the 1 mm MNI152 2009a grid)")
        out[key] = np.asarray(img.dataobj, dtype=np.float32) / 255.0
    return out


def _resample(arr_1mm: np.ndarray, affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Area-average (box filter) then sample the 1 mm array on the coarser grid."""
    step = affine[0, 0]
    size = max(1, round(step))
    src = ndi.uniform_filter(arr_1mm, size=size, mode="constant") if size > 1 else arr_1mm
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    idx = (grid * step + affine[:3, 3, None]) - MNI_AFFINE[:3, 3, None]
    out = ndi.map_coordinates(src, idx, order=1, mode="constant")
    return np.asarray(out.reshape(shape), dtype=np.float32)


def signed_distance(pv: np.ndarray, spacing: float) -> np.ndarray:
    """Signed distance (mm, positive inside) of the 0.5 level of a partial-volume map.

    Far from the surface it is the Euclidean distance transform; within one voxel of it the
    partial volume itself gives the sub-voxel position.
    """
    inside = pv >= 0.5
    d = np.where(
        inside,
        ndi.distance_transform_edt(inside) - 0.5,
        -(ndi.distance_transform_edt(~inside) - 0.5),
    ).astype(np.float32)
    near = np.abs(d) <= 1.0
    d[near] = pv[near] - 0.5
    return d * np.float32(spacing)


def _ball(radius_vox: float) -> np.ndarray:
    r = max(1, int(np.ceil(radius_vox)))
    g = np.indices((2 * r + 1,) * 3) - r
    return np.asarray((g**2).sum(0) <= max(radius_vox, 1.0) ** 2)


def _ventricles(
    csf: np.ndarray, depth_mm: np.ndarray, mm: np.ndarray, spacing: float
) -> np.ndarray:
    """Ventricle partial volume: deep CSF components (> 1 ml) grown within shallower CSF.

    The interhemispheric fissure is deep too, so the midline is excluded except around the
    third ventricle, and growth is kept to the box the ventricular system occupies in MNI space.
    """
    x, y, z = mm[..., 0], mm[..., 1], mm[..., 2]
    off_midline = (np.abs(x) >= 3.0) | ((np.abs(y) < 25) & (np.abs(z) < 12))
    box = (np.abs(x) < 36) & (y > -88) & (y < 38) & (z > -28) & (z < 38)
    seeds = (csf > 0.5) & (depth_mm > VENTRICLE_DEPTH_MM) & off_midline & box
    lab, n = ndi.label(seeds)
    if n == 0:
        raise NeuroFMError("MNI152 template", "found no ventricles (deep CSF)")
    sizes = ndi.sum(seeds, lab, np.arange(1, n + 1)) * spacing**3 / 1000.0
    keep = np.isin(lab, 1 + np.flatnonzero(sizes > 1.0))
    allowed = (csf > 0.4) & (depth_mm > 6.0) & off_midline & box
    grown = ndi.binary_propagation(keep, mask=allowed)
    return np.where(grown, csf, 0.0).astype(np.float32)


def _dura_points(
    d_icv: np.ndarray, d_brain: np.ndarray, affine: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Candidate meningioma attachment points with the outward dural normal, by location."""
    spacing = affine[0, 0]
    grad = np.stack(np.gradient(d_icv, spacing))
    idx = np.indices(d_icv.shape).reshape(3, -1).T
    mm = (idx * spacing + affine[:3, 3]).reshape((*d_icv.shape, 3))
    x, y, z = mm[..., 0], mm[..., 1], mm[..., 2]
    shell = (d_icv > 0) & (d_icv <= max(spacing, 1.5))
    conv = shell & ((z > 15) | ((z > -10) & (np.abs(x) > 45))) & (y > -95)
    base = shell & (z < -8) & (z > -45) & (y > -45) & (y < 60)
    falx = (np.abs(x) <= spacing / 2 + 1e-3) & (d_icv > 12) & (z > 5) & (z < 70)
    falx &= (y > -70) & (y < 50) & (d_brain < 2.0)
    out = {}
    for name, m in (("convexity", conv), ("skull_base", base), ("falx", falx)):
        pts = mm[m].astype(np.float64)
        if name == "falx":
            normals = np.tile([1.0, 0.0, 0.0], (len(pts), 1))
        else:
            g = -np.moveaxis(grad, 0, -1)[m].astype(np.float64)
            normals = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)
        if len(pts) == 0:
            raise NeuroFMError("MNI152 template", f"no {name} dural points at {spacing} mm")
        out[name] = (pts, normals)
    return out


@lru_cache(maxsize=4)
def load_template(spacing: float) -> Template:
    """Derive the template maps at ``spacing`` mm (cached per process)."""
    spacing = float(max(1.0, spacing))
    raw = _load_raw()
    lo = MNI_AFFINE[:3, 3] - PAD_MM
    extent = np.array(raw["t1"].shape) - 1 + 2 * PAD_MM
    shape = tuple(int(np.floor(e / spacing)) + 1 for e in extent)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = lo
    gm = _resample(raw["gm"], affine, shape)
    wm = _resample(raw["wm"], affine, shape)
    brain = _resample((raw["t1"] > 0).astype(np.float32), affine, shape)
    tissue = np.minimum(gm + wm, brain)
    csf = np.clip(brain - tissue, 0.0, 1.0)

    brain_bin = brain >= 0.5
    closed = ndi.binary_closing(brain_bin, _ball(3.0 / spacing), iterations=1)
    icv_bin = ndi.binary_fill_holes(closed | brain_bin)
    icv_pv = np.where(icv_bin & ~brain_bin, 1.0, brain).astype(np.float32)
    d_icv = signed_distance(icv_pv, spacing) + np.float32(SUBARACHNOID_MM)

    mm = (np.indices(shape, dtype=np.float32) * spacing + lo[:, None, None, None]).transpose(
        1, 2, 3, 0
    )
    depth = ndi.distance_transform_edt(brain_bin).astype(np.float32) * spacing
    vent = _ventricles(csf, depth, mm, spacing)
    d_vent = signed_distance(vent, spacing)
    d_brain = signed_distance(np.clip(tissue + vent, 0.0, 1.0), spacing)

    weight = region_weight(mm)
    fields = np.stack([gm, wm, d_brain, d_vent], axis=-1).astype(np.float32)
    t_e, t_v, v_v = _calibrate(fields, weight, spacing)

    inside = np.argwhere(d_icv > 0)
    box_lo = tuple(float(v) for v in inside.min(0) * spacing + lo)
    box_hi = tuple(float(v) for v in inside.max(0) * spacing + lo)
    return Template(
        spacing=spacing,
        affine=affine,
        fields=fields,
        d_icv=d_icv[..., None].astype(np.float32),
        icv_box=(box_lo, box_hi),  # type: ignore[arg-type]
        tissue_vs_erosion=t_e,
        tissue_vs_dilation=t_v,
        vent_vs_dilation=v_v,
        dura_points=_dura_points(d_icv, d_brain, affine),
    )


def age_tissue(
    gm: np.ndarray,
    wm: np.ndarray,
    d_brain: np.ndarray,
    d_vent: np.ndarray,
    erosion_mm: np.ndarray | float,
    dilation_mm: float,
    width: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply atrophy to GM/WM partial volumes (pure; shared by calibration and rendering).

    The brain surface moves inward by ``erosion_mm`` (sulci widen, cortex thins) and the ventricle
    surface outward by ``dilation_mm`` (negative shrinks them, the gap is filled with WM).
    """
    tissue = gm + wm
    keep = ramp(d_brain - erosion_mm, width)
    k = np.minimum(1.0, keep / np.maximum(tissue, 1e-6))
    vent0 = ramp(d_vent, width)
    vent1 = ramp(d_vent + dilation_mm, width)
    gm_a = gm * k * (1.0 - vent1)
    wm_a = wm * k * (1.0 - vent1) + np.maximum(vent0 - vent1, 0.0) * (1.0 - tissue)
    return gm_a.astype(np.float32), wm_a.astype(np.float32)


def _calibrate(
    fields: np.ndarray, weight: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue and ventricle volume (ml) as functions of erosion and dilation on this grid."""
    gm, wm, d_b, d_v = np.moveaxis(fields, -1, 0)
    ml = spacing**3 / 1000.0
    near_surface = (d_b < EROSION_GRID[-1] * 1.6 + spacing) & (gm + wm > 0)
    near_vent = np.abs(d_v) < DILATION_GRID[-1] + 2 * spacing
    base = float((gm + wm).sum()) * ml

    def vol(mask: np.ndarray, e: float, v: float) -> tuple[float, float]:
        g, w_ = age_tissue(gm[mask], wm[mask], d_b[mask], d_v[mask], e * weight[mask], v, spacing)
        return float((g + w_).sum()), float(ramp(d_v[mask] + v, spacing).sum())

    rest_s = base - float((gm[near_surface] + wm[near_surface]).sum()) * ml
    rest_v = base - float((gm[near_vent] + wm[near_vent]).sum()) * ml
    t_e = np.array([rest_s + vol(near_surface, e, 0.0)[0] * ml for e in EROSION_GRID])
    tv = [vol(near_vent, 0.0, v) for v in DILATION_GRID]
    t_v = np.array([rest_v + t * ml for t, _ in tv])
    v_v = np.array([v * ml for _, v in tv])
    return t_e, t_v, v_v
