"""Segmentation metrics: hand-worked cases, the edge-case contract, MONAI and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial.distance import cdist

from neurofm.errors import NeuroFMError
from neurofm.metrics.segmentation import (
    assd,
    dice,
    hd95,
    missing_mask_metrics,
    normalised_surface_distance,
    nsd_from,
    segmentation_metrics,
    surface_distances,
    surfels,
)


def cube(shape: tuple[int, int, int], start: tuple[int, int, int], size: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(s, s + size) for s in start)] = True
    return m


def blob(rng: np.random.Generator, shape: tuple[int, ...], threshold: float) -> np.ndarray:
    """Smooth random blob, allowed to touch the image border."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    return field > threshold * field.std()


def brute_force(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float]:
    """Independent computation: explicit 6-neighbour surface test and all-pairs distances."""

    def surface_points(mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask, 1)
        pts = []
        for idx in np.argwhere(mask):
            p = idx + 1
            neighbours = [
                padded[tuple(p + d)]
                for d in np.vstack([np.eye(3, dtype=int), -np.eye(3, dtype=int)])
            ]
            if not all(neighbours):
                pts.append(idx)
        return np.array(pts, dtype=float) * np.asarray(spacing)

    a, b = surface_points(pred), surface_points(ref)
    d = cdist(a, b)
    ab, ba = d.min(axis=1), d.min(axis=0)
    both = np.concatenate([ab, ba])
    return {
        "nsd": float(np.mean(both <= 2.0)),
        "hd95": float(max(np.percentile(ab, 95), np.percentile(ba, 95))),
        "assd": float(both.mean()),
        "dice": 2 * float((pred & ref).sum()) / float(pred.sum() + ref.sum()),
    }


@pytest.mark.parametrize("axis", [0, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_offset_cubes_hand_worked(axis: int, k: int) -> None:
    # 5-voxel cubes shifted by k voxels along one axis of an anisotropic grid.
    # Overlap 5*5*(5-k) of 125 voxels per cube -> Dice (5-k)/5. The face that leads the shift
    # is k*spacing[axis] from the other cube's face, and 41 of the 98 surface voxels (bottom
    # face 25 + its ring 16) sit at that distance, far above 5 %, so HD95 = k*spacing[axis].
    spacing = (0.8, 1.0, 2.5)
    shape = (20, 20, 20)
    start = [6, 6, 6]
    a = cube(shape, (6, 6, 6), 5)
    start[axis] += k
    b = cube(shape, tuple(start), 5)  # type: ignore[arg-type]
    m = segmentation_metrics(a, b, spacing)
    assert m["dice"] == pytest.approx((5 - k) / 5)
    assert m["hd95"] == pytest.approx(k * spacing[axis])
    assert hd95(a, b, spacing) == pytest.approx(k * spacing[axis])
    # NSD: with a tolerance just below one step nothing shifted counts, so it equals the share
    # of surface voxels at distance 0; with a tolerance of k steps everything counts.
    assert normalised_surface_distance(a, b, spacing, tolerance_mm=k * spacing[axis]) == 1.0
    below = normalised_surface_distance(a, b, spacing, tolerance_mm=0.99 * min(spacing))
    assert 0.0 < below < 1.0
    assert m == pytest.approx(brute_force(a, b, spacing) | {"nsd": m["nsd"]})


def test_identical_masks() -> None:
    a = cube((12, 12, 12), (2, 3, 4), 5)
    assert segmentation_metrics(a, a, (1.0, 2.0, 3.0)) == {
        "dice": 1.0,
        "nsd": 1.0,
        "hd95": 0.0,
        "assd": 0.0,
    }


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 0.7, 3.0)])
def test_edge_cases_exact(spacing: tuple[float, float, float]) -> None:
    shape = (10, 12, 7)
    empty = np.zeros(shape, dtype=bool)
    full = cube(shape, (2, 2, 2), 3)
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True)))
    assert segmentation_metrics(empty, empty, spacing) == {
        "dice": 1.0,
        "nsd": 1.0,
        "hd95": 0.0,
        "assd": 0.0,
    }
    for pred, ref in ((empty, full), (full, empty)):
        m = segmentation_metrics(pred, ref, spacing)
        assert m["dice"] == 0.0 and m["nsd"] == 0.0
        assert m["hd95"] == pytest.approx(diagonal) and m["assd"] == pytest.approx(diagonal)
        assert hd95(pred, ref, spacing) == pytest.approx(diagonal)
        assert assd(pred, ref, spacing) == pytest.approx(diagonal)
        assert normalised_surface_distance(pred, ref, spacing) == 0.0
        assert dice(pred, ref) == 0.0
    assert dice(empty, empty) == 1.0
    assert normalised_surface_distance(empty, empty, spacing) == 1.0
    assert hd95(empty, empty, spacing) == 0.0 and assd(empty, empty, spacing) == 0.0


