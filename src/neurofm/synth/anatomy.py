"""Subjects: a random smooth deformation of the template plus age-dependent atrophy.

Each output voxel is pulled back to MNI space (``pullback``): a global similarity transform
(head size, pose) and a smooth non-linear displacement (cubic B-spline on a ~30 mm control grid,
evaluated as a tensor product, so it costs three small matrix products rather than a 3D
interpolation). The template fields are then sampled there and aged:

- whole-brain (GM + WM) loss rising from 0.1 %/yr at 18 to 0.2 %/yr at 30–50, then linearly to
  0.5 %/yr at 70 and staying there, times a per-subject rate factor, realised as an inward move
  of the brain surface weighted towards frontal and temporal cortex (``region_weight``);
- ventricle volume ∝ 2^((age-30)/50) (doubles 30→80), times a per-subject factor;
- both converted from volume to millimetres with the template's calibration tables; the
  template (young adults) stands for age 25.

The individual factors (log-normal, σ 0.25 ventricles, 0.3 atrophy rate) and head-size
variation (±7 %) make age learnable from the images without being readable off one number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import BSpline

from neurofm.synth.lesions import Infarct, Meningioma
from neurofm.synth.templates import (
    DILATION_GRID,
    EROSION_GRID,
    Template,
    age_tissue,
    ramp,
    region_weight,
    trilinear,
)

AGE_RANGE = (18.0, 90.0)
TEMPLATE_AGE = 25.0  # ICBM152 subjects are young adults
CONTROL_SPACING_MM = 30.0
SKULL_MM = 6.0
SCALP_MM = 5.0


@dataclass(frozen=True)
class Grid:
    """A regular output grid: ``shape`` voxels, ``affine`` voxel index -> subject mm (RAS+)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        s = np.sqrt((self.affine[:3, :3] ** 2).sum(0))
        return (float(s[0]), float(s[1]), float(s[2]))

    def axis_mm(self, axis: int) -> np.ndarray:
        """World coordinate along one axis (the grid is axis-aligned)."""
        return np.asarray(
            self.affine[axis, axis] * np.arange(self.shape[axis]) + self.affine[axis, 3]
        )


def make_grid(
    box: tuple[tuple[float, float, float], tuple[float, float, float]],
    spacing: float,
    multiple_z: int = 1,
) -> Grid:
    """Grid of isotropic ``spacing`` covering ``box`` (mm), centred on it.

    The z count is rounded up to a multiple of ``multiple_z`` so thick slices tile it exactly.
    """
    lo, hi = np.asarray(box[0]), np.asarray(box[1])
    n = np.ceil((hi - lo) / spacing).astype(int) + 1
    n[2] = int(np.ceil(n[2] / multiple_z) * multiple_z)
    centre = (lo + hi) / 2
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = centre - (n - 1) / 2 * spacing
    return Grid((int(n[0]), int(n[1]), int(n[2])), affine)


@dataclass(frozen=True)
class AnatomyParams:
    """Everything that makes one subject's brain: age, ageing factors and the deformation."""

    age: float
    vent_factor: float
    atrophy_factor: float
    scale: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    warp: np.ndarray  # (cx, cy, cz, 3) B-spline coefficients, mm
    warp_box: tuple[tuple[float, float, float], tuple[float, float, float]]


def sample_anatomy(
    rng: np.random.Generator,
    age: float,
    box: tuple[tuple[float, float, float], tuple[float, float, float]],
    warp_mm: float = 2.5,
) -> AnatomyParams:
    """Draw a subject of the given age (head size ±7 %, pose ±4°, warp ``warp_mm`` rms)."""
    lo, hi = np.asarray(box[0]), np.asarray(box[1])
    n_ctrl = np.ceil((hi - lo) / CONTROL_SPACING_MM).astype(int) + 3
    size = np.exp(rng.normal(0.0, 0.07))
    aniso = np.exp(rng.normal(0.0, 0.03, 3))
    return AnatomyParams(
        age=float(np.clip(age, *AGE_RANGE)),
        vent_factor=float(np.exp(rng.normal(0.0, 0.25))),
        atrophy_factor=float(np.exp(rng.normal(0.0, 0.3))),
        scale=tuple(float(v) for v in size * aniso),  # type: ignore[arg-type]
        rotation_deg=tuple(float(v) for v in rng.normal(0.0, 4.0, 3)),  # type: ignore[arg-type]
        translation_mm=tuple(float(v) for v in rng.normal(0.0, 3.0, 3)),  # type: ignore[arg-type]
        warp=rng.normal(0.0, warp_mm, (*n_ctrl, 3)).astype(np.float32),
        warp_box=box,
    )


