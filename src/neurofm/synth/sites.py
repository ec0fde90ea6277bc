"""Scanner sites: acquisition parameters and the artefacts that make domain shift.

A site fixes voxel size and slice thickness (and the axis its thick slices run along),
bias-field strength, SNR, its vendor contrast (a perturbed contrast table with a grey/white
contrast factor), intensity scale, inter-sequence misregistration, skull-stripping residue and
how often it acquires SWI rather than T2*. The ranges follow published clinical values: bias
10–40 %, SNR 10–40, GM/WM signal ratio ±15 %, slices up to ~6 mm.

Pretraining sites are drawn from :data:`PRETRAIN_RANGES`. Target sites are drawn per benchmark
seed, in one of two shift modes: ``matched`` draws them from those same ranges (a domain the
pretraining data covered), ``novel`` draws two to four named properties (:data:`NOVEL_GEOMETRY`,
:data:`NOVEL_SIGNAL`) outside them, so "the pretrained model already saw this domain" can be
told apart from "it learned a better representation". :func:`outside_ranges` checks which
properties of a site lie outside a :class:`SiteRanges`. Lengths in the ranges are multiples of
the preset's voxel size, because the coarse presets scale the whole head grid down.

The acquisition model (``session.synthesize_session``), applied to a noise-free render on an
isotropic grid: thick slices (mean of ``slice_factor`` slices along ``slice_axis``, written at
that thickness) -> misregistration (small rigid resample of every sequence but the first) ->
multiplicative bias field -> Rician noise (Gaussian for ADC) -> intensity scale -> skull-strip
mask (ICV, plus patchy residue of skull and scalp at sites that have it). Thick slices come
first because resampling and multiplying by a smooth field commute with them to within the
field's smoothness, and the rest then runs on ``slice_factor`` times fewer voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from neurofm.synth.anatomy import Grid, rotation_matrix, smooth_field
from neurofm.synth.contrast import ContrastTable, sample_contrast
from neurofm.synth.templates import trilinear

Box = tuple[tuple[float, float, float], tuple[float, float, float]]
Shift = Literal["matched", "novel"]
SHIFTS: tuple[Shift, ...] = ("matched", "novel")


@dataclass(frozen=True)
class SiteParams:
    """One scanner/protocol. ``spacing`` is in-plane (mm); slices are ``slice_factor`` × thicker.

    ``novel`` names the properties drawn outside the pretraining ranges (empty unless the site
    is a target of a ``novel``-shift benchmark).
    """

    name: str
    spacing: float
    slice_factor: int
    bias: float
    snr: float
    gw_contrast: float
    intensity_scale: float
    misregistration_deg: float
    misregistration_mm: float
    strip_residue_mm: float
    p_swi: float
    contrast: ContrastTable
    session_jitter: float = 0.03
    slice_axis: int = 2
    novel: tuple[str, ...] = ()

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        size = [self.spacing] * 3
        size[self.slice_axis] = self.spacing * self.slice_factor
        return (size[0], size[1], size[2])


@dataclass(frozen=True)
class SiteRanges:
    """Where a site's parameters are drawn from (intervals are closed, ``intensity_scale``
    log-uniform). ``spacing`` is in-plane voxel size as a multiple of the preset's; thick slices
    average one of ``slice_factors`` fine slices along one of ``slice_axes``; a site leaves
    skull-strip residue with probability ``p_strip_residue``."""

    spacing: tuple[float, float] = (0.85, 1.2)
    slice_factors: tuple[int, ...] = (1, 1, 2, 3)  # 1 twice: half the sites are 3D
    slice_axes: tuple[int, ...] = (2,)  # thick slices are axial, as in most clinical 2D MRI
    bias: tuple[float, float] = (0.05, 0.4)
    snr: tuple[float, float] = (10.0, 40.0)
    gw_contrast: tuple[float, float] = (0.85, 1.15)
    intensity_scale: tuple[float, float] = (100.0, 4000.0)
    misregistration_deg: tuple[float, float] = (0.0, 2.5)
    misregistration_mm: tuple[float, float] = (0.0, 2.0)
    strip_residue_mm: tuple[float, float] = (2.0, 8.0)
    p_strip_residue: float = 1 / 3
    p_swi: tuple[float, float] = (0.0, 1.0)

    def max_thickness(self, spacing: float) -> float:
        """Thickest slice (mm) a site drawn from these ranges can have at preset ``spacing``."""
        return spacing * self.spacing[1] * max(self.slice_factors)


PRETRAIN_RANGES = SiteRanges()
NOVEL_GEOMETRY = ("slice_axis", "slice_thickness")
NOVEL_SIGNAL = ("snr", "bias", "intensity_scale")
_INTERVALS = (
    "bias",
    "snr",
    "gw_contrast",
    "intensity_scale",
    "misregistration_deg",
    "misregistration_mm",
    "p_swi",
)
_TOL = 1e-9  # relative: products like spacing × factor must not read as outside
_VOXEL_AWAY = 0.08  # a target's in-plane voxel is at least this fraction off the source's
_SCALE_AWAY = 2.2  # ... and its intensity scale at least this factor off


def _inside(value: float, interval: tuple[float, float]) -> bool:
    lo, hi = interval
    return lo * (1 - _TOL) - _TOL <= value <= hi * (1 + _TOL) + _TOL


def outside_ranges(site: SiteParams, ranges: SiteRanges, spacing: float) -> tuple[str, ...]:
    """Names of the properties of ``site`` outside ``ranges`` (preset voxel size ``spacing``).

    ``slice_axis`` counts only for thick slices; ``slice_thickness`` is a slice factor or a
    slice thickness in mm beyond any the ranges allow.
    """
    out: list[str] = []
    if not _inside(site.spacing / spacing, ranges.spacing):
        out.append("spacing")
    if site.slice_factor > 1 and site.slice_axis not in ranges.slice_axes:
        out.append("slice_axis")
    thickness = site.spacing * site.slice_factor
    if site.slice_factor > max(ranges.slice_factors) or not _inside(
        thickness, (0.0, ranges.max_thickness(spacing))
    ):
        out.append("slice_thickness")
    out += [k for k in _INTERVALS if not _inside(getattr(site, k), getattr(ranges, k))]
    if site.strip_residue_mm > 0 and not _inside(site.strip_residue_mm, ranges.strip_residue_mm):
        out.append("strip_residue_mm")
    return tuple(out)


def make_site(
    name: str,
    rng: np.random.Generator,
    *,
    spacing: float,
    slice_factor: int = 1,
    bias: float,
    snr: float,
    gw_contrast: float,
    intensity_scale: float,
    misregistration_deg: float = 0.0,
    misregistration_mm: float = 0.0,
    strip_residue_mm: float = 0.0,
    p_swi: float = 0.5,
) -> SiteParams:
    """A site with the given acquisition and a vendor contrast table drawn from ``rng``."""
    return SiteParams(
        name=name,
        spacing=spacing,
        slice_factor=slice_factor,
        bias=bias,
        snr=snr,
        gw_contrast=gw_contrast,
        intensity_scale=intensity_scale,
        misregistration_deg=misregistration_deg,
        misregistration_mm=misregistration_mm,
        strip_residue_mm=strip_residue_mm,
        p_swi=p_swi,
        contrast=sample_contrast(rng, gw_contrast, 0.06),
    )


def source_site(rng: np.random.Generator, spacing: float) -> SiteParams:
    """The clean 3D source protocol; only its vendor contrast table varies with the seed."""
    return make_site(
        "source", rng, spacing=spacing, bias=0.10, snr=30.0, gw_contrast=1.0, intensity_scale=1000.0
    )


def random_site(
    rng: np.random.Generator, name: str, spacing: float, ranges: SiteRanges = PRETRAIN_RANGES
) -> SiteParams:
    """A pretraining site: every parameter uniform in ``ranges``, with a SynthSeg-size jitter."""
    r = ranges
    gw = float(rng.uniform(*r.gw_contrast))
    inplane = float(spacing * rng.uniform(*r.spacing))
    slice_factor = int(rng.choice(list(r.slice_factors)))
    bias = float(rng.uniform(*r.bias))
    snr = float(rng.uniform(*r.snr))
    scale = float(np.exp(rng.uniform(*np.log(r.intensity_scale))))
    deg = float(rng.uniform(*r.misregistration_deg))
    mm = float(rng.uniform(*r.misregistration_mm))
    residue = float(rng.uniform(*r.strip_residue_mm))
    residue = residue if rng.random() < r.p_strip_residue else 0.0
    return SiteParams(
        name=name,
        spacing=inplane,
        slice_factor=slice_factor,
        bias=bias,
        snr=snr,
        gw_contrast=gw,
        intensity_scale=scale,
        misregistration_deg=deg,
        misregistration_mm=mm,
        strip_residue_mm=residue,
        p_swi=float(rng.uniform(*r.p_swi)),
        contrast=sample_contrast(rng, gw, 0.15),
        session_jitter=0.15,
        slice_axis=int(rng.choice(list(r.slice_axes))),
    )


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _novel_properties(rng: np.random.Generator) -> tuple[str, ...]:
    """One or both geometry novelties and one or two signal novelties (2–4 properties)."""
    geometry = [NOVEL_GEOMETRY[:1], NOVEL_GEOMETRY[1:], NOVEL_GEOMETRY][int(rng.integers(3))]
    k = int(rng.integers(1, 3))
    signal = sorted(rng.choice(len(NOVEL_SIGNAL), size=k, replace=False))
    return (*geometry, *(NOVEL_SIGNAL[i] for i in signal))


def target_site(
    rng: np.random.Generator,
    name: str,
    spacing: float,
    source: SiteParams,
    *,
    shift: Shift,
    thick: bool,
    ranges: SiteRanges = PRETRAIN_RANGES,
) -> SiteParams:
    """A target site that differs from ``source`` in every property at once.

    ``matched``: each property is drawn from the part of ``ranges`` away from the source (bias at
    least twice the source's, SNR at most 3/4 of it, intensity scale at least 2.2× off, grey/
    white factor 0.10–0.15 from 1, in-plane voxel 8 % off), so the site is inside the
    pretraining domain. ``novel``: the properties named by :func:`_novel_properties` are drawn
    outside ``ranges`` instead — thick slices along x or y, a slice factor one beyond the
    largest (at an in-plane voxel that makes the slices thicker than any in range), SNR 0.6–0.95×
    the minimum, bias 1.1–1.5× the maximum, intensity scale 1/3–1/1.25× the minimum or 1.5–3× the
    maximum. ``thick`` forces thick slices (within the ranges) when geometry is not novel.
    """
    r = ranges
    novel = _novel_properties(rng) if shift == "novel" else ()
    gw = 1.0 + float(rng.choice([-1.0, 1.0])) * float(
        rng.uniform(0.10, min(r.gw_contrast[1] - 1.0, 1.0 - r.gw_contrast[0]))
    )
    # larger voxels for a novel thickness: 4 x 1.08 beats the ranges' 3 x 1.2
    if "slice_thickness" in novel or rng.random() < 0.5:
        inplane = float(rng.uniform(1.0 + _VOXEL_AWAY, r.spacing[1]))
    else:
        inplane = float(rng.uniform(r.spacing[0], 1.0 - _VOXEL_AWAY))
    thick_factors = [f for f in r.slice_factors if f > 1]
    if "slice_thickness" in novel:
        factor = max(r.slice_factors) + 1
    elif thick or novel:
        factor = int(rng.choice(thick_factors))
    else:
        factor = int(rng.choice(list(r.slice_factors)))
    other_axes = [a for a in range(3) if a not in r.slice_axes]
    axis = int(rng.choice(other_axes if "slice_axis" in novel else list(r.slice_axes)))
    if "bias" in novel:
        bias = float(rng.uniform(1.1, 1.5)) * r.bias[1]
    else:
        bias = float(rng.uniform(max(r.bias[0], 2 * source.bias), r.bias[1]))
    if "snr" in novel:
        snr = float(rng.uniform(0.6, 0.95)) * r.snr[0]
    else:
        snr = float(rng.uniform(r.snr[0], min(r.snr[1], 0.75 * source.snr)))
    lo, hi = r.intensity_scale
    up = rng.random() < 0.5
    if "intensity_scale" in novel:
        scale = _log_uniform(rng, hi * 1.5, hi * 3) if up else _log_uniform(rng, lo / 3, lo / 1.25)
    else:
        s = source.intensity_scale
        away = (s * _SCALE_AWAY, hi) if up else (lo, s / _SCALE_AWAY)
        scale = _log_uniform(rng, *away)
    residue = float(rng.uniform(*r.strip_residue_mm)) if rng.random() < 0.5 else 0.0
    return SiteParams(
        name=name,
        spacing=spacing * inplane,
        slice_factor=factor,
        bias=bias,
        snr=snr,
        gw_contrast=gw,
        intensity_scale=scale,
        misregistration_deg=float(
            rng.uniform(0.2 * r.misregistration_deg[1], r.misregistration_deg[1])
        ),
        misregistration_mm=float(
            rng.uniform(0.2 * r.misregistration_mm[1], r.misregistration_mm[1])
        ),
        strip_residue_mm=residue,
        p_swi=float(rng.uniform(*r.p_swi)),
        contrast=sample_contrast(rng, gw, 0.06),
        slice_axis=axis,
        novel=novel,
    )


def bias_field(grid: Grid, box: Box, coef: np.ndarray, amplitude: float) -> np.ndarray:
    """Smooth multiplicative field between 1/(1+a) and (1+a) from B-spline coefficients."""
    f = smooth_field(grid, coef, box)
    f /= max(float(np.abs(f).max()), 1e-6)
    return np.asarray(np.exp(np.log1p(amplitude) * f), dtype=np.float32)


def rigid_resample(
    image: np.ndarray, grid: Grid, rng: np.random.Generator, deg: float, mm: float
) -> np.ndarray:
    """Resample an image after a small random rotation (about the centre) and shift."""
    if deg <= 0 and mm <= 0:
        return image
    rot = rotation_matrix(tuple(rng.normal(0.0, deg / 2, 3)))
    shift = rng.normal(0.0, mm / 2, 3)
    spacing = np.asarray(grid.spacing)
    centre = (np.asarray(image.shape) - 1) / 2
    # index-space matrix: voxel -> mm, rotate, mm -> voxel
    matrix = np.diag(1 / spacing) @ rot @ np.diag(spacing)
    offset = centre - matrix @ centre + shift / spacing
    m = matrix.astype(np.float32)
    x, y, z = (np.arange(n, dtype=np.float32) for n in image.shape)
    src = (
        x[:, None, None, None] * m[:, 0]
        + y[None, :, None, None] * m[:, 1]
        + (z[None, None, :, None] * m[:, 2] + offset.astype(np.float32))
    )
    return trilinear(image[..., None], src)[..., 0]


def rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise of ``sigma`` on each channel."""
    s = np.float32(sigma)
    real = image + s * rng.standard_normal(image.shape, dtype=np.float32)
    imag = s * rng.standard_normal(image.shape, dtype=np.float32)
    return np.asarray(np.sqrt(real * real + imag * imag), dtype=np.float32)


def strip_mask(
    icv: np.ndarray, d_icv: np.ndarray, residue_mm: float, patches: np.ndarray | None
) -> np.ndarray:
    """Skull-strip mask: the intracranial volume, plus patches of skull/scalp left behind."""
    mask = icv >= 0.5
    if residue_mm > 0 and patches is not None:
        depth = residue_mm * np.clip(patches, 0.0, 1.0)
        mask |= (d_icv > -depth) & (patches > 0)
    return mask
