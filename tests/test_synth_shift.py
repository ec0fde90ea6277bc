"""Target sites drawn per seed, the matched/novel shift modes and thick slices along any axis.

Site drawing is checked in memory over many seeds (milliseconds each); one micro benchmark in
``novel`` mode is built on disk and prepared, to show the new geometry survives the pipeline.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neurofm.cli import main
from neurofm.data.prepare import prepare
from neurofm.data.preprocess import PreprocessParams
from neurofm.errors import NeuroFMError
from neurofm.io.nifti import load_nifti, voxel_spacing
from neurofm.synth import PRESETS, SynthPreset, build_benchmark
from neurofm.synth.session import output_affine, site_grid, thick_slices
from neurofm.synth.sites import (
    NOVEL_GEOMETRY,
    NOVEL_SIGNAL,
    PRETRAIN_RANGES,
    Box,
    SiteParams,
    outside_ranges,
    random_site,
)

SEEDS = range(20)
PARAMS = ("spacing", "slice_factor", "slice_axis", "bias", "snr", "gw_contrast", "intensity_scale")


def params(site: SiteParams) -> tuple[float, ...]:
    return tuple(float(getattr(site, k)) for k in PARAMS)


def test_target_sites_vary_with_the_seed_and_repeat_with_it() -> None:
    preset = PRESETS["demo"]
    for shift in ("matched", "novel"):
        a, b, again = preset.sites(0, shift), preset.sites(1, shift), preset.sites(0, shift)
        assert a == again  # dataclass equality covers the contrast tables too
        assert [s.name for s in a] == ["source", "sitea", "siteb"]
        for ta, tb in zip(a[1:], b[1:], strict=True):
            assert all(x != y for x, y in zip(params(ta)[3:], params(tb)[3:], strict=True))
            assert ta.contrast != tb.contrast
    # the source stays a clean 3D protocol; only its vendor contrast table follows the seed
    sources = [preset.sites(seed)[0] for seed in range(3)]
    assert {params(s) for s in sources} == {(3.5, 1, 2, 0.1, 30.0, 1.0, 1000.0)}
    assert sources[0].contrast != sources[1].contrast


def test_pretraining_sites_fill_their_ranges() -> None:
    sites = [random_site(np.random.default_rng(i), f"p{i}", 3.5) for i in range(300)]
    assert all(outside_ranges(s, PRETRAIN_RANGES, 3.5) == () for s in sites)
    assert {s.slice_factor for s in sites} == {1, 2, 3} and {s.slice_axis for s in sites} == {2}
    assert min(s.snr for s in sites) < 11 and max(s.snr for s in sites) > 39
    assert max(s.spacing * s.slice_factor for s in sites) <= 3.5 * 1.2 * 3  # by hand: 12.6 mm
    assert 0.2 < np.mean([s.strip_residue_mm > 0 for s in sites]) < 0.47  # p = 1/3


def test_outside_ranges_names_each_property_it_leaves() -> None:
    site = random_site(np.random.default_rng(0), "p", 3.5)
    site = dataclasses.replace(site, spacing=3.5, slice_factor=2, slice_axis=2)
    assert outside_ranges(site, PRETRAIN_RANGES, 3.5) == ()
    cases: dict[str, dict[str, Any]] = {
        "slice_axis": {"slice_axis": 0},
        "snr": {"snr": 9.9},
        "bias": {"bias": 0.41},
        "intensity_scale": {"intensity_scale": 4001.0},
        "spacing": {"spacing": 3.5 * 0.8},
        "strip_residue_mm": {"strip_residue_mm": 9.0},
    }
    for name, change in cases.items():
        assert outside_ranges(dataclasses.replace(site, **change), PRETRAIN_RANGES, 3.5) == (name,)
    # 3 x 4.2 mm = 12.6 mm is the thickest in range; 4 slices of 3.5 mm (14 mm) are not
    assert (
        outside_ranges(dataclasses.replace(site, spacing=4.2, slice_factor=3), PRETRAIN_RANGES, 3.5)
        == ()
    )
    thick = dataclasses.replace(site, slice_factor=4)
    assert outside_ranges(thick, PRETRAIN_RANGES, 3.5) == ("slice_thickness",)
    # a 3D site has no slice axis to be novel in
    assert (
        outside_ranges(
            dataclasses.replace(site, slice_factor=1, slice_axis=0), PRETRAIN_RANGES, 3.5
        )
        == ()
    )


@pytest.mark.parametrize("preset", ["tiny", "demo", "full"])
def test_matched_targets_lie_in_the_pretraining_ranges_and_differ_from_the_source(
    preset: str,
) -> None:
    p = PRESETS[preset]
    for seed in SEEDS:
        source, *targets = p.sites(seed, "matched")
        assert outside_ranges(source, PRETRAIN_RANGES, p.spacing) == ()
        assert targets[0].slice_factor >= 2  # sitea always has thick slices
        for t in targets:
            assert outside_ranges(t, PRETRAIN_RANGES, p.spacing) == () and t.novel == ()
            assert t.slice_axis == 2 and t.voxel_size != source.voxel_size
            assert t.bias >= 2 * source.bias and t.snr <= 0.75 * source.snr
            assert abs(np.log(t.intensity_scale / source.intensity_scale)) >= np.log(2.2) - 1e-9
            assert 0.1 <= abs(t.gw_contrast - 1.0) <= 0.15


@pytest.mark.parametrize("preset", ["tiny", "demo", "full"])
def test_novel_targets_lie_outside_the_pretraining_ranges(preset: str) -> None:
    p = PRESETS[preset]
    seen: set[str] = set()
    pretrain_max_mm = p.spacing * 1.2 * 3  # by hand from the ranges: 1.2x in-plane, 3 slices
    for seed in SEEDS:
        source, *targets = p.sites(seed, "novel")
        assert outside_ranges(source, PRETRAIN_RANGES, p.spacing) == ()
        for t in targets:
            assert len(t.novel) >= 2 and set(t.novel) & set(NOVEL_GEOMETRY)
            assert set(outside_ranges(t, PRETRAIN_RANGES, p.spacing)) == set(t.novel)
            # each named property checked against the numbers, not the checker
            assert ("slice_axis" in t.novel) == (t.slice_axis != 2 and t.slice_factor >= 2)
            if "slice_thickness" in t.novel:
                assert t.slice_factor == 4 and t.spacing * 4 > pretrain_max_mm
            assert ("snr" in t.novel) == (t.snr < 10.0)
            assert ("bias" in t.novel) == (t.bias > 0.4)
            assert ("intensity_scale" in t.novel) == (not 100 <= t.intensity_scale <= 4000)
            assert t.snr >= 6.0 and t.bias <= 0.6 and 30 <= t.intensity_scale <= 12000
            assert t.voxel_size[t.slice_axis] <= 1.2 * 4 * p.spacing + 1e-9
            assert 0.1 <= abs(t.gw_contrast - 1.0) <= 0.15
            seen |= set(t.novel)
    assert seen == {*NOVEL_GEOMETRY, *NOVEL_SIGNAL}
    axes = {t.slice_axis for seed in SEEDS for t in p.sites(seed, "novel")[1:]}
    assert axes == {0, 1, 2}


def test_thick_slices_along_any_axis_keep_the_geometry_honest() -> None:
    img = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    by_hand = (img[0::2] + img[1::2]) / 2
    assert np.array_equal(thick_slices(img, 2, 0), by_hand)
    assert np.array_equal(thick_slices(img, 3, 2), img.mean(axis=2, keepdims=True))

    box: Box = ((-50.0, -60.0, -40.0), (50.0, 60.0, 40.0))
    base = random_site(np.random.default_rng(0), "p", 5.0)
    for axis in range(3):
        site = dataclasses.replace(base, spacing=5.0, slice_factor=3, slice_axis=axis)
        grid = site_grid(box, site)
        assert grid.shape[axis] % 3 == 0
        assert np.allclose(grid.affine[:3, 3] + (np.asarray(grid.shape) - 1) / 2 * 5.0, 0.0)
        out_shape = list(grid.shape)
        out_shape[axis] //= 3
        affine = output_affine(grid, 3, axis)
        spacing = voxel_spacing(affine)
        assert np.allclose(spacing, site.voxel_size) and spacing[axis] == 15.0
        # a thick voxel sits at the mean of the fine slices it averages: same field of view
        centre = affine[:3, :3] @ ((np.asarray(out_shape) - 1) / 2) + affine[:3, 3]
        assert np.allclose(centre, 0.0)
        first = affine[axis, 3]
        assert first == pytest.approx(grid.axis_mm(axis)[:3].mean())


def micro() -> SynthPreset:
    counts = dict.fromkeys(("infarct", "meningioma", "brain_age"), 1)
    return dataclasses.replace(
        PRESETS["tiny"],
        name="micro",
        train=counts,
        test_source=counts,
        test_target=dict.fromkeys(counts, 2),
        pretrain_sessions=1,
    )


def test_novel_benchmark_records_its_sites_and_prepares(tmp_path: Path) -> None:
    raw = build_benchmark(tmp_path / "raw", micro(), seed=4, progress=False, shift="novel")
    meta = json.loads((raw / "benchmark.json").read_text())
    assert meta["shift"] == "novel" and meta["pretraining_ranges"]["snr"] == [10.0, 40.0]
    assert "novel shift" in (raw / "README.txt").read_text()
    for name in ("sitea", "siteb"):
        site = meta["sites"][name]
        assert len(site["novel"]) >= 2
        assert sorted(site["outside_pretraining_ranges"]) == sorted(site["novel"])
        flair, affine = load_nifti(
            next((raw / "meningioma" / f"test_{name}").glob("*/flair.nii.gz"))
        )
        assert list(flair.shape) == site["shape"]
        assert np.allclose(voxel_spacing(affine), site["voxel_size"])
    assert meta["sites"]["source"]["outside_pretraining_ranges"] == []
    assert all(not s["outside_pretraining_ranges"] for s in meta["pretrain_sites"].values())

    reports = prepare(
        raw,
        tmp_path / "prep",
        params=PreprocessParams(spacing=(8.0, 8.0, 8.0)),
        show_progress=False,
    )
    by_name = {r.name: r for r in reports}
    for task in ("infarct", "meningioma", "brain_age"):
        for name in ("sitea", "siteb"):
            assert by_name[f"{task}/test_{name}"].cases == 1


def test_unknown_shift_is_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(NeuroFMError, match="unknown shift mode 'new'"):
        build_benchmark(tmp_path / "a", micro(), seed=0, progress=False, shift="new")
    with pytest.raises(SystemExit) as exc:
        main(["synth", str(tmp_path / "b"), "--preset", "tiny", "--shift", "wild"])
    assert exc.value.code == 2 and "unknown shift mode 'wild'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_shift_mode_changes_only_the_target_sites(tmp_path: Path) -> None:
    """A seed's training, source-test and pretraining files are the same under both shift modes,
    so models trained under one can be scored on the other's target sites."""
    built = {
        shift: build_benchmark(tmp_path / shift, micro(), seed=2, progress=False, shift=shift)
        for shift in ("matched", "novel")
    }

    def files(root: Path) -> dict[str, bytes]:
        """Voxel data and label tables (gzip headers carry a time stamp, so compare contents)."""
        return {
            str(f.relative_to(root)): gzip.decompress(f.read_bytes())
            if f.suffix == ".gz"
            else f.read_bytes()
            for f in sorted(root.rglob("*"))
            if f.is_file() and f.suffix in (".gz", ".csv") and f.parent != root / "ground_truth"
        }

    matched, novel = files(built["matched"]), files(built["novel"])
    shared = sorted(k for k in matched if "test_site" not in k)
    assert shared == sorted(k for k in novel if "test_site" not in k)
    assert any("/train/" in k for k in shared) and any(k.startswith("pretrain") for k in shared)
    assert all(matched[k] == novel[k] for k in shared)
    targets = [k for k in matched if "test_site" in k]
    assert any(matched[k] != novel.get(k) for k in targets)  # the targets did change
