"""Seeded case bootstrap and paired comparisons."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from neurofm.errors import NeuroFMError
from neurofm.metrics.classification import auroc, auroc_rows, single_class_rows
from neurofm.stats import (
    bootstrap_ci,
    bootstrap_indices,
    bootstrap_values,
    paired_comparison,
    wilcoxon_greater,
)


def test_indices_are_seeded_and_shaped() -> None:
    a = bootstrap_indices(7, 50, seed=3)
    assert a.shape == (50, 7) and a.min() >= 0 and a.max() <= 6
    np.testing.assert_array_equal(a, bootstrap_indices(7, 50, seed=3))
    assert not np.array_equal(a, bootstrap_indices(7, 50, seed=4))
    with pytest.raises(NeuroFMError):
        bootstrap_indices(0, 10, seed=0)


def test_ci_of_a_mean_matches_a_manual_loop(rng: np.random.Generator) -> None:
    x = rng.normal(size=40)
    idx = bootstrap_indices(40, 500, seed=0)
    point, low, high = bootstrap_ci(np.mean, x, indices=idx, alpha=0.1)
    means = np.array([x[i].mean() for i in idx])
    assert point == pytest.approx(x.mean())
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [5, 95])))
    # the vectorised path gives the same numbers
    batched = bootstrap_ci(lambda v: v.mean(axis=-1), x, indices=idx, alpha=0.1, batched=True)
    assert tuple(batched) == pytest.approx((point, low, high))


def test_degenerate_resamples_are_dropped(rng: np.random.Generator) -> None:
    y = np.zeros(12)
    y[:2] = 1  # two positives: many resamples hold none
    p = np.clip(0.3 * y + rng.random(12) * 0.7, 0, 1)
    idx = bootstrap_indices(12, 400, seed=1)
    values, valid = bootstrap_values(auroc, y, p, indices=idx, degenerate=single_class_rows)
    assert 0 < (~valid).sum() < 400
    assert np.all(values[~valid] == 0.5)  # the documented fallback, marked invalid
    point, low, high = bootstrap_ci(auroc, y, p, indices=idx, degenerate=single_class_rows)
    expected = np.percentile([auroc(y[i], p[i]) for i in idx if 0 < y[i].sum() < 12], [2.5, 97.5])
    assert (low, high) == pytest.approx(tuple(expected))
    batched = bootstrap_ci(
        auroc_rows, y, p, indices=idx, degenerate=single_class_rows, batched=True
    )
    assert tuple(batched) == pytest.approx((point, low, high))


def test_all_degenerate_collapses_to_the_point() -> None:
    y, p = np.zeros(5), np.linspace(0, 1, 5)
    idx = bootstrap_indices(5, 20, seed=0)
    assert tuple(bootstrap_ci(auroc, y, p, indices=idx, degenerate=single_class_rows)) == (
        0.5,
        0.5,
        0.5,
    )


def test_arrays_must_match_the_indices() -> None:
    with pytest.raises(NeuroFMError, match="do not match"):
        bootstrap_ci(np.mean, np.ones(4), indices=bootstrap_indices(5, 3, seed=0))


def test_paired_per_case(rng: np.random.Generator) -> None:
    b = rng.uniform(0.4, 0.8, 30)
    a = np.clip(b + rng.normal(0.05, 0.03, 30), 0, 1)
    idx = bootstrap_indices(30, 1000, seed=0)
    cmp = paired_comparison(np.mean, [a], [b], idx, case_values=(a, b))
    assert cmp.difference == pytest.approx(a.mean() - b.mean())
    assert 0 < cmp.ci_low < cmp.difference < cmp.ci_high
    assert cmp.p_wilcoxon == pytest.approx(wilcoxon(a, b, alternative="greater").pvalue)
    assert cmp.p_bootstrap < 0.01 and cmp.a_better()
    # reversed roles: b is not better than a
    rev = paired_comparison(np.mean, [b], [a], idx, case_values=(b, a))
    assert rev.difference == pytest.approx(-cmp.difference) and not rev.a_better()
    assert rev.p_bootstrap > 0.99
    # lower-is-better flips the direction of the one-sided tests
    low = paired_comparison(np.mean, [a], [b], idx, case_values=(a, b), higher_is_better=False)
    assert not low.a_better() and low.p_wilcoxon == pytest.approx(
        wilcoxon(a, b, alternative="less").pvalue
    )


def test_paired_set_level_uses_the_bootstrap_only(rng: np.random.Generator) -> None:
    y = (rng.random(60) < 0.4).astype(float)
    good = np.clip(0.5 * y + rng.random(60) * 0.5, 0, 1)
    poor = rng.random(60)
    idx = bootstrap_indices(60, 500, seed=2)
    cmp = paired_comparison(
        auroc_rows, [y, good], [y, poor], idx, degenerate=single_class_rows, batched=True
    )
    assert cmp.p_wilcoxon is None
    assert cmp.difference == pytest.approx(auroc(y, good) - auroc(y, poor))
    assert cmp.ci_low > 0 and cmp.a_better()
    assert cmp.n_valid_resamples == 500 and cmp.n_cases == 60


def test_identical_models_never_win() -> None:
    x = np.array([0.2, 0.5, 0.7, 0.9])
    assert wilcoxon_greater(x, x) == 1.0
    cmp = paired_comparison(np.mean, [x], [x], bootstrap_indices(4, 50, 0), case_values=(x, x))
    assert cmp.p_bootstrap == 1.0 and cmp.p_wilcoxon == 1.0 and not cmp.a_better()
