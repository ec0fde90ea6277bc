"""The generator's models in memory: template, ageing, lesions, contrast, site artefacts.

Everything runs on the 4 mm template (cached per process) and 4–6 mm grids, so the file stays
within a few seconds; expected values come from published clinical figures.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import spearmanr

from neurofm.synth.anatomy import Grid, make_grid, render_anatomy, sample_anatomy, slab_average
from neurofm.synth.benchmark import get_preset, plan_jobs
from neurofm.synth.contrast import BASE, MAGNITUDE, sample_contrast
from neurofm.synth.lesions import sample_infarct, sample_meningioma
from neurofm.synth.session import SessionSpec, session_contrast, synthesize_session
from neurofm.synth.sites import Box, bias_field, make_site, rician, rigid_resample
from neurofm.synth.templates import Template, load_template


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(4.0)


@pytest.fixture(scope="module")
def box(template: Template) -> Box:
    lo = tuple(v - 8.0 for v in template.icv_box[0])
    hi = tuple(v + 8.0 for v in template.icv_box[1])
    return (lo, hi)  # type: ignore[return-value]


def test_template_derivations_are_plausible(template: Template) -> None:
    gm, wm = template.fields[..., 0], template.fields[..., 1]
    ml = template.spacing**3 / 1000
    assert 1200 < (gm + wm).sum() * ml < 2000  # MNI152 brain is ~1.2x a real one
    assert 10 < template.vent_ml < 60  # lateral + third ventricles
    icv = (template.d_icv[..., 0] > 0).sum() * ml
    assert icv > (gm + wm).sum() * ml * 1.05  # CSF (derived, not shipped) fills the rest
    assert set(template.dura_points) == {"convexity", "falx", "skull_base"}
    assert np.all(np.diff(template.tissue_vs_erosion) < 0)
    assert np.all(np.diff(template.vent_vs_dilation) >= 0)


def test_ventricles_grow_and_brain_shrinks_with_age(template: Template, box: Box) -> None:
    grid = make_grid(box, 6.0)
    ages = np.linspace(20, 88, 14)
    vent, tissue = [], []
    for i, age in enumerate(ages):
        maps = render_anatomy(template, sample_anatomy(np.random.default_rng(i), age, box), grid)
        vent.append(maps.vent.sum() / maps.icv.sum())
        tissue.append((maps.gm + maps.wm).sum() / maps.icv.sum())
    assert spearmanr(ages, vent)[0] > 0.5
    assert spearmanr(ages, tissue)[0] < -0.5


def test_ageing_follows_published_rates(template: Template, box: Box) -> None:
    grid = make_grid(box, 4.0)
    base = sample_anatomy(np.random.default_rng(0), 30, box)
    base = dataclasses.replace(base, vent_factor=1.0, atrophy_factor=1.0)
    vent, tissue = {}, {}
    for age in (30, 50, 70, 80, 90):
        maps = render_anatomy(template, dataclasses.replace(base, age=age), grid)
        vent[age], tissue[age] = maps.vent.sum(), (maps.gm + maps.wm).sum()
    assert 1.5 < vent[80] / vent[30] < 2.5  # ventricles roughly double 30 -> 80
    assert 0.02 < 1 - tissue[50] / tissue[30] < 0.06  # ~0.2 %/yr
    assert 0.06 < 1 - tissue[90] / tissue[70] < 0.13  # ~0.5 %/yr


def test_infarct_brighter_on_dwi_flair_darker_on_adc_than_same_tissue(
    template: Template, box: Box
) -> None:
    site = make_site(
        "unit",
        np.random.default_rng(0),
        spacing=5.0,
        bias=0.1,
        snr=30.0,
        gw_contrast=1.0,
        intensity_scale=1000.0,
    )
    seqs = ("dwi_b1000", "flair", "adc", "swi")
    compared = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        infarct = dataclasses.replace(sample_infarct(rng, template, 5.0), radius=16.0)
        contrast, gains = session_contrast(rng, site, seqs)
        spec = SessionSpec(sample_anatomy(rng, 70, box), site, seqs, contrast, gains, infarct)
        s = synthesize_session(spec, template, box, rng)
        m = s.maps
        pure = (m.gm + m.wm >= 0.95) & s.brain_mask  # CSF partial volume would mask the ADC drop
        for tissue in (m.gm > 0.6, m.wm > 0.6):
            lesion = (m.infarct >= 0.8) & tissue & pure
            normal = (m.infarct < 0.01) & tissue & pure
            if lesion.sum() < 2:
                continue
            ratio = {q: s.images[q][lesion].mean() / s.images[q][normal].mean() for q in seqs}
            assert ratio["dwi_b1000"] > 1.4 and ratio["flair"] > 1.25, ratio
            assert ratio["adc"] < 0.7 and 0.8 < ratio["swi"] < 1.15, ratio
            compared += 1
    assert compared >= 4


def test_meningioma_is_dural_based_and_displaces_brain(template: Template, box: Box) -> None:
    grid = make_grid(box, 4.0)
    seen = set()
    n_big = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        tumour = sample_meningioma(rng, template, 4.0)
        anatomy = sample_anatomy(rng, 60, box)
        plain = render_anatomy(template, anatomy, grid)
        maps = render_anatomy(template, anatomy, grid, meningioma=tumour)
        assert (maps.tumour <= maps.icv + 1e-6).all()  # inside the skull
        assert maps.tumour.sum() > 2 and 16.0 <= tumour.diameter_mm <= 50.0
        core = maps.tumour > 0.9
        assert (maps.gm + maps.wm)[core].max(initial=0) < 0.1  # no brain inside the mass
        outside = maps.tumour < 0.01
        moved = np.abs((maps.gm + maps.wm) - (plain.gm + plain.wm))[outside].sum()
        if tumour.diameter_mm >= 20:  # 1-3 voxel masses at 4 mm barely move anything
            assert moved > 0.2 * maps.tumour.sum()  # brain around it moved, not just cut out
            n_big += 1
        if tumour.location != "falx":  # on the skull's inner surface
            assert maps.d_icv[maps.tumour > 0.2].min() < 4.0
        seen.add(tumour.location)
    assert len(seen) >= 2 and n_big >= 3


def test_displacement_pushes_outward_and_decays(template: Template) -> None:
    tumour = sample_meningioma(np.random.default_rng(1), template, 3.5)
    c, normal = tumour.centre.astype(np.float32), tumour.frame[2].astype(np.float32)
    radius = float(tumour.axes[2])
    steps = np.linspace(1.05, 6.0, 40, dtype=np.float32)
    ray = c - normal * radius * steps[:, None]
    src = np.linalg.norm(tumour.displace(ray) - c, axis=1) / radius
    assert np.all(np.diff(src) > 0) and np.all(src < steps)  # pulled from nearer: pushed out
    assert steps[-1] - src[-1] < 0.05  # far away the brain is untouched
    assert np.allclose(tumour.displace(c[None])[0], c)


def test_meningiomas_stay_visible_at_demo_resolution(template: Template) -> None:
    rng = np.random.default_rng(0)
    diam = [sample_meningioma(rng, template, 3.5).diameter_mm for _ in range(60)]
    assert min(diam) >= 4 * 3.5 and max(diam) <= 50.0 and max(diam) > 30.0


def test_site_artefacts() -> None:
    rng = np.random.default_rng(0)
    box: Box = ((-50.0, -50.0, -50.0), (50.0, 50.0, 50.0))
    grid = make_grid(box, 5.0)
    field = bias_field(grid, box, rng.normal(size=(4, 4, 4)), 0.3)
    assert np.isclose(max(field.max(), 1 / field.min()), 1.3, rtol=1e-3)

    flat = np.full((40, 40, 40), 100.0, dtype=np.float32)
    assert abs(rician(flat, 5.0, rng).std() - 5.0) < 0.2  # high SNR: Gaussian-like

    img = rng.random((10, 12, 14)).astype(np.float32)
    same = rigid_resample(img, Grid(img.shape, np.eye(4)), rng, 0.0, 0.0)  # type: ignore[arg-type]
    assert same is img
    moved = rigid_resample(img, Grid(img.shape, np.eye(4)), rng, 2.0, 2.0)  # type: ignore[arg-type]
    assert moved.shape == img.shape and not np.allclose(moved, img)

    thick = slab_average(np.arange(8, dtype=np.float32).reshape(1, 1, 8), 4)
    assert thick.ravel().tolist() == [1.5, 5.5]


@pytest.mark.parametrize("shift", ["matched", "novel"])
@pytest.mark.parametrize("preset", ["tiny", "demo", "full"])
def test_site_grey_white_ratio_stays_within_design_range(preset: str, shift: str) -> None:
    """Vendor grey/white contrast ±15 % — measured as the GM/WM signal ratio — at every site
    (source, targets and pretraining sites) of several seeds, in both shift modes."""
    p = get_preset(preset)
    for seed in range(5):
        _, pre = plan_jobs(dataclasses.replace(p, pretrain_sessions=0), seed, p.sites(seed))
        assert len(pre) == p.pretrain_sites
        for site in (*p.sites(seed, shift), *pre):
            for seq in MAGNITUDE:
                base = BASE[seq][0] / BASE[seq][1]
                ratio = site.contrast[seq]["gm"] / site.contrast[seq]["wm"]
                assert abs(ratio / base - 1.0) <= 0.15, (preset, seed, site.name, seq, ratio)


def test_contrast_jitter_leaves_grey_white_ratio_to_the_contrast_factor() -> None:
    rng = np.random.default_rng(0)
    for gw in (0.85, 1.0, 1.15):
        table = sample_contrast(rng, gw, 0.3)  # pretraining-size jitter
        for seq in MAGNITUDE:
            base = BASE[seq][0] / BASE[seq][1]
            ratio = table[seq]["gm"] / table[seq]["wm"]
            assert ratio == pytest.approx(1.0 + (base - 1.0) * gw, rel=1e-6)
        assert table["t1"]["wm"] != pytest.approx(BASE["t1"][1], rel=1e-3)  # still jittered
