"""Two-level bootstrap and Holm's method against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from neurofm.errors import NeuroFMError
from neurofm.metrics.classification import auroc_rows, single_class_rows
from neurofm.stats.bootstrap import bootstrap_ci, bootstrap_indices
from neurofm.stats.hierarchical import (
    hierarchical_ci,
    hierarchical_difference,
    hierarchical_draws,
    holm,
    two_sided_p,
)


def _mean_rows(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1)


def test_variance_matches_the_two_level_formula() -> None:
    # seed A cases (0, 2), seed B cases (4, 4). A replicate is the mean of S=2 iid slot values X,
    # X = mean of a case resample of a uniformly drawn seed:
    # Var(X) = Var_seed(mu) + E_seed[sigma^2 / n] = 2.25 + (1/2 + 0)/2 = 2.5, Var(T) = 2.5 / 2.
    data = [[np.array([0.0, 2.0])], [np.array([4.0, 4.0])]]
    draws = hierarchical_draws([2, 2], 40_000, seed=1)
    from neurofm.stats.hierarchical import _replicates

    reps, valid = _replicates(_mean_rows, data, draws, None)
    assert valid.all()
    assert reps.mean() == pytest.approx(2.5, abs=0.02)
    assert reps.var() == pytest.approx(1.25, rel=0.03)
    est = hierarchical_ci(_mean_rows, data, draws)
    assert est.value == pytest.approx(2.5)
    assert est.per_seed == (1.0, 4.0)
    # the case-only interval of the pooled cases is much narrower than the two-level one
    assert est.ci_high - est.ci_low > 3.0


def test_one_seed_is_the_case_bootstrap() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    hier = hierarchical_ci(_mean_rows, [[x]], hierarchical_draws([40], 4000, seed=3))
    flat = bootstrap_ci(np.mean, x, indices=bootstrap_indices(40, 4000, 5))
    assert hier.value == pytest.approx(flat.point)
    assert hier.ci_low == pytest.approx(flat.low, abs=0.05)
    assert hier.ci_high == pytest.approx(flat.high, abs=0.05)


def test_set_level_metric_is_computed_per_seed_not_pooled() -> None:
    # seed 1 perfectly ranked, seed 2 perfectly reversed: per-seed AUROC 1 and 0 -> mean 0.5,
    # although pooled over both seeds the scores would rank differently.
    y = np.array([0, 0, 1, 1], dtype=float)
    p1 = np.array([0.1, 0.2, 0.3, 0.4])
    p2 = np.array([0.95, 0.85, 0.05, 0.02])
    data = [[y, p1], [y, p2]]
    draws = hierarchical_draws([4, 4], 500, seed=0)
    est = hierarchical_ci(auroc_rows, data, draws, degenerate=single_class_rows)
    assert est.per_seed == (1.0, 0.0)
    assert est.value == pytest.approx(0.5)
    pooled = roc_auc_score(np.r_[y, y], np.r_[p1, p2])
    assert pooled != pytest.approx(0.5)
    assert est.n_valid < 500  # single-class case resamples are dropped


def test_paired_difference_uses_the_same_draws() -> None:
    rng = np.random.default_rng(2)
    base = [rng.normal(size=30) for _ in range(3)]
    a = [[x + 1.0] for x in base]
    b = [[x] for x in base]
    diff = hierarchical_difference(_mean_rows, a, b, hierarchical_draws([30] * 3, 2000, seed=4))
    # a - b is exactly 1 for every case, so every paired replicate differs by exactly 1
    assert diff.difference == pytest.approx(1.0)
    assert diff.ci_low == pytest.approx(1.0)
    assert diff.ci_high == pytest.approx(1.0)
    assert diff.p_value == pytest.approx(2 / 2001)


def test_two_sided_p_and_holm_hand_worked() -> None:
    assert two_sided_p(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(2 * 2 / 5)
    assert two_sided_p(np.array([])) == 1.0
    # sorted p: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.02,0.03,0.06,0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert holm([0.9, 0.8]).max() == 1.0


def test_bad_sizes_are_one_line_errors() -> None:
    with pytest.raises(NeuroFMError):
        hierarchical_draws([], 10, 0)
    with pytest.raises(NeuroFMError):
        hierarchical_draws([3, 0], 10, 0)
