"""Scanner sites: acquisition parameters and the artefacts that make domain shift.

A site fixes voxel size and slice thickness, bias-field strength, SNR, its vendor contrast (a
perturbed contrast table with a grey/white contrast factor), intensity scale, inter-sequence
misregistration, skull-stripping residue and how often it acquires SWI rather than T2*. The
ranges follow DESIGN.md §3: bias 10–40 %, SNR 10–40, GM/WM signal ratio ±15 %, slices up to ~6 mm.

The acquisition model (``session.synthesize_session``), applied to a noise-free render on an
isotropic grid: thick slices (mean of ``slice_factor`` slices along z, written at that
thickness) -> misregistration (small rigid resample of every sequence but the first) ->
multiplicative bias field -> Rician noise (Gaussian for ADC) -> intensity scale -> skull-strip
mask (ICV, plus patchy residue of skull and scalp at sites that have it). Thick slices come
first because resampling and multiplying by a smooth field commute with them to within the
field's smoothness, and the rest then runs on ``slice_factor`` times fewer voxels.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from neurofm.synth.anatomy import Grid, rotation_matrix, smooth_field
from neurofm.synth.contrast import ContrastTable, sample_contrast
from neurofm.synth.templates import trilinear

Box = tuple[tuple[float, float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class SiteParams:
    """One scanner/protocol. ``spacing`` is in-plane (mm); slices are ``slice_factor`` × thicker."""

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

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return (self.spacing, self.spacing, self.spacing * self.slice_factor)


def _site_rng(name: str) -> np.random.Generator:
    """Fixed per-name stream: a named site is the same in every benchmark, whatever the seed."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def make_site(
    name: str,
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
    """A named clinical site with its own (fixed) vendor contrast table."""
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
        contrast=sample_contrast(_site_rng(name), gw_contrast, 0.06),
    )


def random_site(rng: np.random.Generator, name: str, spacing: float) -> SiteParams:
    """A pretraining site with parameters spanning (and exceeding) the target sites' range."""
    gw = float(rng.uniform(0.85, 1.15))
    return SiteParams(
        name=name,
        spacing=float(spacing * rng.uniform(0.85, 1.2)),
        slice_factor=int(rng.choice([1, 1, 2, 3])),
        bias=float(rng.uniform(0.05, 0.4)),
        snr=float(rng.uniform(10.0, 40.0)),
        gw_contrast=gw,
        intensity_scale=float(np.exp(rng.uniform(np.log(100.0), np.log(4000.0)))),
        misregistration_deg=float(rng.uniform(0.0, 2.5)),
        misregistration_mm=float(rng.uniform(0.0, 2.0)),
        strip_residue_mm=float(rng.choice([0.0, 0.0, rng.uniform(2.0, 8.0)])),
        p_swi=float(rng.uniform(0.0, 1.0)),
        contrast=sample_contrast(rng, gw, 0.15),
        session_jitter=0.15,
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


def default_sites(spacing: float, targets: tuple[tuple[float, int], ...]) -> tuple[SiteParams, ...]:
    """The source site and up to three target sites with the given (in-plane mm, slice factor).

    The source is a clean 3D protocol; each target differs from it in several ways at once.
    """
    source = make_site(
        "source",
        spacing=spacing,
        bias=0.10,
        snr=30.0,
        gw_contrast=1.0,
        intensity_scale=1000.0,
        p_swi=0.5,
    )
    makers = [
        lambda sp, k: make_site(
            "sitea",
            spacing=sp,
            slice_factor=k,
            bias=0.35,
            snr=14.0,
            gw_contrast=0.87,
            intensity_scale=2800.0,
            misregistration_deg=2.0,
            misregistration_mm=1.5,
            p_swi=1.0,
        ),
        lambda sp, k: make_site(
            "siteb",
            spacing=sp,
            slice_factor=k,
            bias=0.22,
            snr=20.0,
            gw_contrast=1.13,
            intensity_scale=350.0,
            misregistration_deg=0.5,
            misregistration_mm=0.5,
            strip_residue_mm=6.0,
            p_swi=0.0,
        ),
        lambda sp, k: make_site(
            "sitec",
            spacing=sp,
            slice_factor=k,
            bias=0.30,
            snr=12.0,
            gw_contrast=0.92,
            intensity_scale=1500.0,
            misregistration_deg=1.0,
            misregistration_mm=1.0,
            strip_residue_mm=3.0,
            p_swi=0.7,
        ),
    ]
    if len(targets) > len(makers):
        raise ValueError(f"at most {len(makers)} target sites, got {len(targets)}")
    return (source, *(make(sp, k) for make, (sp, k) in zip(makers, targets, strict=False)))