def test_bad_input() -> None:
    a = np.zeros((4, 4, 4))
    with pytest.raises(NeuroFMError, match="shape"):
        segmentation_metrics(a, np.zeros((4, 4, 5)), (1, 1, 1))
    with pytest.raises(NeuroFMError, match="other than 0 and 1"):
        dice(a + 0.5, a)
    with pytest.raises(NeuroFMError, match="spacing"):
        hd95(a, a, (1.0, 1.0))
    with pytest.raises(NeuroFMError, match="spacing"):
        hd95(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(NeuroFMError, match="tolerance"):
        normalised_surface_distance(a, a, 1.0, tolerance_mm=-1)


def test_spacing_from_affine_equals_tuple(rng: np.random.Generator) -> None:
    a, b = blob(rng, (16, 16, 10), 0.3), blob(rng, (16, 16, 10), 0.5)
    affine = np.eye(4)
    affine[:3, :3] = np.diag([0.9, 1.1, 3.0]) @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    affine[:3, 3] = (-10.0, 5.0, 2.0)
    # a rotated affine; its column norms (the voxel sizes per array axis) are (1.1, 0.9, 3.0)
    assert segmentation_metrics(a, b, affine) == segmentation_metrics(a, b, (1.1, 0.9, 3.0))


@pytest.mark.parametrize("method", ["edt", "kdtree"])
def test_matches_brute_force_on_blobs_touching_the_border(
    rng: np.random.Generator, method: str
) -> None:
    spacing = (0.7, 1.3, 2.2)
    for _ in range(3):
        a, b = blob(rng, (14, 12, 9), 0.6), blob(rng, (14, 12, 9), 0.8)
        assert a.any() and b.any()
        assert a[0].any() or a[-1].any() or a[:, 0].any() or a[:, :, 0].any()
        got = segmentation_metrics(a, b, spacing, method=method, nsd_surface="voxel")  # type: ignore[arg-type]
        assert got == pytest.approx(brute_force(a, b, spacing))


def test_distance_methods_agree(rng: np.random.Generator) -> None:
    # a smooth big ball (few surface voxels per box voxel: KD-tree) and speckle (EDT)
    grid = np.indices((40, 40, 30)).astype(float)
    ball = ((grid - 20) ** 2).sum(axis=0) < 15**2
    speckle_a, speckle_b = rng.random((2, 20, 20, 10)) < 0.4
    for a, b in ((ball, np.roll(ball, 2, axis=2)), (speckle_a, speckle_b)):
        edt = surface_distances(a, b, (0.8, 1.0, 2.0), "edt")
        tree = surface_distances(a, b, (0.8, 1.0, 2.0), "kdtree")
        np.testing.assert_allclose(edt.pred_to_ref, tree.pred_to_ref, atol=1e-9)
        np.testing.assert_allclose(edt.ref_to_pred, tree.ref_to_pred, atol=1e-9)
    with pytest.raises(NeuroFMError, match="unknown method"):
        surface_distances(ball, ball, 1.0, "fast")  # type: ignore[arg-type]


def test_matches_monai(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    spacing = (0.9, 1.2, 3.0)
    for tolerance in (1.0, 2.0, 4.0):
        a, b = blob(rng, (24, 22, 14), 0.7), blob(rng, (24, 22, 14), 0.9)
        pa = torch.from_numpy(a[None, None].astype(np.float32))
        pb = torch.from_numpy(b[None, None].astype(np.float32))
        ours = segmentation_metrics(a, b, spacing, tolerance_mm=tolerance)
        voxel = segmentation_metrics(a, b, spacing, tolerance_mm=tolerance, nsd_surface="voxel")
        hd = compute_hausdorff_distance(pa, pb, percentile=95, spacing=spacing)
        nsd_surfel = compute_surface_dice(pa, pb, [tolerance], spacing=spacing, use_subvoxels=True)
        nsd_voxel = compute_surface_dice(pa, pb, [tolerance], spacing=spacing)
        asd = compute_average_surface_distance(pa, pb, symmetric=True, spacing=spacing)
        assert ours["hd95"] == voxel["hd95"] == pytest.approx(float(hd), rel=1e-5)
        assert ours["nsd"] == pytest.approx(float(nsd_surfel), rel=1e-5)
        assert voxel["nsd"] == pytest.approx(float(nsd_voxel), rel=1e-6)
        assert ours["assd"] == voxel["assd"] == pytest.approx(float(asd), rel=1e-5)


def test_distances_are_restricted_to_the_masks_box() -> None:
    # Small masks in a big image: the result must not depend on the image size, except the
    # diagonal used for the empty-mask edge case.
    small = cube((12, 12, 12), (3, 3, 3), 4), cube((12, 12, 12), (4, 3, 5), 4)
    big = [np.zeros((120, 90, 60), dtype=bool) for _ in range(2)]
    big[0][40:52, 30:42, 20:32] = small[0]
    big[1][40:52, 30:42, 20:32] = small[1]
    s_small = surface_distances(*small, (1.0, 1.0, 2.0))
    s_big = surface_distances(*big, (1.0, 1.0, 2.0))
    np.testing.assert_allclose(np.sort(s_small.pred_to_ref), np.sort(s_big.pred_to_ref))
    np.testing.assert_allclose(np.sort(s_small.ref_to_pred), np.sort(s_big.ref_to_pred))


@pytest.mark.parametrize("method", ["edt", "kdtree"])
def test_nsd_matches_deepmind_surface_distance_on_anisotropic_masks(
    rng: np.random.Generator, method: str
) -> None:
    # The published definition (Nikolov et al.): surfel areas, DeepMind's own package.
    sd = pytest.importorskip("surface_distance")
    gaps = []
    for spacing in ((0.9, 1.1, 5.0), (0.5, 0.5, 3.0), (2.0, 1.0, 1.0)):
        for tolerance in (1.0, 2.0, 4.0):
            a, b = blob(rng, (22, 20, 10), 0.6), blob(rng, (22, 20, 10), 0.8)
            want = sd.compute_surface_dice_at_tolerance(
                sd.compute_surface_distances(b, a, spacing), tolerance
            )
            sds = surface_distances(a, b, spacing, method, "surfel")  # type: ignore[arg-type]
            assert nsd_from(sds, tolerance) == pytest.approx(want, abs=1e-6)
            got = normalised_surface_distance(a, b, spacing, tolerance)
            assert got == pytest.approx(want, abs=1e-6)
            gaps.append(got - normalised_surface_distance(a, b, spacing, tolerance, "voxel"))
    # on thick slices the voxel-count variant is a different (lower) number, not a rounding
    assert max(gaps) > 0.03


def test_surfel_areas_of_a_box_hand_worked() -> None:
    # One voxel of size (1, 2, 3) mm: 8 corners, each carrying one triangle of the octahedron
    # DeepMind's table puts around an isolated voxel. A triangle spanning the half-edges
    # (0.5, 1, 1.5) has area 0.5*|(-.5,1,0) x (-.5,0,1.5)| = 0.5*|(1.5, 0.75, 0.5)|.
    border, areas = surfels(np.ones((1, 1, 1), dtype=bool), np.array([1.0, 2.0, 3.0]))
    assert border.shape == (2, 2, 2) and border.all()
    np.testing.assert_allclose(areas, 0.5 * math.sqrt(1.5**2 + 0.75**2 + 0.5**2), rtol=1e-6)


def test_missing_mask_is_the_one_empty_case() -> None:
    ref = cube((10, 8, 6), (2, 2, 2), 3)
    got = missing_mask_metrics(ref.shape, (1.0, 2.0, 3.0))
    assert got == pytest.approx(segmentation_metrics(np.zeros_like(ref), ref, (1.0, 2.0, 3.0)))
    assert got["hd95"] == pytest.approx(math.sqrt(10**2 + 16**2 + 18**2))
