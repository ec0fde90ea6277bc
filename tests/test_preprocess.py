"""Preprocessing: resampling, head crop, normalisation, and the exact way back to the input grid."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from neurofm.data.preprocess import Geometry, PreprocessParams, preprocess, restore_geometry
from neurofm.io.nifti import Volume, load_volume, voxel_spacing


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def _world_grid(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return idx @ affine[:3, :3].T + affine[:3, 3]


def _phantom(shape, affine, rng, lesion_radius=9.0):
    """Head ellipsoid (two channels) and a spherical lesion, defined in world mm."""
    xyz = _world_grid(shape, affine)
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    d = xyz - centre
    head = ((d / [30.0, 34.0, 26.0]) ** 2).sum(-1) < 1
    lesion = (((d - [8.0, 5.0, 2.0]) ** 2).sum(-1) < lesion_radius**2) & head
    noise = rng.normal(0, 2.0, (2, *shape))
    img = np.stack([100.0 * head + 50 * lesion, 60.0 * head - 20 * lesion]) + noise
    return np.abs(img).astype(np.float32), lesion.astype(np.uint8)


def test_anisotropic_roundtrip_restores_grid_exactly(rng) -> None:
    affine = np.diag([1.1, 1.3, 3.5, 1.0])
    affine[:3, 3] = [-40.0, -50.0, -30.0]
    img, lesion = _phantom((80, 70, 24), affine, rng, lesion_radius=11)
    vol = Volume(img, affine, ["t1", "t2"])
    out = preprocess(vol, PreprocessParams(spacing=(2.5, 2.5, 2.5)), mask=lesion)
    g = out.geometry
    assert voxel_spacing(g.affine) == pytest.approx((2.5, 2.5, 2.5))
    assert out.image.shape == (2, *g.shape) and out.mask is not None
    assert out.mask.shape == g.shape and out.mask.sum() > 0
    # the crop removed background but kept the whole head plus margin
    assert np.prod(g.shape) < 0.8 * np.prod(g.resampled_shape)
    restored, aff = restore_geometry(out.mask, g, order=0)
    assert restored.shape == lesion.shape
    assert np.array_equal(aff, affine)
    assert _dice(restored, lesion) > 0.9


def test_flipped_and_permuted_file_orientation(write_nifti, rng) -> None:
    # file axes: (-z, +x, -y) i.e. neither RAS voxel order nor RAS directions
    file_aff = np.array(
        [[0.0, 1.2, 0.0, -30.0], [0.0, 0.0, -1.0, 40.0], [-3.0, 0.0, 0.0, 35.0], [0, 0, 0, 1]]
    )
    img, lesion = _phantom((20, 60, 70), file_aff, rng)
    p1 = write_nifti("case/flair.nii.gz", img[0], file_aff)
    p2 = write_nifti("case/t2.nii.gz", img[1], file_aff)
    write_nifti("case/label.nii.gz", lesion, file_aff)
    vol = load_volume({"flair": p1, "t2": p2})
    assert vol.spatial_shape == (60, 70, 20)  # reoriented on load
    ras_lesion = np.asarray(nib.as_closest_canonical(nib.load(p1.parent / "label.nii.gz")).dataobj)
    header_aff = nib.load(p1).affine
    out = preprocess(
        vol, PreprocessParams(spacing=(2.0, 2.0, 2.0)), mask=ras_lesion, file_affine=header_aff
    )
    restored, aff = restore_geometry(out.mask, out.geometry, order=0)
    assert restored.shape == lesion.shape == out.geometry.file_shape
    assert np.array_equal(aff, header_aff)
    assert _dice(restored, lesion) > 0.9
    # a probability map (order 1) comes back as float on the same grid
    prob, _ = restore_geometry(out.mask.astype(np.float32) * 0.8, out.geometry, order=1)
    assert prob.dtype == np.float32 and prob.shape == lesion.shape
    assert prob.min() >= 0.0 and prob.max() <= 0.8 + 1e-6
    assert _dice(prob > 0.4, lesion) > 0.9


def test_oblique_affine_and_json_roundtrip(rng) -> None:
    theta = 0.3
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.5, 1.5, 2.0])
    affine[:3, 3] = [3.3, -7.1, 12.0]
    img, lesion = _phantom((50, 54, 38), affine, rng)
    out = preprocess(
        Volume(img, affine, ["a", "b"]), PreprocessParams(spacing=(3.0, 3.0, 3.0)), mask=lesion
    )
    g2 = Geometry.from_dict(json.loads(json.dumps(out.geometry.to_dict())))
    assert g2 == out.geometry
    restored, aff = restore_geometry(out.mask, g2, order=0)
    assert np.array_equal(aff, affine)
    assert _dice(restored, lesion) > 0.85
    # direction cosines are kept, only the voxel size changes
    cols = g2.affine[:3, :3] / np.asarray(g2.target_spacing)
    np.testing.assert_allclose(cols, rot, atol=1e-12)


def test_native_spacing_is_lossless(rng) -> None:
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    img, lesion = _phantom((40, 40, 26), affine, rng, lesion_radius=12)
    out = preprocess(Volume(img, affine, ["a", "b"]), PreprocessParams(spacing=None), mask=lesion)
    assert out.geometry.target_spacing == (2.0, 2.0, 3.0)
    restored, aff = restore_geometry(out.mask, out.geometry, order=0)
    assert np.array_equal(restored, lesion) and np.array_equal(aff, affine)


def test_normalisation_matches_independent_computation(rng) -> None:
    affine = np.eye(4)
    data = np.zeros((1, 30, 30, 30), np.float32)
    data[0, 5:25, 5:25, 5:25] = rng.gamma(4.0, 25.0, (20, 20, 20))
    data[0, 10, 10, 10] = 1e5  # hot spot: clipped by the percentiles
    params = PreprocessParams(spacing=None, margin_mm=2.0, clip_percentiles=(1.0, 99.0))
    out = preprocess(Volume(data, affine, ["t1"]), params)
    assert out.geometry.crop_start == (3, 3, 3) and out.geometry.crop_stop == (27, 27, 27)
    head = data[0, 5:25, 5:25, 5:25]
    thr = 0.1 * np.percentile(np.abs(data), 99)
    vals = head[head > thr]
    lo, hi = np.percentile(vals, [1.0, 99.0])
    ref = (np.clip(head, lo, hi) - np.clip(vals, lo, hi).mean()) / np.clip(vals, lo, hi).std()
    np.testing.assert_allclose(out.image[0, 2:22, 2:22, 2:22], ref, rtol=1e-4, atol=1e-4)
    n = out.norms[0]
    assert out.image.max() <= (hi - n.mean) / n.std + 1e-5
    # padding value is where air (0) lands after clipping and z-scoring
    assert n.pad_value == pytest.approx(out.image[0, 0, 0, 0], abs=1e-5)


def test_blank_image_is_kept_whole() -> None:
    vol = Volume(np.zeros((1, 8, 9, 10), np.float32), np.eye(4), ["t1"])
    out = preprocess(vol, PreprocessParams(spacing=None))
    assert out.image.shape == (1, 8, 9, 10)
    assert np.isfinite(out.image).all()


def test_a_small_bright_lesion_keeps_its_contrast_only_without_clipping(rng) -> None:
    """The clip (0.5, 99.5) (the default before round 12) flattens a lesion smaller than 0.5 %
    of the head to the 99.5th percentile of normal tissue; ``(0, 100)`` (nnU-Net's MRI z-score,
    today's default) keeps it above."""
    data = np.zeros((1, 30, 30, 30), np.float32)
    data[0, 5:25, 5:25, 5:25] = rng.normal(100.0, 10.0, (20, 20, 20))
    data[0, 14:16, 14:16, 14] = 300.0  # 4 voxels of 8000: 0.05 % of the head
    lesion = data[0] == 300.0
    outs = {
        clip: preprocess(
            Volume(data, np.eye(4), ["dwi_b1000"]),
            PreprocessParams(spacing=None, margin_mm=2.0, clip_percentiles=clip),
        )
        for clip in ((0.5, 99.5), (0.0, 100.0))
    }
    for clip, out in outs.items():
        img = out.image[0]
        start = out.geometry.crop_start
        les = lesion[start[0] :, start[1] :, start[2] :][
            : img.shape[0], : img.shape[1], : img.shape[2]
        ]
        tissue_top = np.percentile(img[~les & (img > img.min())], 99.9)
        gap = img[les].min() - tissue_top
        if clip == (0.0, 100.0):
            # an independent z-score of the raw head: the lesion sits ~ (300-100)/sd above
            head = data[0][data[0] > 0]
            expected = (300.0 - head.mean()) / head.std()
            assert img[les].min() == pytest.approx(expected, rel=1e-3) and gap > 5.0
        else:
            assert gap <= 0.0  # flattened to the top of normal tissue


@pytest.mark.parametrize("clip", [(5.0, 2.0), (-1.0, 99.0), (0.0, 101.0), (50.0, 50.0)])
def test_clip_percentiles_outside_0_100_or_reversed_are_refused(clip) -> None:
    from neurofm.errors import NeuroFMError

    with pytest.raises(NeuroFMError, match=r"--clip: need percentiles 0 <= LO < HI <= 100"):
        PreprocessParams(clip_percentiles=clip)


def test_stored_params_without_a_clip_read_back_with_the_clip_that_made_them() -> None:
    """Caches, run configs and packaged models written before the clip setting existed were
    clipped at (0.5, 99.5): predicting with one must not switch to today's no-clip default."""
    from neurofm.runconfig import preprocess_from_dict

    now = PreprocessParams(spacing=(4.0, 4.0, 4.0))
    stored = json.loads(json.dumps(now.to_dict()))  # lists, as on disk
    assert preprocess_from_dict(stored) == now and now.clip_percentiles == (0.0, 100.0)
    del stored["clip_percentiles"]
    old = preprocess_from_dict(stored)
    assert old.clip_percentiles == (0.5, 99.5)
    assert old == PreprocessParams(spacing=(4.0, 4.0, 4.0), clip_percentiles=(0.5, 99.5))
