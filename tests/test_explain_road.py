"""3D ROAD: the imputation against the 2D original on hand-made cases, and the curves."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csc_matrix, lil_matrix
from scipy.sparse.linalg import spsolve

from neurofm.errors import NeuroFMError
from neurofm.explain.road import impute, neighbour_weights, removal_mask, road

ORIGINAL_2D = [
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
]


def original_road_impute(img: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The reference ROAD code's ``NoisyLinearImputer`` (noise 0), transcribed loop by loop."""
    h, w = keep.shape
    keepflt = keep.reshape(-1)
    imgflat = img.reshape(img.shape[0], -1)
    indices = np.argwhere(keepflt == 0).flatten()
    vidx = np.zeros(keepflt.size, dtype=int)
    vidx[indices] = np.arange(len(indices))
    n = len(indices)
    a = lil_matrix((n, n))
    b = np.zeros((n, img.shape[0]))
    sum_neighbors = np.ones(n)
    for (d0, d1), weight in ORIGINAL_2D:
        c0, c1 = indices // w + d0, indices % w + d1
        valid = ~((c0 < 0) | (c1 < 0) | (c0 >= h) | (c1 >= w))
        new = indices + d0 * w + d1
        vc, vi = new[valid], np.argwhere(valid).flatten()
        known = keepflt[vc] > 0.5
        b[vi[known], :] -= weight * imgflat[:, vc[known]].T
        a[vi[~known], vidx[vc[~known]]] = weight
        sum_neighbors[~valid] -= weight
    a[np.arange(n), np.arange(n)] = -sum_neighbors
    res = spsolve(csc_matrix(a), b).reshape(n, -1)
    out = imgflat.copy()
    out[:, indices] = res.T
    return out.reshape(img.shape)


def test_weights_reproduce_the_2d_original_and_cover_26_neighbours_in_3d() -> None:
    assert sorted(neighbour_weights(2)) == sorted((o, pytest.approx(w)) for o, w in ORIGINAL_2D)
    w3 = dict(neighbour_weights(3))
    assert len(w3) == 26 and sum(w3.values()) == pytest.approx(1.0)
    assert w3[(1, 0, 0)] / w3[(1, 1, 0)] == pytest.approx(2.0)
    assert w3[(1, 0, 0)] / w3[(1, 1, 1)] == pytest.approx(3.0)


def test_one_removed_pixel_is_the_weighted_mean_of_its_8_neighbours() -> None:
    img = np.arange(9, dtype=np.float64).reshape(1, 3, 3) ** 2  # 0 1 4 / 9 16 25 / 36 49 64
    removed = np.zeros((3, 3), dtype=bool)
    removed[1, 1] = True
    # by hand: edges 1, 9, 25, 49 weigh 1/6; corners 0, 4, 36, 64 weigh 1/12
    expected = (1 + 9 + 25 + 49) / 6 + (0 + 4 + 36 + 64) / 12
    assert impute(img, removed, noise=0.0)[0, 1, 1] == pytest.approx(expected)


def test_two_coupled_pixels_and_a_border_pixel_by_hand() -> None:
    img = np.zeros((1, 3, 4))
    img[0, :, 0] = 12.0  # left column 12, rest 0 except the removed pair
    removed = np.zeros((3, 4), dtype=bool)
    removed[1, 1] = removed[1, 2] = True
    # x = 1/6*12 + 1/12*24 + 1/6*y = 4 + y/6;  y = 1/6*x  =>  x = 4 / (1 - 1/36)
    x = 4 / (1 - 1 / 36)
    out = impute(img, removed, noise=0.0)
    assert out[0, 1, 1] == pytest.approx(x)
    assert out[0, 1, 2] == pytest.approx(x / 6)
    corner = np.zeros((3, 4), dtype=bool)
    corner[0, 0] = True  # 3 neighbours (12 below, 0 right and diagonal), weights renormalised
    assert impute(img, corner, noise=0.0)[0, 0, 0] == pytest.approx(12 * (1 / 6) / (1 / 3 + 1 / 12))


def test_random_2d_mask_matches_the_transcribed_original(rng: np.random.Generator) -> None:
    img = rng.normal(size=(3, 9, 11))
    keep = rng.random((9, 11)) > 0.4
    ours = impute(img, ~keep, noise=0.0)
    np.testing.assert_allclose(ours, original_road_impute(img, keep), atol=1e-5)


def test_3d_imputation_is_exact_for_a_linear_image_and_adds_seeded_noise() -> None:
    x, y, z = np.meshgrid(np.arange(10), np.arange(11), np.arange(12), indexing="ij")
    img = (1.0 + x + 2 * y - 3 * z)[None].astype(np.float64)
    removed = np.zeros((10, 11, 12), dtype=bool)
    removed[3:7, 2:8, 4:9] = True  # interior block: the 26-neighbour mean of a plane is exact
    np.testing.assert_allclose(impute(img, removed, noise=0.0), img, atol=1e-4)
    a = impute(img, removed, noise=0.5, seed=3)
    b = impute(img, removed, noise=0.5, seed=3)
    np.testing.assert_array_equal(a, b)
    resid = (a - img)[0][removed]
    assert 0.3 < resid.std() < 0.7 and np.allclose((a - img)[0][~removed], 0)


def test_removal_masks_pick_the_top_and_bottom_fractions() -> None:
    att = np.arange(100, dtype=float).reshape(4, 5, 5)
    morf = removal_mask(att, 0.1, most_relevant=True)
    lerf = removal_mask(att, 0.1, most_relevant=False)
    assert morf.sum() == lerf.sum() == 10
    assert att[morf].min() == 90 and att[lerf].max() == 9
    with pytest.raises(NeuroFMError):
        removal_mask(att * np.nan, 0.1, True)
    with pytest.raises(NeuroFMError):
        removal_mask(att, 1.0, True)


def test_road_gap_is_high_for_the_voxel_the_score_reads_and_zero_for_a_constant_score() -> None:
    img = np.zeros((1, 8, 8, 8))
    img[0, 4, 4, 4] = 5.0

    def reads_voxel(batch: np.ndarray) -> np.ndarray:
        return batch[:, 0, 4, 4, 4]

    att = np.zeros((8, 8, 8))
    att[4, 4, 4] = 1.0
    good = road(img, att, reads_voxel, fractions=(0.01, 0.1), noise=0.0)
    assert good.original == 5.0
    assert good.morf == pytest.approx((0.0, 0.0)) and good.lerf == pytest.approx((5.0, 5.0))
    assert good.score == pytest.approx(5.0)
    bad = road(img, -att, reads_voxel, fractions=(0.01, 0.1), noise=0.0)
    assert bad.score < 0
    flat = road(img, att, lambda b: np.ones(len(b)), fractions=(0.1,))
    assert flat.score == 0.0
