"""MetaCAM, CRE and the localisation scores on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from neurofm.explain.localisation import energy_in_lesion, pointing_game, rank_correlation
from neurofm.explain.metacam import adaptive_threshold, cre_curves, metacam, search, top_k


def test_top_k_keeps_the_highest_voxels_scaled() -> None:
    cam = np.arange(20, dtype=float).reshape(1, 4, 5) + 10  # 10..29
    kept = top_k(cam, 10)  # 2 voxels: 29 -> 1, 28 -> 18/19
    assert np.count_nonzero(kept) == 2
    assert kept.max() == 1.0 and kept[0, 3, 3] == pytest.approx(18 / 19)
    assert not top_k(np.full((3, 3, 3), 2.0), 50).any()  # a constant map keeps nothing


def test_metacam_keeps_the_consensus_voxel() -> None:
    a = np.zeros((4, 4, 4))
    b = np.zeros((4, 4, 4))
    a[1, 1, 1], a[3, 0, 0] = 1.0, 0.9  # both methods agree on (1,1,1), disagree on the rest
    b[1, 1, 1], b[0, 3, 3] = 0.8, 1.0
    m = metacam([a, b], k=100 * 2 / 64)
    # (1,1,1): (1 + 0.8) / 2; each method's private voxel: (0.9 + 0) / 2 and (0 + 1) / 2
    assert m[1, 1, 1] == pytest.approx(0.9)
    assert m[3, 0, 0] == pytest.approx(0.45) and m[0, 3, 3] == pytest.approx(0.5)
    assert np.count_nonzero(m) == 3


def test_search_finds_the_combination_the_scorer_rewards_and_cre_by_hand() -> None:
    truth = np.zeros((5, 5, 5), dtype=bool)
    truth[2, 2, 2] = True
    good = np.random.default_rng(0).random((5, 5, 5))
    good[2, 2, 2] = 5.0
    noise = np.random.default_rng(1).random((5, 5, 5))

    def energy(cam: np.ndarray) -> float:
        return energy_in_lesion(cam, truth)

    result = search({"good": good, "noise": noise}, energy, ks=(1.0, 50.0))
    assert result.best == (("good",), 1.0)
    assert result.best_score == pytest.approx(1.0)
    assert len(result.scores) == 3 * 2
    # with 2 methods CRE has one point: score(both) - score(the other alone)
    both = max(result.scores[(("good", "noise"), k)] for k in (1.0, 50.0))
    assert result.cre["good"] == [
        pytest.approx(both - max(result.scores[(("noise",), k)] for k in (1.0, 50.0)))
    ]
    assert result.cre["good"][0] > 0 > result.cre["noise"][0]
    k, thresholded = adaptive_threshold(good, energy, ks=(1.0, 50.0))
    assert k == 1.0 and np.count_nonzero(thresholded) == 1


def test_cre_accumulates_over_sizes() -> None:
    s = {("a",): 1.0, ("b",): 2.0, ("c",): 0.0, ("a", "b"): 4.0, ("a", "c"): 1.5}
    s |= {("b", "c"): 2.0, ("a", "b", "c"): 3.0}
    # a: size 2: mean(4-2, 1.5-0) = 1.75; size 3: 3 - 2 = 1 -> cumulative 2.75
    assert cre_curves(s, ["a", "b", "c"])["a"] == pytest.approx([1.75, 2.75])


def test_pointing_energy_and_rank_correlation_against_hand_and_scipy(
    rng: np.random.Generator,
) -> None:
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[0, 0, :2] = True
    cam = np.zeros((4, 4, 4))
    cam[0, 0, 0], cam[3, 3, 3] = 3.0, 1.0
    assert pointing_game(cam, mask) == 1.0
    assert energy_in_lesion(cam, mask) == pytest.approx(0.75)
    cam[3, 3, 3] = 4.0
    assert pointing_game(cam, mask) == 0.0
    dead = np.zeros((4, 4, 4))
    assert pointing_game(dead, mask) == 0.0 and energy_in_lesion(dead, mask) == 0.0
    a, b = rng.random((6, 6, 6)), rng.random((6, 6, 6))
    head = rng.random((6, 6, 6)) > 0.3
    assert rank_correlation(a, b, head) == pytest.approx(spearmanr(a[head], b[head]).statistic)
    assert rank_correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert rank_correlation(a, np.zeros((6, 6, 6))) == 0.0
