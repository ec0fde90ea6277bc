"""One imaging session: a subject, optional lesions, a site and its sequences -> NIfTI arrays.

A :class:`SessionSpec` holds everything drawn about a session (``benchmark.make_spec`` draws it
from the case's own generator); ``synthesize_session`` renders it and adds the acquisition,
drawing the noise from the rest of that generator. All sequences of a session share one grid
(shape and affine); the ground-truth masks are on that grid too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofm.synth.anatomy import (
    AnatomyParams,
    Grid,
    TissueMaps,
    make_grid,
    render_anatomy,
    slab_average,
    smooth_field,
)
from neurofm.synth.contrast import ContrastTable, jitter_table, reference_level, render
from neurofm.synth.lesions import Infarct, Meningioma
from neurofm.synth.sites import Box, SiteParams, bias_field, rician, rigid_resample, strip_mask
from neurofm.synth.templates import Template

ADC_UNIT = 1000.0  # written ADC is in 1e-6 mm²/s, the renderer works in 1e-3
INT16_MAX = 32767


@dataclass(frozen=True)
class SessionSpec:
    """Everything that defines a session except the acquisition noise."""

    anatomy: AnatomyParams
    site: SiteParams
    sequences: tuple[str, ...]
    contrast: ContrastTable
    gains: dict[str, float]
    infarct: Infarct | None = None
    meningioma: Meningioma | None = None


@dataclass
class Session:
    """Rendered session: int16 images, their common affine, masks and the tissue maps."""

    images: dict[str, np.ndarray]
    affine: np.ndarray
    brain_mask: np.ndarray
    tumour_mask: np.ndarray | None
    infarct_mask: np.ndarray | None
    maps: TissueMaps


def session_contrast(
    rng: np.random.Generator, site: SiteParams, sequences: tuple[str, ...]
) -> tuple[ContrastTable, dict[str, float]]:
    """The site's vendor table perturbed for this session, and a gain per sequence (±10 %)."""
    table = jitter_table(site.contrast, rng, site.session_jitter)
    gains = {s: float(site.intensity_scale * np.exp(rng.normal(0.0, 0.1))) for s in sequences}
    return table, gains


def site_grid(box: Box, site: SiteParams) -> Grid:
    """The fine isotropic grid a site renders on: ``box`` at the site's in-plane spacing, its
    slice axis rounded up to a multiple of ``slice_factor`` so thick slices tile it exactly."""
    grid = make_grid(box, site.spacing)
    shape = np.asarray(grid.shape)
    k, axis = site.slice_factor, site.slice_axis
    if k == 1 or shape[axis] % k == 0:
        return grid
    centre = grid.affine[:3, 3] + (shape - 1) / 2 * site.spacing
    shape[axis] = -(-shape[axis] // k) * k
    affine = grid.affine.copy()
    affine[:3, 3] = centre - (shape - 1) / 2 * site.spacing
    return Grid((int(shape[0]), int(shape[1]), int(shape[2])), affine)


def thick_slices(image: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Mean of consecutive groups of ``k`` slices along ``axis`` (a thick-slice acquisition)."""
    if k == 1:
        return image
    moved = slab_average(np.moveaxis(image, axis, -1), k)
    return np.ascontiguousarray(np.moveaxis(moved, -1, axis))


def output_affine(grid: Grid, slice_factor: int, slice_axis: int = 2) -> np.ndarray:
    """Affine of a grid after averaging ``slice_factor`` slices along ``slice_axis``: that
    axis's voxel is ``slice_factor`` times longer and centred on the slices it averages."""
    affine = grid.affine.copy()
    h = affine[slice_axis, slice_axis]
    affine[slice_axis, 3] += (slice_factor - 1) / 2 * h
    affine[slice_axis, slice_axis] = h * slice_factor
    return affine


def synthesize_session(
    spec: SessionSpec, template: Template, box: Box, rng: np.random.Generator
) -> Session:
    """Render, add the site's artefacts, skull-strip and quantise every sequence."""
    site = spec.site
    k, axis = site.slice_factor, site.slice_axis
    grid = site_grid(box, site)
    fine = render_anatomy(
        template, spec.anatomy, grid, infarct=spec.infarct, meningioma=spec.meningioma
    )
    session_bias = rng.normal(0.0, 1.0, (4, 4, 4))
    maps = TissueMaps(**{n: thick_slices(v, k, axis) for n, v in vars(fine).items()})
    out_grid = Grid(maps.icv.shape, output_affine(grid, k, axis))
    residue = _patches(out_grid, box, rng) if site.strip_residue_mm > 0 else None
    mask = strip_mask(maps.icv, maps.d_icv, site.strip_residue_mm, residue)

    images: dict[str, np.ndarray] = {}
    for i, seq in enumerate(spec.sequences):
        img = thick_slices(render(fine, spec.contrast, seq, spec.infarct), k, axis)
        if i > 0:
            img = rigid_resample(
                img, out_grid, rng, site.misregistration_deg, site.misregistration_mm
            )
        if seq == "adc":
            sd = np.float32(0.05 * 30.0 / site.snr)
            noisy = img[mask] + sd * rng.standard_normal(int(mask.sum()), dtype=np.float32)
            img[mask] = np.clip(noisy, 0.0, None) * ADC_UNIT
        else:
            coef = session_bias + 0.3 * rng.normal(0.0, 1.0, session_bias.shape)
            img = img * bias_field(out_grid, box, coef, site.bias)
            snr = site.snr * (0.6 if seq == "dwi_b1000" else 1.0)
            sigma = reference_level(spec.contrast, seq) / snr
            img[mask] = rician(img[mask], sigma, rng) * spec.gains[seq]  # outside: stripped
        img = np.where(mask, img, 0.0)
        images[seq] = np.clip(np.rint(img), 0, INT16_MAX).astype(np.int16)

    tumour = (maps.tumour >= 0.5) & mask if spec.meningioma is not None else None
    infarct = None
    if spec.infarct is not None:
        infarct = (maps.infarct * (maps.gm + maps.wm) >= 0.5) & mask
    return Session(
        images=images,
        affine=out_grid.affine,
        brain_mask=mask,
        tumour_mask=None if tumour is None else tumour.astype(np.uint8),
        infarct_mask=None if infarct is None else infarct.astype(np.uint8),
        maps=maps,
    )


def _patches(grid: Grid, box: Box, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field in [-1, 1]; its positive part marks where stripping left tissue."""
    f = smooth_field(grid, rng.normal(0.0, 1.0, (6, 6, 6)), box)
    return np.asarray(f / max(float(np.abs(f).max()), 1e-6), dtype=np.float32)