def brain_loss_fraction(age: float) -> float:
    """Cumulative fraction of brain tissue lost between 18 and ``age`` (published rates)."""
    ages = np.linspace(AGE_RANGE[0], max(age, AGE_RANGE[0]), 200)
    rate = np.interp(ages, [18, 30, 50, 70, 90], [0.001, 0.002, 0.002, 0.005, 0.005])
    return float(1.0 - np.exp(-np.trapezoid(rate, ages)))


def ageing_mm(params: AnatomyParams, template: Template) -> tuple[float, float]:
    """Cortical erosion and ventricle dilation (mm) that give this subject's target volumes."""
    vent_ratio = 2.0 ** ((params.age - TEMPLATE_AGE) / 50.0) * params.vent_factor
    target_vent = template.vent_ml * vent_ratio
    dilation = float(np.interp(target_vent, template.vent_vs_dilation, DILATION_GRID))
    lost_by_vent = template.tissue_ml - float(
        np.interp(dilation, DILATION_GRID, template.tissue_vs_dilation)
    )
    young = brain_loss_fraction(TEMPLATE_AGE)
    loss = (brain_loss_fraction(params.age) - young) * params.atrophy_factor + young
    target = template.tissue_ml * (1.0 - loss) / (1.0 - young) + lost_by_vent
    erosion = float(np.interp(target, template.tissue_vs_erosion[::-1], EROSION_GRID[::-1]))
    return erosion, dilation


def _design(axis_mm: np.ndarray, lo: float, hi: float, n_ctrl: int) -> np.ndarray:
    """Cubic B-spline basis (n_points, n_ctrl) for uniform knots spanning [lo, hi]."""
    step = (hi - lo) / (n_ctrl - 3)
    knots = lo + step * (np.arange(n_ctrl + 4) - 3)
    x = np.clip(axis_mm, lo, hi - 1e-6)
    return np.asarray(BSpline.design_matrix(x, knots, 3).toarray(), dtype=np.float32)


def smooth_field(
    grid: Grid,
    coef: np.ndarray,
    box: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> np.ndarray:
    """Evaluate a cubic B-spline field with coefficients ``coef`` (cx, cy, cz[, c]) on ``grid``.

    A tensor product: contract one axis at a time, the last (largest) one as a BLAS matmul.
    """
    bx, by, bz = (
        _design(grid.axis_mm(i), box[0][i] - 1.0, box[1][i] + 1.0, coef.shape[i]) for i in range(3)
    )
    c = coef.astype(np.float32).reshape(*coef.shape[:3], -1)  # (a, b, c, channels)
    t = np.einsum("jb,ia,abcn->ijnc", by, bx, c, optimize=True)  # small: (X, Y, n, cz)
    out = np.moveaxis(t @ bz.T, -1, 2)  # (X, Y, Z, n)
    return np.ascontiguousarray(out).reshape(*out.shape[:3], *coef.shape[3:])


def rotation_matrix(deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    a, b, c = np.deg2rad(deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx)


def pullback(params: AnatomyParams, grid: Grid) -> np.ndarray:
    """MNI coordinates ``(X, Y, Z, 3)`` of every voxel of ``grid`` in this subject."""
    fwd = rotation_matrix(params.rotation_deg) @ np.diag(params.scale)
    inv = np.linalg.inv(fwd).astype(np.float32)
    t = np.asarray(params.translation_mm, dtype=np.float32)
    x, y, z = (grid.axis_mm(i).astype(np.float32) for i in range(3))
    p = smooth_field(grid, params.warp, params.warp_box)  # (X, Y, Z, 3), then add inv @ (x - t)
    p += x[:, None, None, None] * inv[:, 0]
    p += y[None, :, None, None] * inv[:, 1]
    p += z[None, None, :, None] * inv[:, 2] - inv @ t
    return p


@dataclass
class TissueMaps:
    """Partial volumes on one grid (all ``(X, Y, Z)`` float32).

    ``infarct`` and ``oedema`` are the fractions of the tissue in a voxel that is infarcted or
    oedematous (they modify GM/WM intensities rather than add a class); ``icv`` is the
    intracranial partial volume and ``d_icv`` its signed distance (mm), for skull stripping.
    """

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    vent: np.ndarray
    skull: np.ndarray
    scalp: np.ndarray
    tumour: np.ndarray
    calc: np.ndarray
    infarct: np.ndarray
    oedema: np.ndarray
    icv: np.ndarray
    d_icv: np.ndarray

    def slab_average(self, k: int) -> TissueMaps:
        """Average groups of ``k`` slices along z (thick-slice acquisition)."""
        if k == 1:
            return self
        return TissueMaps(**{n: slab_average(v, k) for n, v in vars(self).items()})


def slab_average(arr: np.ndarray, k: int) -> np.ndarray:
    """Mean over consecutive groups of ``k`` slices along the last axis."""
    if k == 1:
        return arr
    x, y, z = arr.shape
    return np.asarray(arr.reshape(x, y, z // k, k).mean(axis=3), dtype=np.float32)


def render_anatomy(
    template: Template,
    params: AnatomyParams,
    grid: Grid,
    *,
    infarct: Infarct | None = None,
    meningioma: Meningioma | None = None,
) -> TissueMaps:
    """Partial-volume maps of one subject on ``grid`` (lesions are optional, see lesions.py)."""
    h = float(min(grid.spacing))
    w = template.spacing
    p = pullback(params, grid)
    d_icv = trilinear(template.d_icv, template.to_index(p))[..., 0]
    q = meningioma.displace(p) if meningioma is not None else p
    inside = d_icv > -2 * h  # brain fields are zero beyond the ICV: sample only inside
    brain = np.empty((*d_icv.shape, 4), dtype=np.float32)
    brain[~inside] = (0.0, 0.0, -100.0, -100.0)
    brain[inside] = trilinear(template.fields, template.to_index(q[inside]))
    gm0 = np.clip(brain[..., 0], 0.0, 1.0)
    wm0 = np.clip(brain[..., 1], 0.0, 1.0)
    d_b, d_v = brain[..., 2], brain[..., 3]
    erosion, dilation = ageing_mm(params, template)
    gm, wm = age_tissue(gm0, wm0, d_b, d_v, erosion * region_weight(q), dilation, w)
    icv = ramp(d_icv, h)
    over = np.maximum((gm + wm) / np.maximum(icv, 1e-6), 1.0)
    gm, wm = gm / over, wm / over
    vent = np.minimum(ramp(d_v + dilation, w), icv)

    tumour = np.zeros_like(gm)
    calc = np.zeros_like(gm)
    oedema = np.zeros_like(gm)
    if meningioma is not None:
        tumour = meningioma.fraction(p, h) * icv
        calc = meningioma.calcification(p, h) * tumour
        oedema = meningioma.oedema(p)
        gm, wm, vent = gm * (1 - tumour), wm * (1 - tumour), vent * (1 - tumour)
    lesion = infarct.fraction(q, h) if infarct is not None else np.zeros_like(gm)
    csf = np.clip(icv - gm - wm - tumour, 0.0, 1.0)
    out = -d_icv
    skull = ramp(out, h) - ramp(out - SKULL_MM, h)
    scalp = ramp(out - SKULL_MM, h) - ramp(out - SKULL_MM - SCALP_MM, h)
    f32 = np.float32
    return TissueMaps(
        gm=gm.astype(f32),
        wm=wm.astype(f32),
        csf=csf.astype(f32),
        vent=vent.astype(f32),
        skull=skull.astype(f32),
        scalp=scalp.astype(f32),
        tumour=tumour.astype(f32),
        calc=calc.astype(f32),
        infarct=lesion.astype(f32),
        oedema=oedema.astype(f32),
        icv=icv.astype(f32),
        d_icv=d_icv.astype(f32),
    )
